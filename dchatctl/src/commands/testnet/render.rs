//! The files `init` writes for the daemon: `genesis.json` in the ledger's
//! format and one `dchatd.toml` per node. dchatctl cannot link dchatd, so
//! dchatd's test `testnet_files.rs` parses both with the daemon's own code.

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use super::manifest::{Manifest, Node, NodePaths, Role};
use super::LogFormat;
use crate::error::CtlError;

/// dchatd's `Genesis` (ledger/block.rs), which denies unknown fields.
#[derive(Debug, Serialize)]
pub struct Genesis {
    pub chain_id: String,
    pub genesis_time_ms: u64,
    pub block_interval_ms: u64,
    pub validators: Vec<GenesisValidator>,
    pub balances: Vec<GenesisBalance>,
}

#[derive(Debug, Serialize)]
pub struct GenesisValidator {
    pub key: String,
    pub stake: u64,
}

/// Present for the format; a testnet starts with no balances.
#[derive(Debug, Serialize)]
pub struct GenesisBalance {
    pub key: String,
    pub amount: u64,
}

pub fn genesis(manifest: &Manifest, genesis_time_ms: u64) -> Genesis {
    Genesis {
        chain_id: manifest.chain_id.clone(),
        genesis_time_ms,
        block_interval_ms: manifest.block_interval_ms,
        validators: manifest
            .validators()
            .map(|v| GenesisValidator {
                key: v.key.clone(),
                stake: 1,
            })
            .collect(),
        balances: Vec::new(),
    }
}

pub struct LogSettings<'a> {
    pub format: LogFormat,
    pub level: &'a str,
}

/// `DIR/<node>/dchatd.toml`. Every path in it is absolute: the daemon may
/// be started from any working directory.
pub fn node_config(
    testnet_dir: &Path,
    manifest: &Manifest,
    node: &Node,
    log: &LogSettings<'_>,
) -> Result<String, CtlError> {
    let paths = NodePaths::new(testnet_dir, &node.name);
    let genesis = testnet_dir.join(super::manifest::GENESIS);
    // The other validators: for a validator its consensus peers, for every
    // other node where the chain is.
    let validators: Vec<&Node> = manifest.validators().filter(|v| v.name != node.name).collect();
    let peers: Vec<String> = validators
        .iter()
        .filter_map(|v| v.consensus_addr().map(|addr| format!("{}@{addr}", v.key)))
        .collect();
    // Long-lived nodes to meet the network through: validators and relays.
    let bootstrap: Vec<String> = manifest
        .nodes
        .iter()
        .filter(|n| n.name != node.name && n.role != Role::User)
        .map(|n| format!("{}/p2p/{}", n.listen_multiaddr(), n.peer_id))
        .collect();
    // A non-validator gets no consensus port; port 0 keeps it off the
    // packaged default (7071), which every node would otherwise share.
    let consensus_listen = node.consensus_addr().unwrap_or_else(|| "127.0.0.1:0".into());
    let format = match log.format {
        LogFormat::Pretty => "pretty",
        LogFormat::Json => "json",
    };

    let mut out = String::new();
    // Writing to a String cannot fail; the results are ignored below.
    let _ = writeln!(
        out,
        "# {} of testnet {}, written by `dchatctl testnet init`.\n\
         # Start it with `dchatctl testnet up {} {}`.",
        node.name,
        manifest.chain_id,
        display(testnet_dir)?,
        node.name
    );
    let _ = writeln!(out, "\n[node]\nroles = {}", list(&[node.role.as_str().to_string()]));
    let _ = writeln!(
        out,
        "\n[network]\nlisten = {}\nbootstrap = {}",
        list(&[node.listen_multiaddr()]),
        list(&bootstrap)
    );
    let _ = writeln!(
        out,
        "\n[control]\nsocket = {}\ngroup = \"\"",
        string(display(&paths.socket)?)
    );
    let _ = writeln!(out, "\n[storage]\nstate_dir = {}", string(display(&paths.dir)?));
    let _ = writeln!(out, "\n[chain]\ngenesis = {}", string(display(&genesis)?));
    let _ = writeln!(
        out,
        "\n[consensus]\nlisten = {}\npeers = {}",
        string(&consensus_listen),
        list(&peers)
    );
    let _ = writeln!(
        out,
        "\n[log]\nformat = {}\nlevel = {}",
        string(format),
        string(log.level)
    );
    Ok(out)
}

/// The config holds paths as TOML strings, which must be UTF-8.
fn display(path: &Path) -> Result<&str, CtlError> {
    path.to_str()
        .ok_or_else(|| CtlError::Failed(format!("{}: a testnet path must be UTF-8", path.display())))
}

/// A TOML basic string.
fn string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn list(items: &[String]) -> String {
    let inner: Vec<String> = items.iter().map(|s| string(s)).collect();
    format!("[{}]", inner.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_strings_escape_quotes_backslashes_and_controls() {
        assert_eq!(string(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(string("x\ny\u{7}"), r#""x\ny\u0007""#);
        assert_eq!(list(&[]), "[]");
        assert_eq!(list(&["a".into(), "b".into()]), r#"["a", "b"]"#);
    }
}
