//! What each path answers. The facts come from the service layer
//! (service/status.rs), the same functions the control socket's Status and
//! Health use, so `dchatctl health` and `GET /ready` cannot disagree.

use std::sync::Arc;
use std::time::SystemTime;

use dchat_control::api::HealthCheck;
use serde_json::json;

use super::exposition::{self, Format};
use super::http::{Request, Response, JSON};
use crate::service::Node;

/// Which paths a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoints {
    pub metrics: bool,
    pub health: bool,
}

impl Endpoints {
    pub const METRICS: Endpoints = Endpoints {
        metrics: true,
        health: false,
    };
    pub const HEALTH: Endpoints = Endpoints {
        metrics: false,
        health: true,
    };

    pub fn describe(self) -> &'static str {
        match (self.metrics, self.health) {
            (true, true) => "/metrics /health /ready",
            (true, false) => "/metrics",
            (false, true) => "/health /ready",
            (false, false) => "nothing",
        }
    }
}

pub async fn route(node: &Arc<Node>, endpoints: Endpoints, request: &Request) -> Response {
    match request.path.as_str() {
        "/metrics" if endpoints.metrics => scrape(node, request.accept.as_deref()),
        "/health" if endpoints.health => {
            let checks = node.liveness().await;
            let live = checks.iter().all(|c| c.ok);
            probe(live, if live { "ok" } else { "not live" }, &checks)
        }
        "/ready" if endpoints.health => {
            let health = node.health();
            probe(health.ready, &health.status, &health.checks)
        }
        _ => Response::error(404, &format!("this listener serves {}", endpoints.describe())),
    }
}

fn scrape(node: &Node, accept: Option<&str>) -> Response {
    let format = Format::negotiate(accept);
    node.metrics().observe(&node.metric_facts());
    match exposition::encode(node.metrics().registry(), format) {
        Ok(text) => Response::new(200, format.content_type(), text),
        Err(e) => {
            tracing::error!(error = %e, "cannot encode the metrics");
            Response::error(500, "cannot encode the metrics")
        }
    }
}

/// The JSON body of /health and /ready: 200 when `ok`, else 503.
fn probe(ok: bool, status: &str, checks: &[HealthCheck]) -> Response {
    let body = json!({
        "version": crate::VERSION,
        "status": status,
        "timestamp": humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
        "checks": checks,
    });
    Response::new(if ok { 200 } else { 503 }, JSON, format!("{body}\n"))
}
