//! dchatctl against a real `dchatd --dev`: daemon facts, exit codes, usage
//! errors and completions. Accounts and identity files are in
//! `cli_accounts.rs` and `cli_keys.rs`.
#![allow(clippy::unwrap_used)]

mod common;

use std::os::unix::net::UnixListener;

use common::{fails, nowhere, ok, str_field, Dev};
use dchat_testkit::ctl;

#[test]
fn status_human_and_json() {
    let dev = Dev::start();
    let human = dev.ok(&["status"]);
    for label in ["version:", "roles:", "peer id:", "peers:", "height:"] {
        assert!(
            human.lines().any(|l| l.starts_with(label)),
            "status lacks {label:?}:\n{human}"
        );
    }
    assert!(human.contains("user, relay, validator"), "dev roles:\n{human}");

    let s = dev.json(&["status"]);
    assert_eq!(str_field(&s, "version"), env!("CARGO_PKG_VERSION"));
    let roles: Vec<&str> = s["roles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert_eq!(roles, ["user", "relay", "validator"]);
    let peer_id = str_field(&s, "peer_id");
    assert!(
        peer_id.starts_with("12D3KooW"),
        "libp2p ed25519 peer ids start 12D3KooW: {peer_id}"
    );
    assert!(
        human.contains(&peer_id),
        "human and JSON status disagree on the peer id"
    );
    assert!(s["peers"].is_u64(), "peers is a count: {s}");
    assert!(s["height"].is_u64(), "height is a number: {s}");
    assert_eq!(s["ready"], true);

    // `dchatctl status --json | head -c1`: output::json on a closed pipe.
    let out = to_closed_pipe(&["status", "--json"], dev.socket());
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// Runs dchatctl with a stdout whose reader is already gone, so that its
/// first write fails.
fn to_closed_pipe(args: &[&str], socket: &std::path::Path) -> std::process::Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    std::process::Command::new(dchat_testkit::bin("dchatctl"))
        .args(args)
        .arg("--socket")
        .arg(socket)
        .env_remove("DCHAT_SOCKET")
        .stdout(writer)
        .output()
        .unwrap()
}

#[test]
fn health_human_and_json() {
    let dev = Dev::start();
    let human = dev.ok(&["health"]);
    assert!(human.starts_with("healthy"), "{human}");
    assert!(human.contains("CHECK"), "health shows its checks:\n{human}");
    let h = dev.json(&["health"]);
    assert_eq!(h["live"], true, "{h}");
    assert_eq!(h["ready"], true, "{h}");
    assert!(h["checks"].as_array().is_some_and(|c| !c.is_empty()), "{h}");
}

#[test]
fn no_daemon_is_exit_69() {
    let dir = tempfile::tempdir().unwrap();
    // No file at all.
    let missing = nowhere(dir.path());
    for args in [
        &["status"][..],
        &["status", "--json"],
        &["account", "list"],
        &["account", "create", "x"],
    ] {
        let line = fails(69, args, &ctl(&missing, args));
        assert!(line.contains("cannot reach dchatd"), "{line}");
        assert!(
            line.contains(&missing.display().to_string()),
            "the message names the socket: {line}"
        );
    }
    // A stale socket file whose listener is gone (connection refused).
    let stale = dir.path().join("stale.sock");
    drop(UnixListener::bind(&stale).unwrap());
    let line = fails(69, &["status"], &ctl(&stale, &["status"]));
    assert!(line.contains("is the daemon running?"), "{line}");
}

#[test]
fn health_of_no_daemon_is_exit_1_for_probes() {
    let dir = tempfile::tempdir().unwrap();
    let missing = nowhere(dir.path());
    let line = fails(1, &["health"], &ctl(&missing, &["health"]));
    assert!(line.contains("cannot reach dchatd"), "{line}");
    // --json still prints a document a probe can read.
    let out = ctl(&missing, &["health", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let h: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(h["live"], false, "{h}");
    assert_eq!(h["ready"], false, "{h}");
}

#[test]
fn completions_for_each_shell() {
    let dir = tempfile::tempdir().unwrap();
    for shell in ["bash", "zsh", "fish"] {
        let args = ["completions", shell];
        // Offline: no daemon needed.
        let script = ok(&args, &ctl(&nowhere(dir.path()), &args));
        assert!(script.len() > 200, "{shell} completion script is too short:\n{script}");
        assert!(script.contains("dchatctl"), "{shell} script does not mention dchatctl");
        assert!(
            script.contains("account"),
            "{shell} script does not complete subcommands"
        );
    }
}

/// `dchatctl … | head -c1`: once the reader is gone, the rest of the
/// output has nowhere to go. That is a quiet exit 0, not a panic about a
/// broken pipe. The pipe's read end is closed before dchatctl starts, so
/// its first write fails every time.
#[test]
fn a_closed_stdout_is_a_quiet_exit_0() {
    let dir = tempfile::tempdir().unwrap();
    let socket = nowhere(dir.path());
    for args in [&["completions", "bash"][..], &["--help"]] {
        let out = to_closed_pipe(args, &socket);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "dchatctl {args:?}: {stderr}");
        if args[0] == "completions" {
            assert_eq!(out.status.code(), Some(0), "dchatctl {args:?}: {stderr}");
            assert!(stderr.is_empty(), "dchatctl {args:?} should be quiet: {stderr}");
        }
    }
}

#[test]
fn usage_errors_are_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let socket = nowhere(dir.path());
    for args in [
        &["bogus"][..],
        &["account", "frobnicate"],
        &["account", "create"],
        &["completions", "tcsh"],
    ] {
        let out = ctl(&socket, args);
        assert_eq!(out.status.code(), Some(2), "dchatctl {args:?}: {out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.starts_with("error:"),
            "dchatctl {args:?}: first line says what is wrong:\n{stderr}"
        );
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn keygen_without_password_file_and_no_tty_is_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let out_file = dir.path().join("id.key");
    let path = out_file.to_str().unwrap();
    // `Output` gives the child /dev/null as stdin: no terminal to ask on.
    let args = ["keygen", "--output", path];
    let line = fails(2, &args, &ctl(&nowhere(dir.path()), &args));
    assert!(line.contains("--password-file"), "the message says what to do: {line}");
    assert!(!out_file.exists(), "nothing is written without a password");

    // A bad --name is a usage error too, found before anything is asked.
    let args = ["keygen", "--output", path, "--name", "bad name"];
    let line = fails(2, &args, &ctl(&nowhere(dir.path()), &args));
    assert!(line.contains("invalid account name"), "{line}");
    assert!(!out_file.exists());
}

#[test]
fn json_errors_still_go_to_stderr() {
    let dev = Dev::start();
    let line = dev.fails(1, &["account", "show", "nobody", "--json"]);
    assert!(line.contains("nobody"), "{line}");
}
