//! Socket activation: systemd binds the control socket and passes it in
//! (LISTEN_FDS, LISTEN_FDNAMES=control); the daemon serves on it instead of
//! binding its own, and leaves the file to systemd.
//! `systemd-socket-activate` does what a `.socket` unit does, without PID 1.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use dchat_testkit::{call, skip_or_fail, Daemon, RawConn, Recv};
use serde_json::json;

/// Generous upper bound: many daemons start at once on small CI machines.
const START: Duration = Duration::from_secs(30);

/// `systemd-socket-activate` on PATH (package `systemd`).
fn socket_activate() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("systemd-socket-activate"))
        .find(|p| p.is_file())
}

#[test]
fn serves_on_the_socket_systemd_passes() {
    let Some(activate) = socket_activate() else {
        skip_or_fail("systemd-socket-activate is not installed (Debian/Ubuntu/Fedora package: systemd)");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let passed = tmp.path().join("activated.sock");
    let state = tmp.path().join("state");
    let mut d = Daemon::builder()
        .dev(&state)
        .notify(true)
        // Without --accept it execs dchatd in place, so the pid stays ours.
        // It passes on only the environment named with -E.
        .launcher(
            &activate,
            [
                "-l".as_ref(),
                passed.as_os_str(),
                "--fdname=control".as_ref(),
                "-E".as_ref(),
                "NOTIFY_SOCKET".as_ref(),
            ],
        )
        .spawn();
    // Like a .socket unit, it starts the service on the first connection:
    // this client connects before dchatd even runs, and must be served.
    let deadline = Instant::now() + START;
    while !passed.exists() {
        assert!(
            Instant::now() < deadline && d.is_running(),
            "systemd-socket-activate never bound {}",
            passed.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut first = RawConn::connect(&passed).unwrap();
    first.send_frame(r#"{"method":"org.varlink.service.GetInfo"}"#).unwrap();
    let ready = d.wait_ready(START);
    assert_eq!(ready.pid, d.pid(), "READY=1 must come from the main pid");
    match first.recv(START) {
        Recv::Frame(reply) => assert!(reply.contains(r#""product":"dchatd""#), "{reply}"),
        other => panic!("the connection that triggered activation got {other:?}"),
    }

    let info = call(&passed, "org.varlink.service.GetInfo", json!({}));
    assert_eq!(info["parameters"]["product"], "dchatd", "{info}");
    let status = call(&passed, "io.dchat.Daemon.Status", json!({}));
    assert_eq!(
        status["parameters"]["socket"],
        passed.display().to_string(),
        "Status names the socket it serves: {status}"
    );
    d.wait_log(&["using the control socket passed by systemd"], Duration::from_secs(1));
    // Nothing bound at the configured path: the passed socket replaced it.
    assert!(
        !state.join("dchatd.sock").exists(),
        "the daemon bound its own socket as well"
    );

    assert!(d.stop().success());
    // systemd created the file and removes it; the daemon must not.
    assert!(passed.exists(), "the daemon removed the socket file systemd owns");
}
