//! `testnet init DIR`: genesis, node keys, configs and the manifest.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use dchat_keyfile::Identity;
use serde::Serialize;

use super::manifest::{Manifest, Node, NodePaths, Role, FORMAT, GENESIS, MANIFEST};
use super::render::{self, LogSettings};
use super::{process, InitArgs};
use crate::error::CtlError;
use crate::outln;
use crate::output;

/// Longest path a unix socket address holds (sun_path, minus the NUL).
const MAX_SOCKET_PATH: usize = 107;

pub fn run(args: &InitArgs, json: bool) -> Result<u8, CtlError> {
    let plan = plan(args);
    let failed = |e: std::io::Error| CtlError::Failed(format!("{}: {e}", args.dir.display()));
    std::fs::create_dir_all(&args.dir).map_err(failed)?;
    let dir = args.dir.canonicalize().map_err(failed)?;
    if let Some(socket) = plan
        .iter()
        .map(|(name, _)| NodePaths::new(&dir, name).socket)
        .find(|s| s.as_os_str().len() > MAX_SOCKET_PATH)
    {
        return Err(CtlError::Failed(format!(
            "{} is too deep: {} passes the {MAX_SOCKET_PATH}-byte limit of unix socket paths; pick a shorter DIR",
            dir.display(),
            socket.display()
        )));
    }
    clear_dir(&dir, &plan, args.force)?;

    let consensus_count = plan.iter().filter(|(_, r)| *r == Role::Validator).count();
    let mut ports = super::ports::free_ports(plan.len() + consensus_count)?.into_iter();
    let mut nodes = Vec::with_capacity(plan.len());
    let mut identities = Vec::with_capacity(plan.len());
    for (name, role) in plan {
        let identity = Identity::generate()?;
        let p2p_port = ports.next().unwrap_or_default();
        let consensus_port = (role == Role::Validator).then(|| ports.next().unwrap_or_default());
        nodes.push(Node {
            key: identity.identity_public_hex(),
            peer_id: peer_id(&identity),
            name,
            role,
            p2p_port,
            consensus_port,
        });
        identities.push(identity);
    }
    let manifest = Manifest {
        format: FORMAT.into(),
        chain_id: format!("dchat-testnet-{}", random_hex(4)?),
        block_interval_ms: args.block_interval_ms,
        nodes,
    };

    let genesis = render::genesis(&manifest, now_ms());
    write(&dir.join(GENESIS), &pretty(&genesis)?)?;
    let log = LogSettings {
        format: args.log_format,
        level: &args.log_level,
    };
    for (node, identity) in manifest.nodes.iter().zip(&identities) {
        let paths = NodePaths::new(&dir, &node.name);
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&paths.dir)
            .map_err(|e| CtlError::Failed(format!("cannot create {}: {e}", paths.dir.display())))?;
        crate::write_output(&paths.key, &dchat_keyfile::to_keystore_json(identity, false), false)?;
        write(&paths.config, &render::node_config(&dir, &manifest, node, &log)?)?;
    }
    // Last: a directory with a manifest is a complete testnet.
    write(&dir.join(MANIFEST), &pretty(&manifest)?)?;

    print(&dir, &manifest, json)?;
    Ok(0)
}

/// Node names and roles in manifest order: validators, relays, users.
fn plan(args: &InitArgs) -> Vec<(String, Role)> {
    [
        (Role::Validator, args.validators),
        (Role::Relay, args.relays),
        (Role::User, args.users),
    ]
    .into_iter()
    .flat_map(|(role, count)| (1..=count).map(move |i| (format!("{}{i}", role.as_str()), role)))
    .collect()
}

/// Checks DIR is empty. With `force`, an earlier testnet's files are
/// removed first — only what a testnet consists of (genesis, manifest, node
/// folders by the old and the new names), never other files, and never
/// while one of its nodes runs.
fn clear_dir(dir: &Path, plan: &[(String, Role)], force: bool) -> Result<(), CtlError> {
    let mut entries =
        std::fs::read_dir(dir).map_err(|e| CtlError::Failed(format!("cannot read {}: {e}", dir.display())))?;
    if entries.next().is_none() {
        return Ok(());
    }
    if !force {
        return Err(CtlError::Failed(format!(
            "{} is not empty; pass --force to replace the testnet in it",
            dir.display()
        )));
    }
    let mut names: Vec<String> = plan.iter().map(|(n, _)| n.clone()).collect();
    if let Ok((_, old)) = Manifest::load(dir) {
        names.extend(old.nodes.into_iter().map(|n| n.name));
    }
    names.sort();
    names.dedup();
    for name in &names {
        let paths = NodePaths::new(dir, name);
        if let Some(pid) = process::running_pid(&paths.pid, &paths.config) {
            return Err(CtlError::Failed(format!(
                "{name} is running (pid {pid}); stop it with `dchatctl testnet down {}` first",
                dir.display()
            )));
        }
    }
    for name in &names {
        remove(&NodePaths::new(dir, name).dir, true)?;
    }
    remove(&dir.join(GENESIS), false)?;
    remove(&dir.join(MANIFEST), false)
}

fn remove(path: &Path, is_dir: bool) -> Result<(), CtlError> {
    let result = if is_dir {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    };
    match result {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(CtlError::Failed(format!("cannot remove {}: {e}", path.display())))
        }
        _ => Ok(()),
    }
}

/// libp2p's peer id for the node's ed25519 key, for bootstrap addresses:
/// base58btc of the identity multihash (0x00, length) of the protobuf
/// `PublicKey { type: Ed25519 (field 1 = 1), data: 32 bytes (field 2) }`.
fn peer_id(identity: &Identity) -> String {
    let mut bytes = vec![0x00, 36, 0x08, 0x01, 0x12, 32];
    bytes.extend_from_slice(&identity.signing_key().verifying_key().to_bytes());
    bs58::encode(bytes).into_string()
}

fn random_hex(n: usize) -> Result<String, CtlError> {
    let mut bytes = vec![0u8; n];
    getrandom::fill(&mut bytes).map_err(|e| CtlError::Failed(format!("no randomness from the OS: {e}")))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn pretty<T: Serialize>(value: &T) -> Result<String, CtlError> {
    serde_json::to_string_pretty(value)
        .map(|s| s + "\n")
        .map_err(|e| CtlError::Failed(format!("cannot encode JSON: {e}")))
}

fn write(path: &Path, text: &str) -> Result<(), CtlError> {
    std::fs::write(path, text).map_err(|e| CtlError::Failed(format!("cannot write {}: {e}", path.display())))
}

/// What `init --json` prints: the manifest with every path spelled out.
#[derive(Serialize)]
struct Layout<'a> {
    dir: &'a Path,
    chain_id: &'a str,
    genesis: PathBuf,
    block_interval_ms: u64,
    nodes: Vec<NodeLayout<'a>>,
}

#[derive(Serialize)]
struct NodeLayout<'a> {
    name: &'a str,
    role: Role,
    key: &'a str,
    peer_id: &'a str,
    listen: String,
    p2p_port: u16,
    consensus: Option<String>,
    consensus_port: Option<u16>,
    dir: PathBuf,
    config: PathBuf,
    socket: PathBuf,
    log: PathBuf,
}

fn print(dir: &Path, manifest: &Manifest, json: bool) -> Result<(), CtlError> {
    let nodes: Vec<NodeLayout<'_>> = manifest
        .nodes
        .iter()
        .map(|n| {
            let paths = NodePaths::new(dir, &n.name);
            NodeLayout {
                name: &n.name,
                role: n.role,
                key: &n.key,
                peer_id: &n.peer_id,
                listen: n.listen_multiaddr(),
                p2p_port: n.p2p_port,
                consensus: n.consensus_addr(),
                consensus_port: n.consensus_port,
                dir: paths.dir,
                config: paths.config,
                socket: paths.socket,
                log: paths.log,
            }
        })
        .collect();
    if json {
        return output::json(&Layout {
            dir,
            chain_id: &manifest.chain_id,
            genesis: dir.join(GENESIS),
            block_interval_ms: manifest.block_interval_ms,
            nodes,
        });
    }
    outln!(
        "testnet {} in {}: {} nodes, block interval {} ms",
        manifest.chain_id,
        dir.display(),
        manifest.nodes.len(),
        manifest.block_interval_ms
    )?;
    let rows: Vec<Vec<String>> = nodes
        .iter()
        .map(|n| {
            vec![
                n.name.to_string(),
                n.role.as_str().to_string(),
                n.p2p_port.to_string(),
                n.consensus_port.map_or("-".into(), |p| p.to_string()),
                n.socket.display().to_string(),
            ]
        })
        .collect();
    output::table(&["NODE", "ROLE", "P2P", "CONSENSUS", "SOCKET"], &rows)?;
    outln!("start it with: dchatctl testnet up {}", dir.display())?;
    Ok(())
}
