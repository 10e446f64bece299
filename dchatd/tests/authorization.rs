//! Who may use the control socket is decided per connection from the
//! peer's kernel credentials (SO_PEERCRED), not by the file mode alone: with
//! the socket opened to everyone (0666), another user is still refused, and
//! logged, while root goes on working. `public_read` lets that user call the
//! read-only methods and nothing else. Needs root, to act as uid 65534.
#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Output;
use std::time::Duration;

use dchat_testkit::{bin, call, ctl, ctl_as, is_root, raw_call_as, skip_or_fail, Daemon};
use serde_json::{json, Value};
use tempfile::TempDir;

/// Generous upper bound: many daemons start at once on small CI machines.
const START: Duration = Duration::from_secs(30);
/// nobody:nogroup.
const NOBODY: u32 = 65534;
const EX_NOPERM: i32 = 77;

/// A READY dev daemon whose socket sits in a directory everyone may
/// traverse, so only the socket's mode and the daemon's check stand in
/// the way. The state dir (0700) holds everything else.
fn start(env: &[(&str, &str)]) -> (TempDir, Daemon) {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    std::fs::create_dir(&run).unwrap();
    for dir in [tmp.path(), run.as_path()] {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let mut builder = Daemon::builder()
        .dev(tmp.path().join("state"))
        .socket(run.join("dchatd.sock"))
        .notify(true);
    for (k, v) in env {
        builder = builder.env(k, v);
    }
    let mut d = builder.spawn();
    d.wait_ready(START);
    (tmp, d)
}

fn open_to_everyone(socket: &Path) {
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o666)).unwrap();
}

/// One raw call as nobody; the reply frame parsed.
fn call_as_nobody(socket: &Path, method: &str) -> Value {
    let out = raw_call_as(NOBODY, NOBODY, socket, &json!({ "method": method }).to_string());
    assert!(
        out.status.success(),
        "{method} as nobody: {} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{method} as nobody: not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// dchatctl as nobody, if nobody can reach the binary at all.
fn ctl_as_nobody(socket: &Path, args: &[&str]) -> Option<Output> {
    let ctl = bin("dchatctl");
    let reachable = ctl
        .ancestors()
        .skip(1)
        .all(|dir| std::fs::metadata(dir).is_ok_and(|m| m.permissions().mode() & 0o001 != 0))
        && std::fs::metadata(&ctl).is_ok_and(|m| m.permissions().mode() & 0o001 != 0);
    if !reachable {
        skip_or_fail(&format!(
            "uid {NOBODY} cannot execute {} (a directory on the way is not searchable by others)",
            ctl.display()
        ));
        return None;
    }
    Some(ctl_as(NOBODY, NOBODY, socket, args))
}

fn root_still_works(socket: &Path) {
    let info = call(socket, "org.varlink.service.GetInfo", json!({}));
    assert_eq!(info["parameters"]["product"], "dchatd", "{info}");
    let out = ctl(socket, &["status", "--json"]);
    assert!(
        out.status.success(),
        "dchatctl status as root: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn other_users_are_refused_and_logged() {
    if !is_root() {
        skip_or_fail("the authorization tests must run as root (to connect as uid 65534)");
        return;
    }
    let (_tmp, mut d) = start(&[]);
    let socket = d.socket_path().to_path_buf();

    // The first fence: mode 0660, owned by root.
    let out = raw_call_as(NOBODY, NOBODY, &socket, r#"{"method":"org.varlink.service.GetInfo"}"#);
    assert_eq!(
        out.status.code(),
        Some(69),
        "nobody got through a 0660 socket: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Permission denied"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Without the fence, the daemon's own check must hold.
    open_to_everyone(&socket);
    for method in [
        "org.varlink.service.GetInfo",
        "io.dchat.Daemon.Status",
        "io.dchat.Accounts.List",
        "io.dchat.No.Such",
    ] {
        let r = call_as_nobody(&socket, method);
        assert_eq!(
            r["error"], "org.varlink.service.PermissionDenied",
            "{method} as nobody: {r}"
        );
    }
    d.wait_log(
        &["control connection refused", &format!("peer_uid={NOBODY}")],
        Duration::from_secs(5),
    );

    if let Some(out) = ctl_as_nobody(&socket, &["status"]) {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(EX_NOPERM),
            "dchatctl status as nobody: {} {stderr}",
            out.status
        );
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
    }

    root_still_works(&socket);
    assert!(d.is_running());
}

#[test]
fn public_read_opens_only_read_only_methods() {
    if !is_root() {
        skip_or_fail("the authorization tests must run as root (to connect as uid 65534)");
        return;
    }
    let (_tmp, mut d) = start(&[("DCHAT_CONTROL_PUBLIC_READ", "true")]);
    let socket = d.socket_path().to_path_buf();
    open_to_everyone(&socket);

    let status = call_as_nobody(&socket, "io.dchat.Daemon.Status");
    assert!(status["error"].is_null(), "Status as nobody with public_read: {status}");
    assert!(status["parameters"]["version"].is_string(), "{status}");
    for method in ["io.dchat.Daemon.Health", "org.varlink.service.GetInfo"] {
        let r = call_as_nobody(&socket, method);
        assert!(r["error"].is_null(), "{method} as nobody with public_read: {r}");
    }
    for method in ["io.dchat.Accounts.List", "io.dchat.Accounts.Export"] {
        let r = call_as_nobody(&socket, method);
        assert_eq!(
            r["error"], "org.varlink.service.PermissionDenied",
            "{method} as nobody: {r}"
        );
    }
    let create = json!({ "method": "io.dchat.Accounts.Create", "parameters": { "name": "mallory" } }).to_string();
    let out = raw_call_as(NOBODY, NOBODY, &socket, &create);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("org.varlink.service.PermissionDenied"),
        "{out:?}"
    );
    let list = call(&socket, "io.dchat.Accounts.List", json!({}));
    assert_eq!(
        list["parameters"]["accounts"],
        json!([]),
        "nobody created an account: {list}"
    );

    if let Some(out) = ctl_as_nobody(&socket, &["status", "--json"]) {
        assert!(
            out.status.success(),
            "dchatctl status as nobody with public_read: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    if let Some(out) = ctl_as_nobody(&socket, &["account", "list"]) {
        assert_eq!(
            out.status.code(),
            Some(EX_NOPERM),
            "dchatctl account list as nobody: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    root_still_works(&socket);
    assert!(d.is_running());
}
