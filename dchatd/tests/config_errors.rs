//! Bad configuration through the real binary: exit 78 (EX_CONFIG) with one
//! line on stderr naming the file, the line and the key (or the variable),
//! and nothing touched on disk, because validation comes before any I/O.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Output};

use dchat_testkit::bin;

const EX_CONFIG: i32 = 78;

/// Runs dchatd with `args`, none of the caller's DCHAT_* variables, and `env`.
fn dchatd(args: &[&dyn AsRef<std::ffi::OsStr>], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(bin("dchatd"));
    for a in args {
        cmd.arg(a);
    }
    for (key, _) in std::env::vars_os().filter(|(k, _)| k.to_string_lossy().starts_with("DCHAT_")) {
        cmd.env_remove(key);
    }
    cmd.env_remove("NOTIFY_SOCKET")
        .env_remove("LISTEN_FDS")
        .env_remove("LISTEN_PID");
    // Never the source tree: a --dev run that got past validation would
    // make ./dchat-dev wherever it runs.
    cmd.current_dir(std::env::temp_dir());
    cmd.envs(env.iter().copied()).output().unwrap()
}

/// Asserts exit 78 and exactly one stderr line; returns it.
fn config_error(out: &Output, what: &str) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(EX_CONFIG),
        "{what}: wanted exit 78, got {}: {stderr}",
        out.status
    );
    assert_eq!(stderr.lines().count(), 1, "{what}: stderr must be one line:\n{stderr}");
    assert!(
        out.stdout.is_empty(),
        "{what}: printed on stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    stderr.trim_end().to_string()
}

#[test]
fn bad_files_exit_78_naming_file_line_and_key() {
    // (name, file text, line, key)
    let cases: &[(&str, &str, usize, &str)] = &[
        ("syntax", "[log]\nlevel = \n", 2, "log.level"),
        ("unknown-key", "[control]\nbogus = 1\n", 2, "control.bogus"),
        (
            "unknown-section",
            "[node]\nroles = [\"user\"]\n[nosuch]\nx = 1\n",
            3,
            "nosuch",
        ),
        (
            "wrong-type",
            "[control]\nmax_connections = \"many\"\n",
            2,
            "control.max_connections",
        ),
        ("bad-role", "[node]\nroles = [\"king\"]\n", 2, "node.roles"),
        ("bad-log-format", "[log]\nformat = \"xml\"\n", 2, "log.format"),
        ("bad-log-level", "[log]\nlevel = \"loud\"\n", 2, "log.level"),
        (
            "out-of-range",
            "# comment\n\n[control]\nmax_connections = 0\n",
            4,
            "control.max_connections",
        ),
        ("bad-socket-mode", "[control]\nmode = \"999\"\n", 2, "control.mode"),
        (
            "bad-listen-address",
            "[metrics]\nlisten = \"nope\"\n",
            2,
            "metrics.listen",
        ),
        (
            "bad-multiaddr",
            "[network]\nlisten = [\"tcp:7070\"]\n",
            2,
            "network.listen",
        ),
        (
            "missing-group",
            "[control]\ngroup = \"no-such-group-dchat-test\"\n",
            2,
            "control.group",
        ),
    ];
    let tmp = tempfile::tempdir().unwrap();
    for (name, text, line, key) in cases {
        let file = tmp.path().join(format!("{name}.toml"));
        std::fs::write(&file, text).unwrap();
        let out = dchatd(&[&"--check-config", &"--config", &file], &[]);
        let err = config_error(&out, name);
        let want = format!("{}:{line}: key `{key}`: ", file.display());
        assert!(err.contains(&want), "{name}: wanted {want:?} in {err:?}");
    }
}

#[test]
fn a_good_file_passes() {
    let tmp = tempfile::tempdir().unwrap();
    // The shipped default file, with no control group (none exists here).
    let default = dchatd(&[&"--print-default-config"], &[]);
    assert!(default.status.success());
    let text = String::from_utf8(default.stdout)
        .unwrap()
        .replace("group = \"dchat\"", "group = \"\"");
    let file = tmp.path().join("dchatd.toml");
    std::fs::write(&file, text).unwrap();
    let out = dchatd(&[&"--check-config", &"--config", &file], &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim_end(),
        format!("{}: configuration ok", file.display())
    );
}

/// Asserts that `dir` was not created (nor anything in it).
fn untouched(dir: &Path, what: &str) {
    assert!(
        !dir.exists(),
        "{what}: {} was created before the configuration was validated",
        dir.display()
    );
}

#[test]
fn the_daemon_validates_before_any_io() {
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("bad.toml");
    std::fs::write(&bad, "[control]\nmax_frame_bytes = 10\n").unwrap();
    let state = tmp.path().join("state");
    let socket = tmp.path().join("run").join("dchatd.sock");

    let out = dchatd(&[&"--config", &bad, &"--state-dir", &state, &"--socket", &socket], &[]);
    let err = config_error(&out, "daemon with a bad file");
    assert!(
        err.contains(&format!("{}:2: key `control.max_frame_bytes`", bad.display())),
        "{err}"
    );
    untouched(&state, "bad file");
    untouched(socket.parent().unwrap(), "bad file");

    let out = dchatd(&[&"--dev", &"--config", &bad, &"--state-dir", &state], &[]);
    config_error(&out, "--dev daemon with a bad file");
    untouched(&state, "bad file with --dev");
}

#[test]
fn bad_environment_names_the_variable() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let cases = [
        ("DCHAT_CONTROL_MAX_CONNECTIONS", "lots", "control.max_connections"),
        ("DCHAT_CONTROL_IDLE_TIMEOUT", "0", "control.idle_timeout"),
        ("DCHAT_CONTROL_PUBLIC_READ", "maybe", "control.public_read"),
        ("DCHAT_LOG_NOPE", "x", "log.nope"),
    ];
    for (var, value, key) in cases {
        let out = dchatd(&[&"--dev", &"--state-dir", &state], &[(var, value)]);
        let err = config_error(&out, var);
        let want = format!("environment variable {var}: key `{key}`: ");
        assert!(err.contains(&want), "{var}={value}: wanted {want:?} in {err:?}");
        untouched(&state, var);

        let out = dchatd(&[&"--dev", &"--check-config"], &[(var, value)]);
        assert!(config_error(&out, var).contains(&want));
    }
}
