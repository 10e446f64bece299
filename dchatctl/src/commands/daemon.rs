//! `status` and `health`.

use std::path::Path;

use dchat_control::api;

use super::call;
use crate::error::CtlError;
use crate::outln;
use crate::output;

pub async fn status(socket: &Path, json: bool) -> Result<u8, CtlError> {
    let s: api::Status = call(socket, api::STATUS, &api::Empty {}).await?;
    if json {
        output::json(&s)?;
        return Ok(0);
    }
    output::fields(&[
        ("version", s.version.clone()),
        ("roles", s.roles.join(", ")),
        ("peer id", s.peer_id.clone()),
        (
            "addresses",
            if s.addresses.is_empty() {
                "(none)".into()
            } else {
                s.addresses.join(", ")
            },
        ),
        ("peers", s.peers.to_string()),
        ("height", s.height.to_string()),
        ("accounts", s.accounts.to_string()),
        ("ready", yes_no(s.ready).into()),
        ("uptime", format!("{} s", s.uptime_seconds)),
        ("state dir", s.state_dir.clone()),
        ("socket", s.socket.clone()),
        ("dev", yes_no(s.dev).into()),
    ])?;
    Ok(0)
}

/// Exit 0 only when live and ready; the checks say what is wrong otherwise.
/// A daemon that cannot be reached is unhealthy too: exit 1, as probes expect.
pub async fn health(socket: &Path, json: bool) -> Result<u8, CtlError> {
    let h: api::Health = match call(socket, api::HEALTH, &api::Empty {}).await {
        Ok(h) => h,
        Err(e @ CtlError::Connect(dchat_control::ClientError::Unreachable { .. })) => {
            eprintln!("dchatctl: {}", e.message());
            if json {
                output::json(
                    &serde_json::json!({ "live": false, "ready": false, "status": "unreachable", "checks": [] }),
                )?;
            }
            return Ok(1);
        }
        Err(e) => return Err(e),
    };
    if json {
        output::json(&h)?;
    } else {
        outln!(
            "{}",
            if h.live && h.ready {
                "healthy: live and ready"
            } else {
                "unhealthy"
            }
        )?;
        let rows: Vec<Vec<String>> = h
            .checks
            .iter()
            .map(|c| {
                vec![
                    c.name.clone(),
                    if c.ok { "ok".into() } else { "FAIL".into() },
                    c.detail.clone(),
                ]
            })
            .collect();
        output::table(&["CHECK", "STATE", "DETAIL"], &rows)?;
    }
    Ok(if h.live && h.ready { 0 } else { 1 })
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}
