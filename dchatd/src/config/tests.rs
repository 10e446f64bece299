use std::io::Write;
use std::path::PathBuf;

use super::*;

fn no_env() -> Vec<(String, String)> {
    Vec::new()
}

fn with_file(text: &str) -> (tempfile::NamedTempFile, Flags) {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(text.as_bytes()).unwrap();
    let flags = Flags {
        config: Some(f.path().to_path_buf()),
        ..Flags::default()
    };
    (f, flags)
}

fn err(text: &str) -> String {
    let (f, flags) = with_file(text);
    let e = load_with_env(&flags, no_env()).unwrap_err().to_string();
    assert!(e.starts_with(&f.path().display().to_string()), "file not named: {e}");
    assert!(!e.contains('\n'), "not one line: {e}");
    e
}

#[test]
fn defaults_match_the_contract() {
    let (_f, flags) = with_file("");
    let c = load_with_env(&flags, no_env()).unwrap();
    assert_eq!(c.roles, vec![Role::User, Role::Relay, Role::Validator]);
    assert_eq!(c.control.socket, PathBuf::from("/run/dchat/dchatd.sock"));
    assert_eq!(c.control.group.as_deref(), Some("dchat"));
    assert_eq!(c.control.mode, 0o660);
    assert_eq!(c.control.max_frame_bytes, 1 << 20);
    assert_eq!(c.storage.state_dir, PathBuf::from("/var/lib/dchat"));
    assert_eq!(c.shutdown_timeout, std::time::Duration::from_secs(30));
    assert_eq!(c.network.listen.len(), 2);
    assert!(c.metrics_listen.is_none() && c.health_listen.is_none());
}

#[test]
fn dev_puts_everything_under_the_state_dir() {
    let flags = Flags {
        dev: true,
        state_dir: Some("/tmp/x".into()),
        ..Flags::default()
    };
    let c = load_with_env(&flags, no_env()).unwrap();
    assert_eq!(c.roles, vec![Role::User, Role::Relay, Role::Validator]);
    assert_eq!(c.control.socket, PathBuf::from("/tmp/x/dchatd.sock"));
    assert_eq!(c.storage.database_path(), PathBuf::from("/tmp/x/dchat.sqlite3"));
    assert!(c.control.group.is_none());
    let default = load_with_env(
        &Flags {
            dev: true,
            ..Flags::default()
        },
        no_env(),
    )
    .unwrap();
    assert_eq!(default.storage.state_dir, PathBuf::from("./dchat-dev"));
}

#[test]
fn precedence_file_env_flag() {
    let (_f, mut flags) = with_file("[log]\nlevel = \"warn\"\n[control]\nmax_connections = 5\n");
    let env = vec![("DCHAT_LOG_LEVEL".to_string(), "debug".to_string())];
    let c = load_with_env(&flags, env.clone()).unwrap();
    assert_eq!(c.log.level, "debug");
    assert_eq!(c.control.max_connections, 5);
    flags.log_level = Some("trace".into());
    assert_eq!(load_with_env(&flags, env).unwrap().log.level, "trace");
}

#[test]
fn env_lists_are_comma_separated_and_foreign_vars_ignored() {
    let (_f, flags) = with_file("");
    let env = vec![
        ("DCHAT_NODE_ROLES".to_string(), "relay, validator".to_string()),
        ("DCHAT_SOCKET".to_string(), "/x".to_string()),
        ("DCHAT_METRICS_LISTEN".to_string(), "127.0.0.1:9090".to_string()),
    ];
    let c = load_with_env(&flags, env).unwrap();
    assert_eq!(c.roles, vec![Role::Relay, Role::Validator]);
    assert_eq!(c.metrics_listen.unwrap().port(), 9090);
}

#[test]
fn bad_file_matrix_names_file_key_and_line() {
    let cases: &[(&str, &str, &str)] = &[
        ("[log]\nlevel = \n", ":2:", ""),
        ("[control]\nbogus = 1\n", ":2:", "key `control.bogus`"),
        ("[nosuch]\nx = 1\n", ":1:", "nosuch"),
        (
            "[control]\nmax_connections = \"many\"\n",
            ":2:",
            "key `control.max_connections`",
        ),
        ("[node]\nroles = [\"king\"]\n", ":2:", "key `node.roles`"),
        ("[log]\nformat = \"xml\"\n", ":2:", "key `log.format`"),
        (
            "\n\n[control]\nmax_connections = 0\n",
            ":4:",
            "key `control.max_connections`",
        ),
        ("[control]\nmode = \"999\"\n", ":2:", "key `control.mode`"),
        ("[metrics]\nlisten = \"nope\"\n", ":2:", "key `metrics.listen`"),
        ("[network]\nlisten = [\"tcp:7070\"]\n", ":2:", "key `network.listen`"),
        ("[log]\nlevel = \"loud\"\n", ":2:", "key `log.level`"),
        ("[node]\nroles = []\n", ":2:", "key `node.roles`"),
        (
            "[storage]\nsynchronous = \"sometimes\"\n",
            ":2:",
            "key `storage.synchronous`",
        ),
    ];
    for (text, line, key) in cases {
        let e = err(text);
        assert!(e.contains(line), "{text:?}: no line {line}: {e}");
        assert!(e.contains(key), "{text:?}: no {key}: {e}");
    }
}

#[test]
fn bad_env_names_the_variable() {
    let (_f, flags) = with_file("");
    for (var, value, want) in [
        ("DCHAT_CONTROL_MAX_CONNECTIONS", "lots", "DCHAT_CONTROL_MAX_CONNECTIONS"),
        ("DCHAT_LOG_NOPE", "x", "no such configuration key"),
        ("DCHAT_CONTROL_PUBLIC_READ", "maybe", "true or false"),
        ("DCHAT_CONTROL_IDLE_TIMEOUT", "0", "DCHAT_CONTROL_IDLE_TIMEOUT"),
    ] {
        let e = load_with_env(&flags, vec![(var.to_string(), value.to_string())])
            .unwrap_err()
            .to_string();
        assert!(e.contains(want), "{var}: {e}");
        assert!(e.contains("key `"), "{var}: {e}");
    }
}

#[test]
fn missing_config_file_is_an_error() {
    let flags = Flags {
        config: Some("/nonexistent/dchatd.toml".into()),
        ..Flags::default()
    };
    let e = load_with_env(&flags, no_env()).unwrap_err().to_string();
    assert!(
        e.starts_with("/nonexistent/dchatd.toml: cannot read configuration"),
        "{e}"
    );
}

#[test]
fn shipped_default_file_parses_to_the_defaults() {
    let (_f, flags) = with_file(&keys::default_file());
    let c = load_with_env(&flags, no_env()).unwrap();
    assert_eq!(c.control.max_connections, 128);
}

#[test]
fn key_table_covers_every_struct_field() {
    // Every key in the table must be accepted by the structs (deny_unknown_fields).
    for k in keys::KEYS {
        let (_f, flags) = with_file(&format!("[{}]\n{} = {}\n", k.section, k.key, k.default));
        load_with_env(&flags, no_env()).unwrap_or_else(|e| panic!("{}.{}: {e}", k.section, k.key));
    }
}

#[test]
fn network_limits_have_defaults_ranges_and_env_overrides() {
    let (_f, flags) = with_file("");
    let c = load_with_env(&flags, no_env()).unwrap();
    assert_eq!(c.network.max_connections, 512);
    assert_eq!(c.network.peer_messages_per_s, 2000);
    assert_eq!(c.network.peer_bytes_per_s, 32 * 1024 * 1024);
    let e = err("[network]\npeer_messages_per_s = 0\n");
    assert!(
        e.contains("network.peer_messages_per_s") && e.contains("between"),
        "{e}"
    );
    let e = err("[network]\nmax_connections = \"many\"\n");
    assert!(e.contains("network.max_connections"), "{e}");
    let (_f, flags) = with_file("");
    let env = vec![("DCHAT_NETWORK_PEER_BYTES_PER_S".to_string(), "65536".to_string())];
    assert_eq!(load_with_env(&flags, env).unwrap().network.peer_bytes_per_s, 65536);
}

#[test]
fn the_relay_circuit_cap_has_a_default_a_floor_and_an_env_override() {
    let (_f, flags) = with_file("");
    let c = load_with_env(&flags, no_env()).unwrap();
    assert_eq!(c.network.relay_circuit_bytes, crate::network::DEFAULT_CIRCUIT_BYTES);
    // Below one request (up to 256 KiB) with room for the rest of a
    // connection's traffic, nothing large could ever cross a circuit.
    let e = err("[network]\nrelay_circuit_bytes = 65536\n");
    assert!(
        e.contains("network.relay_circuit_bytes") && e.contains("between 1048576"),
        "{e}"
    );
    let (_f, flags) = with_file("[network]\nrelay_circuit_bytes = 1048576\n");
    assert_eq!(
        load_with_env(&flags, no_env()).unwrap().network.relay_circuit_bytes,
        1 << 20
    );
    let (_f, flags) = with_file("");
    let env = vec![("DCHAT_NETWORK_RELAY_CIRCUIT_BYTES".to_string(), "2097152".to_string())];
    assert_eq!(load_with_env(&flags, env).unwrap().network.relay_circuit_bytes, 2 << 20);
}
