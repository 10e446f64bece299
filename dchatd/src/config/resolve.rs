//! Turns the merged layers into a validated [`Config`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::env::EnvOverrides;
use super::error::{key_at_line, line_of, locate, ConfigError, Origin};
use super::file::{PartialConfig, Role};
use super::keys::{self, KEYS};
use super::{ChainConfig, ValidatorPeer};
use super::{
    Config, ConfigSource, ControlConfig, Flags, LogConfig, NetworkConfig, StorageConfig, DEFAULT_DEV_STATE_DIR,
};
use crate::logging::{self, LogFormat};
use crate::storage::Synchronous;

/// Longest path a Unix socket address can hold (sun_path less its NUL).
const MAX_SOCKET_PATH: usize = 107;

struct Resolver<'a> {
    flags: &'a Flags,
    file: Option<&'a Path>,
    text: Option<&'a str>,
    env: &'a EnvOverrides,
}

impl Resolver<'_> {
    /// Where the value of `section.key` came from, for error messages.
    fn origin(&self, section: &str, key: &str, flag: Option<&'static str>) -> Origin {
        if let Some(flag) = flag {
            return Origin::Flag { flag };
        }
        if let Some(var) = self.env.vars.get(&format!("{section}.{key}")) {
            return Origin::Env { var: var.clone() };
        }
        Origin::File {
            path: self
                .file
                .map(Path::to_path_buf)
                .unwrap_or_else(|| PathBuf::from("<defaults>")),
            line: self.text.and_then(|t| locate(t, section, key)),
        }
    }

    fn bad(&self, section: &str, key: &str, flag: Option<&'static str>, message: impl Into<String>) -> ConfigError {
        ConfigError {
            origin: self.origin(section, key, flag),
            key: Some(format!("{section}.{key}")),
            message: message.into(),
        }
    }
}

/// Parses the file text into a partial config, with line-numbered errors.
fn parse_file(path: &Path, text: &str) -> Result<PartialConfig, ConfigError> {
    toml::from_str::<PartialConfig>(text).map_err(|e| {
        let line = e.span().map(|s| line_of(text, s.start));
        let key = line.and_then(|l| key_at_line(text, l)).filter(|k| !k.is_empty());
        ConfigError::file(path.to_path_buf(), line, key, e.message().to_string())
    })
}

/// Defaults of the packaged daemon, from the key table.
fn defaults() -> Result<PartialConfig, ConfigError> {
    let mut text = String::new();
    for section in keys::SECTIONS {
        text.push_str(&format!("[{section}]\n"));
        for k in KEYS.iter().filter(|k| k.section == *section) {
            text.push_str(&format!("{} = {}\n", k.key, k.default));
        }
    }
    parse_file(Path::new("<built-in defaults>"), &text)
}

/// What `--dev` changes: all roles, loopback listeners, no socket group.
fn dev_defaults() -> PartialConfig {
    let mut dev = PartialConfig::default();
    dev.node.roles = Some(vec![Role::User, Role::Relay, Role::Validator]);
    dev.network.listen = Some(vec![
        "/ip4/127.0.0.1/tcp/0".into(),
        "/ip4/127.0.0.1/udp/0/quic-v1".into(),
    ]);
    dev.control.group = Some(String::new());
    dev.storage.state_dir = Some(DEFAULT_DEV_STATE_DIR.into());
    dev.consensus.listen = Some("127.0.0.1:0".into());
    dev.log.format = Some(LogFormat::Auto);
    dev
}

pub(super) fn resolve(
    flags: &Flags,
    file: Option<&Path>,
    text: Option<&str>,
    env: EnvOverrides,
) -> Result<Config, ConfigError> {
    let mut merged = defaults()?;
    if flags.dev {
        merged = merged.merge(dev_defaults());
    }
    if let (Some(path), Some(text)) = (file, text) {
        merged = merged.merge(parse_file(path, text)?);
    }
    merged = merged.merge(env.config.clone());
    let r = Resolver {
        flags,
        file,
        text,
        env: &env,
    };
    let missing = |section: &str, key: &str| r.bad(section, key, None, "missing value");

    let roles = merged.node.roles.clone().ok_or_else(|| missing("node", "roles"))?;
    if roles.is_empty() {
        return Err(r.bad("node", "roles", None, "at least one role is needed"));
    }
    let shutdown = merged
        .node
        .shutdown_timeout
        .ok_or_else(|| missing("node", "shutdown_timeout"))?;
    if !(1..=3600).contains(&shutdown) {
        return Err(r.bad("node", "shutdown_timeout", None, "must be between 1 and 3600 seconds"));
    }

    let listen = merged.network.listen.clone().unwrap_or_default();
    let bootstrap = merged.network.bootstrap.clone().unwrap_or_default();
    for (key, addrs) in [("listen", &listen), ("bootstrap", &bootstrap)] {
        if let Some(bad) = addrs.iter().find(|a| !looks_like_multiaddr(a)) {
            return Err(r.bad(
                "network",
                key,
                None,
                format!("{bad:?} is not a multiaddress (like /ip4/127.0.0.1/tcp/7070)"),
            ));
        }
    }

    let limit = |key: &str, value: Option<u64>, range: std::ops::RangeInclusive<u64>| {
        let v = value.ok_or_else(|| missing("network", key))?;
        if range.contains(&v) {
            Ok(v)
        } else {
            Err(r.bad(
                "network",
                key,
                None,
                format!("must be between {} and {}", range.start(), range.end()),
            ))
        }
    };
    let max_connections = limit("max_connections", merged.network.max_connections, 1..=65_536)?;
    let peer_messages_per_s = limit(
        "peer_messages_per_s",
        merged.network.peer_messages_per_s,
        1..=10_000_000,
    )?;
    let peer_bytes_per_s = limit("peer_bytes_per_s", merged.network.peer_bytes_per_s, 1024..=(1 << 40))?;
    let relay_circuit_bytes = limit(
        "relay_circuit_bytes",
        merged.network.relay_circuit_bytes,
        (1 << 20)..=(1 << 40),
    )?;

    let state_flag = flags.state_dir.as_ref().map(|_| "--state-dir");
    let state_dir = match &flags.state_dir {
        Some(dir) => dir.clone(),
        None => PathBuf::from(
            merged
                .storage
                .state_dir
                .clone()
                .ok_or_else(|| missing("storage", "state_dir"))?,
        ),
    };
    if state_dir.as_os_str().is_empty() {
        return Err(r.bad("storage", "state_dir", state_flag, "must not be empty"));
    }
    let synchronous = match merged.storage.synchronous.as_deref() {
        Some("full") | None => Synchronous::Full,
        Some("normal") => Synchronous::Normal,
        Some(other) => {
            return Err(r.bad(
                "storage",
                "synchronous",
                None,
                format!("expected \"full\" or \"normal\", got {other:?}"),
            ))
        }
    };

    let control = resolve_control(&r, &merged, &state_dir)?;
    let chain = resolve_chain(&r, &merged, &state_dir)?;
    let metrics_listen = resolve_listen(&r, "metrics", merged.metrics.listen.as_deref())?;
    let health_listen = resolve_listen(&r, "health", merged.health.listen.as_deref())?;
    let stall_intervals = merged.health.stall_intervals.unwrap_or(10);
    let health_stall_intervals = u32::try_from(stall_intervals)
        .ok()
        .filter(|n| (1..=10_000).contains(n))
        .ok_or_else(|| r.bad("health", "stall_intervals", None, "must be between 1 and 10000"))?;

    let level_flag = flags.log_level.as_ref().map(|_| "--log-level");
    let level = flags
        .log_level
        .clone()
        .or(merged.log.level.clone())
        .unwrap_or_else(|| "info".into());
    logging::validate_level(&level).map_err(|e| r.bad("log", "level", level_flag, e.to_string()))?;
    let format = flags.log_format.or(merged.log.format).unwrap_or(LogFormat::Auto);

    Ok(Config {
        roles: dedup(roles),
        shutdown_timeout: Duration::from_secs(shutdown),
        network: NetworkConfig {
            listen,
            bootstrap,
            max_connections: u32::try_from(max_connections).unwrap_or(u32::MAX),
            peer_messages_per_s: u32::try_from(peer_messages_per_s).unwrap_or(u32::MAX),
            peer_bytes_per_s,
            relay_circuit_bytes,
        },
        control,
        storage: StorageConfig { state_dir, synchronous },
        chain,
        metrics_listen,
        health_listen,
        health_stall_intervals,
        log: LogConfig { level, format },
        dev: flags.dev,
        source: ConfigSource {
            file: file.map(Path::to_path_buf),
            flags: flags.clone(),
        },
    })
}

fn resolve_control(r: &Resolver<'_>, merged: &PartialConfig, state_dir: &Path) -> Result<ControlConfig, ConfigError> {
    let c = &merged.control;
    let socket_flag = r.flags.socket.as_ref().map(|_| "--socket");
    // In --dev the socket follows the state dir unless set explicitly.
    let socket = match (
        &r.flags.socket,
        r.flags.dev,
        r.env.vars.contains_key("control.socket") || r.text.is_some_and(|t| locate(t, "control", "socket").is_some()),
    ) {
        (Some(path), _, _) => path.clone(),
        (None, true, false) => state_dir.join("dchatd.sock"),
        _ => PathBuf::from(c.socket.clone().unwrap_or_default()),
    };
    if socket.as_os_str().is_empty() {
        return Err(r.bad("control", "socket", socket_flag, "must not be empty"));
    }
    if socket.as_os_str().len() > MAX_SOCKET_PATH {
        return Err(r.bad(
            "control",
            "socket",
            socket_flag,
            format!("path is longer than the {MAX_SOCKET_PATH} bytes a Unix socket allows"),
        ));
    }
    let group = c.group.clone().filter(|g| !g.is_empty());
    if let Some(g) = &group {
        if !g.chars().all(|ch| ch.is_ascii_alphanumeric() || "_-.".contains(ch)) {
            return Err(r.bad("control", "group", None, format!("{g:?} is not a valid group name")));
        }
    }
    let mode_text = c.mode.clone().unwrap_or_else(|| "0660".into());
    let mode = u32::from_str_radix(mode_text.trim_start_matches("0o"), 8)
        .ok()
        .filter(|m| *m <= 0o777)
        .ok_or_else(|| {
            r.bad(
                "control",
                "mode",
                None,
                format!("{mode_text:?} is not an octal file mode like \"0660\""),
            )
        })?;
    let frame = c.max_frame_bytes.unwrap_or(1 << 20);
    if !(1024..=64 << 20).contains(&frame) {
        return Err(r.bad("control", "max_frame_bytes", None, "must be between 1024 and 67108864"));
    }
    let conns = c.max_connections.unwrap_or(128);
    if !(1..=65536).contains(&conns) {
        return Err(r.bad("control", "max_connections", None, "must be between 1 and 65536"));
    }
    let idle = c.idle_timeout.unwrap_or(300);
    if !(1..=86400).contains(&idle) {
        return Err(r.bad("control", "idle_timeout", None, "must be between 1 and 86400 seconds"));
    }
    Ok(ControlConfig {
        socket,
        group,
        mode,
        public_read: c.public_read.unwrap_or(false),
        max_frame_bytes: usize::try_from(frame).unwrap_or(usize::MAX),
        max_connections: usize::try_from(conns).unwrap_or(usize::MAX),
        idle_timeout: Duration::from_secs(idle),
    })
}

fn resolve_chain(r: &Resolver<'_>, merged: &PartialConfig, state_dir: &Path) -> Result<ChainConfig, ConfigError> {
    // In --dev the genesis lives (and is made) in the state dir unless set.
    let explicit =
        r.env.vars.contains_key("chain.genesis") || r.text.is_some_and(|t| locate(t, "chain", "genesis").is_some());
    let genesis = if r.flags.dev && !explicit {
        state_dir.join("genesis.json")
    } else {
        PathBuf::from(merged.chain.genesis.clone().unwrap_or_default())
    };
    if genesis.as_os_str().is_empty() {
        return Err(r.bad("chain", "genesis", None, "must not be empty"));
    }
    let listen_text = merged.consensus.listen.clone().unwrap_or_default();
    let consensus_listen = listen_text.parse::<SocketAddr>().map_err(|_| {
        r.bad(
            "consensus",
            "listen",
            None,
            format!("{listen_text:?} is not an address like \"0.0.0.0:7071\""),
        )
    })?;
    let mut peers = Vec::new();
    for entry in merged.consensus.peers.clone().unwrap_or_default() {
        let peer = parse_peer(&entry).ok_or_else(|| {
            r.bad(
                "consensus",
                "peers",
                None,
                format!("{entry:?} is not \"<64 hex key>@host:port\""),
            )
        })?;
        peers.push(peer);
    }
    Ok(ChainConfig {
        genesis,
        consensus_listen,
        peers,
    })
}

fn parse_peer(entry: &str) -> Option<ValidatorPeer> {
    let (key, addr) = entry.trim().split_once('@')?;
    let bytes = hex::decode(key).ok()?;
    Some(ValidatorPeer {
        key: <[u8; 32]>::try_from(bytes.as_slice()).ok()?,
        addr: addr.parse().ok()?,
    })
}

fn resolve_listen(r: &Resolver<'_>, section: &str, value: Option<&str>) -> Result<Option<SocketAddr>, ConfigError> {
    match value.map(str::trim) {
        None | Some("") => Ok(None),
        Some(addr) => addr.parse::<SocketAddr>().map(Some).map_err(|_| {
            r.bad(
                section,
                "listen",
                None,
                format!("{addr:?} is not an address like \"127.0.0.1:9090\""),
            )
        }),
    }
}

fn looks_like_multiaddr(addr: &str) -> bool {
    addr.parse::<libp2p::Multiaddr>().is_ok_and(|a| !a.is_empty())
}

fn dedup(roles: Vec<Role>) -> Vec<Role> {
    let mut out: Vec<Role> = Vec::new();
    for role in roles {
        if !out.contains(&role) {
            out.push(role);
        }
    }
    out
}
