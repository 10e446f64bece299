//! dchat-docgen: regenerates the man pages and the default configuration
//! file, or with `--check` only reports which of them are out of date.
//!
//! ```text
//! cargo run -p dchat-docgen            # rewrite man/*, packaging/dchatd.toml
//! cargo run -p dchat-docgen -- --check # exit 1 if any of them would change
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut check = false;
    let mut root = dchat_docgen::workspace_root();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--check" => check = true,
            "--root" => match args.next() {
                Some(dir) => root = PathBuf::from(dir),
                None => return usage("--root needs a directory"),
            },
            "-h" | "--help" => {
                println!("usage: dchat-docgen [--check] [--root DIR]");
                return ExitCode::SUCCESS;
            }
            other => return usage(&format!("unknown argument {other:?}")),
        }
    }

    if check {
        let drifted = dchat_docgen::drifted(&root);
        if drifted.is_empty() {
            println!("ok: generated documentation is up to date");
            return ExitCode::SUCCESS;
        }
        for path in drifted {
            eprintln!("out of date: {path} (run `cargo run -p dchat-docgen` and commit the result)");
        }
        return ExitCode::FAILURE;
    }
    match dchat_docgen::write_all(&root) {
        Ok(changed) => {
            for path in &changed {
                println!("wrote {path}");
            }
            if changed.is_empty() {
                println!("everything was already up to date");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("dchat-docgen: {e}");
            ExitCode::FAILURE
        }
    }
}

fn usage(message: &str) -> ExitCode {
    eprintln!("dchat-docgen: {message}\nusage: dchat-docgen [--check] [--root DIR]");
    ExitCode::from(2)
}
