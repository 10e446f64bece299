//! The configuration as written in a file or the environment: every key
//! optional, unknown keys refused. Layers merge key by key.

use serde::Deserialize;

use crate::logging::LogFormat;

/// A node's roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Relay,
    Validator,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Relay => "relay",
            Role::Validator => "validator",
        }
    }
}

/// Declares one config section: all fields optional, with a key-by-key merge.
macro_rules! section {
    ($name:ident { $($field:ident : $ty:ty),* $(,)? }) => {
        #[derive(Debug, Default, Clone, Deserialize)]
        #[serde(default, deny_unknown_fields)]
        pub struct $name { $(pub $field: Option<$ty>),* }

        impl $name {
            /// Keys set in `over` win.
            pub fn merge(self, over: Self) -> Self {
                Self { $($field: over.$field.or(self.$field)),* }
            }
        }
    };
}

section!(NodeSection { roles: Vec<Role>, shutdown_timeout: u64 });
section!(NetworkSection {
    listen: Vec<String>,
    bootstrap: Vec<String>,
    max_connections: u64,
    peer_messages_per_s: u64,
    peer_bytes_per_s: u64,
    relay_circuit_bytes: u64,
});
section!(ControlSection {
    socket: String,
    group: String,
    mode: String,
    public_read: bool,
    max_frame_bytes: u64,
    max_connections: u64,
    idle_timeout: u64,
});
section!(StorageSection {
    state_dir: String,
    synchronous: String
});
section!(ListenSection { listen: String });
section!(HealthSection {
    listen: String,
    stall_intervals: u64
});
section!(ChainSection { genesis: String });
section!(ConsensusSection { listen: String, peers: Vec<String> });
section!(LogSection {
    level: String,
    format: LogFormat
});

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PartialConfig {
    pub node: NodeSection,
    pub network: NetworkSection,
    pub control: ControlSection,
    pub storage: StorageSection,
    pub chain: ChainSection,
    pub consensus: ConsensusSection,
    pub metrics: ListenSection,
    pub health: HealthSection,
    pub log: LogSection,
}

impl PartialConfig {
    pub fn merge(self, over: PartialConfig) -> PartialConfig {
        PartialConfig {
            node: self.node.merge(over.node),
            network: self.network.merge(over.network),
            control: self.control.merge(over.control),
            storage: self.storage.merge(over.storage),
            chain: self.chain.merge(over.chain),
            consensus: self.consensus.merge(over.consensus),
            metrics: self.metrics.merge(over.metrics),
            health: self.health.merge(over.health),
            log: self.log.merge(over.log),
        }
    }
}
