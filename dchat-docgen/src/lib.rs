//! Writes the documentation files that are derived from code, so that they
//! can never describe a flag or a key the binaries do not have:
//!
//! - `man/dchatd.8` from `dchatd::cli::Args` (clap) plus the daemon's
//!   lifecycle, signals, files and exit codes;
//! - `man/dchatctl.1` from `dchatctl::cli::Cli` (clap), every subcommand on
//!   one page;
//! - `man/dchatd.toml.5` from the key table `dchatd::config::keys`;
//! - `packaging/dchatd.toml`, the default configuration file the packages
//!   install as `/etc/dchat/dchatd.toml` (exactly what
//!   `dchatd --print-default-config` prints).
//!
//! The generated files are checked in. `dchat-docgen --check` (run by
//! `tests/system/static-checks` and by this crate's tests) fails when they
//! are not what the code would generate now.

mod config_page;
mod ctl_page;
mod daemon_page;
mod roff_util;

use std::path::{Path, PathBuf};

/// The date printed in every page footer. Bump it when a page changes in
/// substance; it is a constant (not today's date) so that regenerating
/// gives byte-identical files.
pub const MAN_DATE: &str = "2026-11-22";

/// The manual every page belongs to (the centre of the page header).
pub const MANUAL: &str = "dchat manual";

/// One generated file: where it goes, relative to the workspace root, and
/// what it holds.
pub struct Output {
    pub path: &'static str,
    pub text: String,
}

/// Every generated file.
pub fn outputs() -> Vec<Output> {
    vec![
        Output {
            path: "man/dchatd.8",
            text: daemon_page::render(),
        },
        Output {
            path: "man/dchatctl.1",
            text: ctl_page::render(),
        },
        Output {
            path: "man/dchatd.toml.5",
            text: config_page::render(),
        },
        Output {
            path: "packaging/dchatd.toml",
            text: dchatd::config::keys::default_file(),
        },
    ]
}

/// The workspace root, found from this crate's manifest directory.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The files under `root` that differ from what would be generated (missing
/// files count as different).
pub fn drifted(root: &Path) -> Vec<&'static str> {
    outputs()
        .into_iter()
        .filter(|o| std::fs::read_to_string(root.join(o.path)).ok().as_deref() != Some(o.text.as_str()))
        .map(|o| o.path)
        .collect()
}

/// Writes every generated file under `root`, returning the ones that changed.
pub fn write_all(root: &Path) -> std::io::Result<Vec<&'static str>> {
    let mut changed = Vec::new();
    for o in outputs() {
        let path = root.join(o.path);
        if std::fs::read_to_string(&path).ok().as_deref() == Some(o.text.as_str()) {
            continue;
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(&path, &o.text)?;
        changed.push(o.path);
    }
    Ok(changed)
}
