//! Interop with a Varlink implementation that is not ours: the reference
//! Python client (PyPI `varlink`) introspects a real `dchatd --dev`, parses
//! every interface description it serves, calls its methods and receives
//! its typed errors (tests/interop/varlink_client.py does the talking).
//!
//! The Python is `DCHAT_TEST_PYTHON` (default `python3`). Without the
//! `varlink` module the test fails in CI and is skipped, with a note,
//! elsewhere.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use dchat_testkit::{skip_or_fail, Daemon};

const SETUP_HINT: &str = "run scripts/test-setup or `pip install varlink==31.0.0`";

fn python() -> String {
    std::env::var("DCHAT_TEST_PYTHON")
        .ok()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "python3".into())
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/interop/varlink_client.py")
}

/// Whether `python` can import `varlink`; the reason if not.
fn varlink_importable(python: &str) -> Result<(), String> {
    match Command::new(python).args(["-c", "import varlink"]).output() {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(format!(
            "{python} cannot import the Python `varlink` module ({}): {SETUP_HINT}",
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or("no error text")
        )),
        Err(e) => Err(format!(
            "cannot run {python} ({e}); set DCHAT_TEST_PYTHON or {SETUP_HINT}"
        )),
    }
}

#[test]
fn python_varlink_client_introspects_and_calls_dchatd() {
    let python = python();
    if let Err(why) = varlink_importable(&python) {
        skip_or_fail(&why);
        return;
    }
    let state = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::builder().dev(state.path().join("state")).notify(true).spawn();
    daemon.wait_ready(Duration::from_secs(30));

    let started = Instant::now();
    let out = Command::new(&python)
        .arg(script())
        .arg(daemon.socket_path())
        .arg("--cli")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the Python varlink client failed ({}):\n{stdout}\n{stderr}\ndaemon log:\n{}",
        out.status,
        daemon.log()
    );
    let summary: serde_json::Value =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("summary is not JSON ({e}):\n{stdout}"));
    assert_eq!(summary["ok"], true, "{summary}");
    for iface in ["org.varlink.service", "io.dchat.Daemon", "io.dchat.Accounts"] {
        assert!(
            summary["interfaces"][iface].is_array(),
            "{iface} was not parsed: {summary}"
        );
    }
    assert_eq!(
        summary["accounts"]["errors"]["NameTaken"]["name"]
            .as_str()
            .map(|n| n.starts_with("py")),
        Some(true),
        "{summary}"
    );
    assert!(
        summary["cli"]["call_status_peer_id"].is_string(),
        "python -m varlink.cli call: {summary}"
    );
    eprintln!("python varlink interop ok in {:?}: {summary}", started.elapsed());

    let status = daemon.stop();
    assert!(
        status.success(),
        "dchatd stopped cleanly after the Python client: {status}"
    );
}
