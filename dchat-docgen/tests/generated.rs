//! The generated files are checked in; these tests fail when they drift from
//! the code, and check that the pages cover everything they promise.

use clap::CommandFactory;
use dchat_docgen::{drifted, outputs, workspace_root};

fn page(path: &str) -> String {
    outputs()
        .into_iter()
        .find(|o| o.path == path)
        .map(|o| o.text)
        .expect("page is generated")
}

#[test]
fn checked_in_files_match_the_code() {
    let stale = drifted(&workspace_root());
    assert!(
        stale.is_empty(),
        "out of date: {stale:?}; run `cargo run -p dchat-docgen` and commit the result"
    );
}

#[test]
fn default_config_is_what_the_daemon_prints() {
    assert_eq!(page("packaging/dchatd.toml"), dchatd::config::keys::default_file());
}

#[test]
fn config_page_lists_every_key_with_default_and_variable() {
    let text = page("man/dchatd.toml.5");
    for section in dchatd::config::keys::SECTIONS {
        assert!(text.contains(&format!(".SS [{section}]")), "section {section} missing");
    }
    for key in dchatd::config::keys::KEYS {
        // roff escapes '-' as '\-'; the key names and variables have none.
        let env = format!("DCHAT_{}_{}", key.section, key.key).to_uppercase();
        assert!(
            text.contains(&format!("\\fB{}\\fR = ", key.key)),
            "key {}.{} missing",
            key.section,
            key.key
        );
        assert!(text.contains(&env), "{env} missing");
    }
}

#[test]
fn ctl_page_lists_every_subcommand() {
    let text = page("man/dchatctl.1");
    let mut cmd = dchatctl::cli::Cli::command();
    cmd.build();
    fn walk(cmd: &clap::Command, prefix: &str, text: &str) {
        for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
            let path = format!("{prefix} {}", sub.get_name());
            if sub.has_subcommands() {
                walk(sub, &path, text);
            } else {
                assert!(
                    text.contains(&format!(".SS \"{path}\"")),
                    "{path} missing from dchatctl.1"
                );
                for arg in sub.get_arguments().filter(|a| !a.is_global_set()) {
                    if let Some(long) = arg.get_long().filter(|l| *l != "help" && *l != "version") {
                        let escaped = long.replace('-', "\\-");
                        assert!(text.contains(&format!("\\-\\-{escaped}")), "{path} --{long} missing");
                    }
                }
            }
        }
    }
    walk(&cmd, "dchatctl", &text);
}

#[test]
fn daemon_page_documents_every_flag() {
    let text = page("man/dchatd.8");
    for arg in dchatd::cli::Args::command().get_arguments() {
        if let Some(long) = arg.get_long() {
            assert!(
                text.contains(&format!("\\-\\-{}", long.replace('-', "\\-"))),
                "--{long} missing from dchatd.8"
            );
        }
    }
}
