//! Loopback ports for a testnet's nodes, chosen when it is initialised.
//!
//! They are picked below the kernel's range of ephemeral ports
//! (`/proc/sys/net/ipv4/ip_local_port_range`, 32768–60999 by default).
//! Ports in that range are handed to every outgoing connection and every
//! bind to port 0 on the machine, so one picked there and written into a
//! config is soon the local port of some connection (another node's dial,
//! a test's client) by the time its node binds it. Below the range only
//! programs that ask for a port by number compete.

use std::net::{TcpListener, UdpSocket};

use crate::error::CtlError;

/// Lowest port handed out.
const FLOOR: u16 = 10_000;
/// Candidates tried before giving up.
const TRIES: usize = 20_000;

/// `n` distinct ports free now on 127.0.0.1 for both TCP and UDP (a node
/// listens on TCP and on QUIC over UDP). All are held until the last is
/// found so none repeats; another program may still take one before the
/// node binds it, as with any port chosen ahead of time.
pub fn free_ports(n: usize) -> Result<Vec<u16>, CtlError> {
    let below = ephemeral_start().unwrap_or(32_768);
    let Some(span) = below.checked_sub(FLOOR).filter(|s| *s >= 1_000) else {
        return kernel_chosen(n);
    };
    let mut held = Vec::with_capacity(n);
    let mut ports = Vec::with_capacity(n);
    for _ in 0..TRIES {
        if ports.len() == n {
            break;
        }
        let port = FLOOR + random_u16()? % span;
        if ports.contains(&port) {
            continue;
        }
        let (Ok(tcp), Ok(udp)) = (
            TcpListener::bind(("127.0.0.1", port)),
            UdpSocket::bind(("127.0.0.1", port)),
        ) else {
            continue;
        };
        held.push((tcp, udp));
        ports.push(port);
    }
    if ports.len() < n {
        return Err(CtlError::Failed(format!(
            "cannot find {n} free ports on 127.0.0.1 between {FLOOR} and {below}"
        )));
    }
    Ok(ports)
}

/// The first ephemeral port, as the kernel says.
fn ephemeral_start() -> Option<u16> {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Ports the kernel picks (ephemeral ones), when there is no room below.
fn kernel_chosen(n: usize) -> Result<Vec<u16>, CtlError> {
    let fail = |e: std::io::Error| CtlError::Failed(format!("cannot find a free port on 127.0.0.1: {e}"));
    let listeners = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()
        .map_err(fail)?;
    listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(fail)
}

fn random_u16() -> Result<u16, CtlError> {
    let mut bytes = [0u8; 2];
    getrandom::fill(&mut bytes).map_err(|e| CtlError::Failed(format!("no randomness from the OS: {e}")))?;
    Ok(u16::from_le_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_distinct_free_and_below_the_ephemeral_range() {
        let ports = free_ports(16).unwrap();
        let mut unique = ports.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), 16);
        let below = ephemeral_start().unwrap();
        for port in ports {
            assert!((FLOOR..below).contains(&port), "{port}");
            // Released when free_ports returned: free to bind again.
            TcpListener::bind(("127.0.0.1", port)).unwrap();
            UdpSocket::bind(("127.0.0.1", port)).unwrap();
        }
    }
}
