//! `DIR/testnet.json`: which nodes a testnet has, their roles, keys and
//! ports. `init` writes it last, so a directory holding it is a complete
//! testnet; `up`, `down` and `status` read it. Paths are not stored: they
//! follow from DIR and the node's name, the same way for every command.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::CtlError;

pub const MANIFEST: &str = "testnet.json";
pub const GENESIS: &str = "genesis.json";
/// Tags the manifest so a later dchatctl can tell old layouts apart.
pub const FORMAT: &str = "dchat-testnet/1";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Validator,
    Relay,
    User,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Validator => "validator",
            Role::Relay => "relay",
            Role::User => "user",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub chain_id: String,
    pub block_interval_ms: u64,
    pub nodes: Vec<Node>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Node {
    pub name: String,
    pub role: Role,
    /// Hex ed25519 public key of `node.key` (a validator's key in genesis).
    pub key: String,
    /// libp2p peer id of the same key.
    pub peer_id: String,
    pub p2p_port: u16,
    /// Validators only.
    pub consensus_port: Option<u16>,
}

impl Node {
    pub fn listen_multiaddr(&self) -> String {
        format!("/ip4/127.0.0.1/tcp/{}", self.p2p_port)
    }

    pub fn consensus_addr(&self) -> Option<String> {
        self.consensus_port.map(|p| format!("127.0.0.1:{p}"))
    }
}

/// Where a node's files are.
#[derive(Debug, Clone)]
pub struct NodePaths {
    pub dir: PathBuf,
    pub config: PathBuf,
    pub key: PathBuf,
    pub socket: PathBuf,
    pub log: PathBuf,
    pub pid: PathBuf,
}

impl NodePaths {
    pub fn new(testnet_dir: &Path, name: &str) -> NodePaths {
        let dir = testnet_dir.join(name);
        NodePaths {
            config: dir.join("dchatd.toml"),
            key: dir.join("node.key"),
            socket: dir.join("dchatd.sock"),
            log: dir.join("dchatd.log"),
            pid: dir.join("dchatd.pid"),
            dir,
        }
    }
}

impl Manifest {
    /// Reads `DIR/testnet.json`; returns DIR made absolute with it, since
    /// the nodes run with other working directories.
    pub fn load(dir: &Path) -> Result<(PathBuf, Manifest), CtlError> {
        let dir =
            std::path::absolute(dir).map_err(|e| CtlError::Failed(format!("cannot resolve {}: {e}", dir.display())))?;
        let path = dir.join(MANIFEST);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(CtlError::Failed(format!(
                    "{} is not a testnet (no {MANIFEST}); make one with `dchatctl testnet init {}`",
                    dir.display(),
                    dir.display()
                )))
            }
            Err(e) => return Err(CtlError::Failed(format!("cannot read {}: {e}", path.display()))),
        };
        let manifest: Manifest = serde_json::from_slice(&bytes)
            .map_err(|e| CtlError::Failed(format!("{}: not a testnet manifest: {e}", path.display())))?;
        if manifest.format != FORMAT {
            return Err(CtlError::Failed(format!(
                "{}: format {:?} is not {FORMAT:?}; this dchatctl cannot drive it",
                path.display(),
                manifest.format
            )));
        }
        Ok((dir, manifest))
    }

    /// The nodes named on the command line, in manifest order; all of them
    /// when none is named.
    pub fn select(&self, names: &[String]) -> Result<Vec<&Node>, CtlError> {
        if let Some(unknown) = names.iter().find(|n| !self.nodes.iter().any(|node| &node.name == *n)) {
            let known: Vec<&str> = self.nodes.iter().map(|n| n.name.as_str()).collect();
            return Err(CtlError::Usage(format!(
                "this testnet has no node {unknown:?}; it has {}",
                known.join(", ")
            )));
        }
        Ok(self
            .nodes
            .iter()
            .filter(|node| names.is_empty() || names.contains(&node.name))
            .collect())
    }

    pub fn validators(&self) -> impl Iterator<Item = &Node> {
        self.nodes.iter().filter(|n| n.role == Role::Validator)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, role: Role) -> Node {
        Node {
            name: name.into(),
            role,
            key: "00".repeat(32),
            peer_id: String::new(),
            p2p_port: 1,
            consensus_port: None,
        }
    }

    #[test]
    fn select_keeps_manifest_order_and_refuses_unknown_names() {
        let m = Manifest {
            format: FORMAT.into(),
            chain_id: "c".into(),
            block_interval_ms: 1,
            nodes: vec![
                node("validator1", Role::Validator),
                node("relay1", Role::Relay),
                node("user1", Role::User),
            ],
        };
        let all: Vec<&str> = m.select(&[]).unwrap().iter().map(|n| n.name.as_str()).collect();
        assert_eq!(all, ["validator1", "relay1", "user1"]);
        let some: Vec<&str> = m
            .select(&["user1".into(), "validator1".into(), "user1".into()])
            .unwrap()
            .iter()
            .map(|n| n.name.as_str())
            .collect();
        assert_eq!(some, ["validator1", "user1"]);
        let err = m.select(&["validator9".into()]).unwrap_err();
        assert_eq!(err.exit_code(), crate::error::EX_USAGE);
        assert!(err.to_string().contains("validator1, relay1, user1"), "{err}");
    }
}
