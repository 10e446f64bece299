//! Metrics and probes: the Prometheus registry every subsystem counts into,
//! and the two small HTTP listeners that expose it (`[metrics] listen`) and
//! the health facts (`[health] listen`).
//!
//! [`Metrics`] is a cloneable handle held by the `Node`; a subsystem clones
//! it once and increments its own families. Every family the operator guide
//! lists is registered from the start, so dashboards and alert rules see the
//! series even on a node where the subsystem behind them does not run (yet):
//! such series stay at zero, they are never filled with made-up values.
//!
//! exposition.rs renders the registry (OpenMetrics, or the classic text
//! format for older scrapers and promtool), http.rs is the minimal HTTP/1.1
//! server, endpoints.rs maps paths onto the node, listeners.rs binds and runs
//! them (see docs/adr/0007-observability.md).

mod endpoints;
pub mod exposition;
pub mod http;
mod listeners;

use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

pub use listeners::{bind, spawn, Bound};

/// Every metric name starts with this (then `_`).
pub const PREFIX: &str = "dchat";

/// Upper bounds of the control latency buckets, in seconds: from a status
/// call (tens of µs) to an account creation (key derivation, up to seconds).
const CONTROL_BUCKETS: [f64; 16] = [
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Why a message was dropped. A closed set keeps the label's cardinality
/// bounded whatever a peer sends; the P2P and relay layers pick from it.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum DropReason {
    /// Seen before (same id or content hash).
    Duplicate,
    /// A valid message replayed outside its window.
    Replay,
    /// The author's signature does not verify.
    BadSignature,
    /// Not decodable, or fails validation.
    Malformed,
    /// Larger than the protocol allows.
    TooLarge,
    /// Its expiry passed before delivery.
    Expired,
    /// The sending peer exceeded its rate or bandwidth limit.
    RateLimited,
    /// The recipient's mailbox is full.
    MailboxFull,
    /// Not for the node or account it reached (wrong mailbox, recipient,
    /// channel topic).
    Misaddressed,
    /// Well-formed and signed, but not allowed (not a channel member, an
    /// unregistered author, a key the chain does not know).
    NotPermitted,
}

impl DropReason {
    pub const ALL: [DropReason; 10] = [
        DropReason::Duplicate,
        DropReason::Replay,
        DropReason::BadSignature,
        DropReason::Malformed,
        DropReason::TooLarge,
        DropReason::Expired,
        DropReason::RateLimited,
        DropReason::MailboxFull,
        DropReason::Misaddressed,
        DropReason::NotPermitted,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::Duplicate => "duplicate",
            DropReason::Replay => "replay",
            DropReason::BadSignature => "bad_signature",
            DropReason::Malformed => "malformed",
            DropReason::TooLarge => "too_large",
            DropReason::Expired => "expired",
            DropReason::RateLimited => "rate_limited",
            DropReason::MailboxFull => "mailbox_full",
            DropReason::Misaddressed => "misaddressed",
            DropReason::NotPermitted => "not_permitted",
        }
    }
}

impl EncodeLabelValue for DropReason {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        EncodeLabelValue::encode(&self.as_str(), encoder)
    }
}

/// Why a relay circuit closed: `byte_cap`, `time_cap` or `other` (either
/// peer hung up or its connection went).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CircuitCloseLabels {
    pub reason: &'static str,
}

impl CircuitCloseLabels {
    pub const REASONS: [&'static str; 3] = ["byte_cap", "time_cap", "other"];
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: DropReason,
}

/// A control method. Only known method names become label values; anything
/// else a client sends is counted as `unknown`, so a client cannot create
/// series at will.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MethodLabels {
    pub method: &'static str,
}

/// An error: which part of the daemon met it, and its kind (for the control
/// socket, the Varlink error name; each subsystem keeps its own closed set).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub subsystem: &'static str,
    pub kind: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CheckLabels {
    pub check: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

/// The daemon's metric families. Cloning is cheap (each metric is shared);
/// every clone counts into the same registry.
#[derive(Clone)]
pub struct Metrics {
    registry: std::sync::Arc<Registry>,

    // Set at each scrape from the node's status facts (see `observe`):
    // subsystems report those facts to the Node, not to these gauges.
    uptime_seconds: Gauge,
    ready: Gauge,
    health_checks: Family<CheckLabels, Gauge>,
    local_accounts: Gauge,
    peers_connected: Gauge,
    chain_height: Gauge,
    mempool_transactions: Gauge,
    database_size_bytes: Gauge,
    database_wal_size_bytes: Gauge,

    /// Messages this node authored and handed to the network.
    pub messages_sent: Counter,
    /// Envelopes this node stored or forwarded for others (relay role).
    pub messages_relayed: Counter,
    /// Messages delivered to a local account.
    pub messages_delivered: Counter,
    /// Messages refused or discarded, by reason.
    pub messages_dropped: Family<ReasonLabels, Counter>,
    /// Direct messages (acknowledgements too) this node sealed, and the
    /// envelopes they went in: several of one conversation sent together
    /// share one.
    pub dm_messages_sealed: Counter,
    pub dm_envelopes_sealed: Counter,
    /// `DeliverBatch` requests sent again because their connection closed
    /// under them (a relay circuit at its byte cap, say).
    pub dm_batches_resent: Counter,
    /// Relay: envelopes waiting in mailboxes, and their size.
    pub mailbox_entries: Gauge,
    pub mailbox_bytes: Gauge,
    /// Relay: circuits opened between two peers, and circuits closed, by
    /// reason.
    pub relay_circuits_opened: Counter,
    pub relay_circuits_closed: Family<CircuitCloseLabels, Counter>,

    /// Control calls by method, and how long each took to answer.
    pub control_requests: Family<MethodLabels, Counter>,
    pub control_request_duration: HistogramFamily<MethodLabels>,
    /// Errors by subsystem and kind.
    pub errors: Family<ErrorLabels, Counter>,

    /// Chain: from a block's proposal to its finality.
    pub finality_latency: Histogram,
}

/// What a scrape reads from the node for the gauges it sets itself.
#[derive(Debug, Clone, Default)]
pub struct NodeFacts {
    pub uptime: Duration,
    pub ready: bool,
    /// Each readiness check by name, and whether it passes.
    pub checks: Vec<(String, bool)>,
    pub accounts: u64,
    pub peers: u64,
    pub height: u64,
    pub mempool: u64,
    pub database_bytes: u64,
    pub wal_bytes: u64,
}

fn control_histogram() -> Histogram {
    Histogram::new(CONTROL_BUCKETS)
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with every family registered. Label sets that are
    /// known in advance (control methods, drop reasons) start at zero, so
    /// `rate()` and `increase()` see their first event.
    pub fn new() -> Metrics {
        let mut r = Registry::with_prefix(PREFIX);
        let m = Metrics {
            registry: std::sync::Arc::default(),
            uptime_seconds: Gauge::default(),
            ready: Gauge::default(),
            health_checks: Family::default(),
            local_accounts: Gauge::default(),
            peers_connected: Gauge::default(),
            messages_sent: Counter::default(),
            messages_relayed: Counter::default(),
            messages_delivered: Counter::default(),
            messages_dropped: Family::default(),
            dm_messages_sealed: Counter::default(),
            dm_envelopes_sealed: Counter::default(),
            dm_batches_resent: Counter::default(),
            mailbox_entries: Gauge::default(),
            mailbox_bytes: Gauge::default(),
            relay_circuits_opened: Counter::default(),
            relay_circuits_closed: Family::default(),
            control_requests: Family::default(),
            control_request_duration: Family::new_with_constructor(control_histogram as fn() -> Histogram),
            errors: Family::default(),
            chain_height: Gauge::default(),
            // 50 ms … ~100 s: one block interval (6 s by default) sits mid-range.
            finality_latency: Histogram::new(exponential_buckets(0.05, 2.0, 12)),
            mempool_transactions: Gauge::default(),
            database_size_bytes: Gauge::default(),
            database_wal_size_bytes: Gauge::default(),
        };

        r.register(
            "build",
            "Build of the running dchatd; the value is always 1",
            Info::new(BuildLabels {
                version: crate::VERSION,
            }),
        );
        r.register_with_unit(
            "uptime",
            "Time since the daemon started",
            Unit::Seconds,
            m.uptime_seconds.clone(),
        );
        r.register(
            "ready",
            "1 when every readiness check passes (as GET /ready), else 0",
            m.ready.clone(),
        );
        r.register(
            "health_check_ok",
            "Each readiness check: 1 passing, 0 failing",
            m.health_checks.clone(),
        );
        r.register(
            "local_accounts",
            "Accounts hosted by this daemon",
            m.local_accounts.clone(),
        );
        r.register(
            "peers_connected",
            "Peers with an open P2P connection",
            m.peers_connected.clone(),
        );
        r.register(
            "messages_sent",
            "Messages this node authored and handed to the network",
            m.messages_sent.clone(),
        );
        r.register(
            "messages_relayed",
            "Envelopes stored or forwarded for other nodes",
            m.messages_relayed.clone(),
        );
        r.register(
            "messages_delivered",
            "Messages delivered to a local account",
            m.messages_delivered.clone(),
        );
        r.register(
            "messages_dropped",
            "Messages refused or discarded, by reason",
            m.messages_dropped.clone(),
        );
        r.register(
            "dm_messages_sealed",
            "Direct messages and acknowledgements this node sealed into envelopes",
            m.dm_messages_sealed.clone(),
        );
        r.register(
            "dm_envelopes_sealed",
            "Envelopes this node sealed; several messages of one conversation sent together share one",
            m.dm_envelopes_sealed.clone(),
        );
        r.register(
            "dm_batches_resent",
            "Batches of direct messages sent again on a new connection because theirs closed under them",
            m.dm_batches_resent.clone(),
        );
        r.register(
            "mailbox_entries",
            "Envelopes waiting in this relay's mailboxes",
            m.mailbox_entries.clone(),
        );
        r.register(
            "relay_circuits_opened",
            "Circuits this relay opened between two peers",
            m.relay_circuits_opened.clone(),
        );
        r.register(
            "relay_circuits_closed",
            "Circuits this relay carried that closed, by reason: byte_cap, time_cap, other (a peer or its connection went)",
            m.relay_circuits_closed.clone(),
        );
        r.register_with_unit(
            "mailbox",
            "Size of the envelopes waiting in this relay's mailboxes",
            Unit::Bytes,
            m.mailbox_bytes.clone(),
        );
        r.register(
            "control_requests",
            "Control socket calls, by method (unknown names as unknown)",
            m.control_requests.clone(),
        );
        r.register_with_unit(
            "control_request_duration",
            "Time from a control call's arrival to its reply, by method (streams excluded)",
            Unit::Seconds,
            m.control_request_duration.clone(),
        );
        r.register("errors", "Errors by subsystem and kind", m.errors.clone());
        r.register("chain_height", "Height of the last final block", m.chain_height.clone());
        r.register_with_unit(
            "chain_finality_latency",
            "Time from a block's proposal to its finalization",
            Unit::Seconds,
            m.finality_latency.clone(),
        );
        r.register(
            "mempool_transactions",
            "Transactions waiting to be put in a block",
            m.mempool_transactions.clone(),
        );
        r.register_with_unit(
            "database_size",
            "Size of the SQLite database file",
            Unit::Bytes,
            m.database_size_bytes.clone(),
        );
        r.register_with_unit(
            "database_wal_size",
            "Size of the SQLite write-ahead log",
            Unit::Bytes,
            m.database_wal_size_bytes.clone(),
        );

        for info in dchat_control::api::methods() {
            let labels = MethodLabels { method: info.method };
            drop(m.control_requests.get_or_create(&labels));
            drop(m.control_request_duration.get_or_create(&labels));
        }
        for reason in CircuitCloseLabels::REASONS {
            drop(m.relay_circuits_closed.get_or_create(&CircuitCloseLabels { reason }));
        }
        for reason in DropReason::ALL {
            drop(m.messages_dropped.get_or_create(&ReasonLabels { reason }));
        }
        Metrics {
            registry: std::sync::Arc::new(r),
            ..m
        }
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Sets the gauges that mirror the node's facts; called at each scrape.
    pub fn observe(&self, facts: &NodeFacts) {
        self.uptime_seconds.set(gauge_value(facts.uptime.as_secs()));
        self.ready.set(i64::from(facts.ready));
        for (check, ok) in &facts.checks {
            self.health_checks
                .get_or_create(&CheckLabels { check: check.clone() })
                .set(i64::from(*ok));
        }
        self.local_accounts.set(gauge_value(facts.accounts));
        self.peers_connected.set(gauge_value(facts.peers));
        self.chain_height.set(gauge_value(facts.height));
        self.mempool_transactions.set(gauge_value(facts.mempool));
        self.database_size_bytes.set(gauge_value(facts.database_bytes));
        self.database_wal_size_bytes.set(gauge_value(facts.wal_bytes));
    }

    /// The label for `method`: itself when it is a method the daemon knows.
    pub fn method_label(method: &str) -> &'static str {
        dchat_control::api::method_info(method).map_or("unknown", |m| m.method)
    }

    /// Counts one control call; `duration` is left out for streams, whose
    /// length is the client's choice; `error` is the Varlink error replied.
    pub fn control_request(&self, method: &str, duration: Option<Duration>, error: Option<&str>) {
        let labels = MethodLabels {
            method: Self::method_label(method),
        };
        self.control_requests.get_or_create(&labels).inc();
        if let Some(d) = duration {
            self.control_request_duration
                .get_or_create(&labels)
                .observe(d.as_secs_f64());
        }
        if let Some(kind) = error {
            self.error("control", kind);
        }
    }

    /// Counts one error of `subsystem`. `kind` must come from a closed set.
    pub fn error(&self, subsystem: &'static str, kind: &str) {
        self.errors
            .get_or_create(&ErrorLabels {
                subsystem,
                kind: kind.to_string(),
            })
            .inc();
    }

    /// Counts one dropped message.
    pub fn message_dropped(&self, reason: DropReason) {
        self.messages_dropped.get_or_create(&ReasonLabels { reason }).inc();
    }
}

/// Gauges hold `i64`; sizes and counts from the system are `u64`.
pub(crate) fn gauge_value(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests;
