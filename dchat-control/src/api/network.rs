//! io.dchat.Network: the peers this node is connected to.

use serde::{Deserialize, Serialize};

use super::MethodInfo;

pub const NETWORK_PEERS: &str = "io.dchat.Network.Peers";

/// Values of [`Peer::direction`].
pub mod peer_direction {
    /// This node opened the connection.
    pub const DIALER: &str = "dialer";
    /// The peer opened the connection.
    pub const LISTENER: &str = "listener";
}

pub(super) const METHODS: &[MethodInfo] = &[MethodInfo {
    method: NETWORK_PEERS,
    // The same facts Status shows in part (peer count, addresses).
    read_only: true,
}];

/// A connected peer. Not `Eq`: `rtt_ms` is a float.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Peer {
    pub peer_id: String,
    pub addresses: Vec<String>,
    /// [`peer_direction::DIALER`] or [`peer_direction::LISTENER`]; a string
    /// so that an older client reads a newer daemon.
    pub direction: String,
    /// The agent version the peer reported through identify, once it has.
    #[serde(default)]
    pub agent: Option<String>,
    /// The dchat roles it announces: "user", "relay", "validator".
    pub roles: Vec<String>,
    /// The last ping round trip, once one has completed.
    #[serde(default)]
    pub rtt_ms: Option<f64>,
    /// Whole seconds since the connection opened.
    pub connected_for_s: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerList {
    pub peers: Vec<Peer>,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn peer_wire_form() {
        let p = Peer {
            peer_id: "12D3KooWabc".into(),
            addresses: vec!["/ip4/127.0.0.1/tcp/7070".into()],
            direction: peer_direction::DIALER.into(),
            agent: Some("dchatd/0.1.0".into()),
            roles: vec!["relay".into()],
            rtt_ms: Some(1.5),
            connected_for_s: 42,
        };
        let wire = json!({
            "peer_id": "12D3KooWabc",
            "addresses": ["/ip4/127.0.0.1/tcp/7070"],
            "direction": "dialer",
            "agent": "dchatd/0.1.0",
            "roles": ["relay"],
            "rtt_ms": 1.5,
            "connected_for_s": 42
        });
        let list = PeerList { peers: vec![p.clone()] };
        assert_eq!(serde_json::to_value(&list).unwrap(), json!({ "peers": [wire] }));
        let back: PeerList = serde_json::from_value(json!({ "peers": [wire] })).unwrap();
        assert_eq!(back, list);
    }

    #[test]
    fn optional_peer_fields_may_be_null_or_absent() {
        let absent: Peer = serde_json::from_value(json!({
            "peer_id": "p", "addresses": [], "direction": "listener", "roles": [], "connected_for_s": 0
        }))
        .unwrap();
        assert_eq!((absent.agent.as_deref(), absent.rtt_ms), (None, None));
        let null: Peer = serde_json::from_value(json!({
            "peer_id": "p", "addresses": [], "direction": "listener", "agent": null,
            "roles": [], "rtt_ms": null, "connected_for_s": 0
        }))
        .unwrap();
        assert_eq!(null, absent);
        // Null, not absent, on the wire: scripts see every field.
        assert_eq!(serde_json::to_value(&absent).unwrap()["rtt_ms"], json!(null));
    }
}
