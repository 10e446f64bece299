//! The table of every configuration key: its type, default and meaning.
//!
//! One table serves three jobs: typing `DCHAT_<SECTION>_<KEY>` environment
//! overrides, generating the documented default file and dchatd.toml(5), and
//! a test that the table and the config structs agree.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Str,
    StrList,
    Int,
    Bool,
}

#[derive(Debug, Clone, Copy)]
pub struct KeyDoc {
    pub section: &'static str,
    pub key: &'static str,
    pub kind: Kind,
    /// The default as it would be written in TOML.
    pub default: &'static str,
    pub doc: &'static str,
}

pub const SECTIONS: &[&str] = &[
    "node",
    "network",
    "control",
    "storage",
    "chain",
    "consensus",
    "metrics",
    "health",
    "log",
];

pub const KEYS: &[KeyDoc] = &[
    KeyDoc { section: "node", key: "roles", kind: Kind::StrList, default: r#"["user", "relay", "validator"]"#,
        doc: "Roles this node plays: any of \"user\" (hosts local accounts), \"relay\" (mailboxes, NAT relay) and \"validator\" (produces blocks)." },
    KeyDoc { section: "node", key: "shutdown_timeout", kind: Kind::Int, default: "30",
        doc: "Seconds a clean shutdown may take before the daemon gives up and exits with an error." },
    KeyDoc { section: "network", key: "listen", kind: Kind::StrList, default: r#"["/ip4/0.0.0.0/tcp/7070", "/ip4/0.0.0.0/udp/7070/quic-v1"]"#,
        doc: "libp2p multiaddresses to listen on." },
    KeyDoc { section: "network", key: "bootstrap", kind: Kind::StrList, default: "[]",
        doc: "Multiaddresses (with /p2p/<peer id>) of peers to contact at start. DNS multiaddresses are accepted." },
    KeyDoc { section: "network", key: "max_connections", kind: Kind::Int, default: "512",
        doc: "Most established peer connections (at most 2 per peer); new ones beyond it are refused." },
    KeyDoc { section: "network", key: "peer_messages_per_s", kind: Kind::Int, default: "2000",
        doc: "Messages (gossip and requests) one peer may send per second, with bursts of twice that; more are dropped and counted as rate_limited." },
    KeyDoc { section: "network", key: "peer_bytes_per_s", kind: Kind::Int, default: "33554432",
        doc: "Bytes one peer may send per second in messages and requests, with bursts of twice that." },
    KeyDoc { section: "network", key: "relay_circuit_bytes", kind: Kind::Int, default: "16777216",
        doc: "Relays only: bytes one circuit between two peers that cannot dial each other carries, both ways, before the relay closes it; the peers then open another." },
    KeyDoc { section: "control", key: "socket", kind: Kind::Str, default: r#""/run/dchat/dchatd.sock""#,
        doc: "Path of the control socket. Ignored when systemd passes the socket (dchatd.socket)." },
    KeyDoc { section: "control", key: "group", kind: Kind::Str, default: r#""dchat""#,
        doc: "Group that owns the control socket; its members may use it. Empty: only root and the daemon's own user." },
    KeyDoc { section: "control", key: "mode", kind: Kind::Str, default: r#""0660""#,
        doc: "Octal file mode of the control socket. Access is still checked per connection from the peer's credentials." },
    KeyDoc { section: "control", key: "public_read", kind: Kind::Bool, default: "false",
        doc: "Let every local user call the read-only methods (status, health, introspection). They must also be able to open the socket: pair this with mode = \"0666\"." },
    KeyDoc { section: "control", key: "max_frame_bytes", kind: Kind::Int, default: "1048576",
        doc: "Largest request a client may send, in bytes; larger ones close the connection." },
    KeyDoc { section: "control", key: "max_connections", kind: Kind::Int, default: "128",
        doc: "Most control connections served at once; more are refused with an error." },
    KeyDoc { section: "control", key: "idle_timeout", kind: Kind::Int, default: "300",
        doc: "Seconds a control connection may stay silent (or stall mid-request) before it is closed." },
    KeyDoc { section: "storage", key: "state_dir", kind: Kind::Str, default: r#""/var/lib/dchat""#,
        doc: "Directory holding the database and the keystore." },
    KeyDoc { section: "storage", key: "synchronous", kind: Kind::Str, default: r#""full""#,
        doc: "SQLite synchronous level: \"full\" (every acknowledged write survives power loss) or \"normal\" (survives a crash of the daemon)." },
    KeyDoc { section: "chain", key: "genesis", kind: Kind::Str, default: r#""/etc/dchat/genesis.json""#,
        doc: "The network's genesis file (chain id, validators, block interval). --dev makes a one-validator genesis in the state directory." },
    KeyDoc { section: "consensus", key: "listen", kind: Kind::Str, default: r#""0.0.0.0:7071""#,
        doc: "Address validators listen on for consensus traffic. Used only with the validator role." },
    KeyDoc { section: "consensus", key: "peers", kind: Kind::StrList, default: "[]",
        doc: "The other validators, each as \"<validator key hex>@host:port\"." },
    KeyDoc { section: "metrics", key: "listen", kind: Kind::Str, default: r#""""#,
        doc: "Address for Prometheus metrics, e.g. \"127.0.0.1:9090\". Empty: off." },
    KeyDoc { section: "health", key: "listen", kind: Kind::Str, default: r#""""#,
        doc: "Address for /health and /ready, e.g. \"127.0.0.1:8080\". Empty: off." },
    KeyDoc { section: "health", key: "stall_intervals", kind: Kind::Int, default: "10",
        doc: "Readiness fails (GET /ready 503, dchatctl health exit 1) when the chain height has not moved for more than this many block intervals (the interval comes from the genesis)." },
    KeyDoc { section: "log", key: "level", kind: Kind::Str, default: r#""info""#,
        doc: "Log level (error, warn, info, debug, trace) or a filter such as \"info,dchatd=debug\". SIGHUP rereads it." },
    KeyDoc { section: "log", key: "format", kind: Kind::Str, default: r#""auto""#,
        doc: "auto (journald when stderr is the journal, else pretty), journald, syslog, json or pretty." },
];

/// Looks a key up by section and name.
pub fn find(section: &str, key: &str) -> Option<&'static KeyDoc> {
    KEYS.iter().find(|k| k.section == section && k.key == key)
}

/// The documented default configuration file, every key commented with its
/// meaning and set to its default.
pub fn default_file() -> String {
    let mut out = String::from(
        "# dchatd configuration. Every key is shown with its default.\n\
         # Each key can be overridden by the environment as DCHAT_<SECTION>_<KEY>\n\
         # (for example DCHAT_LOG_LEVEL=debug); lists are comma-separated.\n\
         # See dchatd.toml(5).\n",
    );
    for section in SECTIONS {
        out.push_str(&format!("\n[{section}]\n"));
        for k in KEYS.iter().filter(|k| k.section == *section) {
            for line in wrap(k.doc, 76) {
                out.push_str(&format!("# {line}\n"));
            }
            out.push_str(&format!("{} = {}\n", k.key, k.default));
        }
    }
    out
}

fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.len() + 1 + word.len() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}
