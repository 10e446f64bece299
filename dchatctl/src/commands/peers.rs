//! `peers`: who this node is connected to (io.dchat.Network.Peers).

use std::path::Path;

use dchat_control::api;

use super::call;
use crate::error::CtlError;
use crate::{outln, output};

pub async fn run(socket: &Path, json: bool) -> Result<u8, CtlError> {
    let r: api::PeerList = call(socket, api::NETWORK_PEERS, &api::Empty {}).await?;
    if json {
        output::json(&r.peers)?;
    } else if r.peers.is_empty() {
        outln!("no peers connected")?;
    } else {
        output::table(
            &["PEER ID", "DIRECTION", "RTT", "CONNECTED", "ROLES", "AGENT", "ADDRESS"],
            &rows(&r.peers),
        )?;
    }
    Ok(0)
}

fn rows(peers: &[api::Peer]) -> Vec<Vec<String>> {
    peers
        .iter()
        .map(|p| {
            vec![
                p.peer_id.clone(),
                p.direction.clone(),
                p.rtt_ms.map_or("-".into(), |ms| format!("{ms:.1} ms")),
                duration(p.connected_for_s),
                if p.roles.is_empty() {
                    "-".into()
                } else {
                    p.roles.join(",")
                },
                p.agent.as_deref().map_or("-".into(), output::sanitize),
                address(&p.addresses),
            ]
        })
        .collect()
}

/// The first address, and how many more there are.
fn address(addresses: &[String]) -> String {
    match addresses {
        [] => "-".into(),
        [one] => one.clone(),
        [first, rest @ ..] => format!("{first} (+{})", rest.len()),
    }
}

/// `45s`, `12m05s`, `3h04m`, `2d03h`.
fn duration(s: u64) -> String {
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        3600..=86_399 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86_400, s % 86_400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(duration(0), "0s");
        assert_eq!(duration(59), "59s");
        assert_eq!(duration(725), "12m05s");
        assert_eq!(duration(3600 * 3 + 240), "3h04m");
        assert_eq!(duration(86_400 * 2 + 3 * 3600), "2d03h");
    }

    #[test]
    fn peer_rows() {
        let p = api::Peer {
            peer_id: "12D3KooWabc".into(),
            addresses: vec!["/ip4/127.0.0.1/tcp/7070".into(), "/ip4/10.0.0.2/tcp/7070".into()],
            direction: api::peer_direction::LISTENER.into(),
            agent: None,
            roles: vec!["relay".into(), "validator".into()],
            rtt_ms: Some(0.84),
            connected_for_s: 61,
        };
        assert_eq!(
            rows(&[p]),
            [[
                "12D3KooWabc",
                "listener",
                "0.8 ms",
                "1m01s",
                "relay,validator",
                "-",
                "/ip4/127.0.0.1/tcp/7070 (+1)"
            ]]
        );
    }
}
