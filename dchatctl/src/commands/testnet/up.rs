//! `testnet up DIR [NODE...]`: start nodes and wait until each is READY.
//!
//! dchatctl is the nodes' service manager until they are up: it passes a
//! notify socket and matches each `READY=1` to a node by the sender's pid.
//! A node that exits first is reported at once with the end of its log.

use std::path::Path;
use std::time::{Duration, Instant};

use nix::unistd::Pid;
use serde::Serialize;

use super::manifest::{Manifest, Node, NodePaths, Role};
use super::notify::NotifySocket;
use super::{process, UpArgs};
use crate::error::CtlError;
use crate::output;

/// Lines of a failed node's log shown with the error.
const LOG_LINES: usize = 20;
/// How often exited children are looked for while no notification comes.
const POLL: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum State {
    Ready,
    AlreadyRunning,
    NotReady,
    Exited,
}

#[derive(Serialize)]
struct Outcome {
    node: String,
    role: Role,
    pid: Option<i32>,
    state: State,
    /// Seconds from start to READY.
    ready_after: Option<f64>,
    /// How a node that died before READY ended.
    exit: Option<String>,
    socket: String,
    log: String,
    #[serde(skip)]
    log_from: u64,
}

pub fn run(args: &UpArgs, json: bool) -> Result<u8, CtlError> {
    let (dir, manifest) = Manifest::load(&args.dir)?;
    let nodes = manifest.select(&args.nodes)?;
    let mut outcomes: Vec<Outcome> = nodes.iter().map(|n| outcome(&dir, n)).collect();

    let to_start: Vec<usize> = outcomes
        .iter()
        .enumerate()
        .filter(|(_, o)| o.state != State::AlreadyRunning)
        .map(|(i, _)| i)
        .collect();
    if !to_start.is_empty() {
        start_and_wait(
            &dir,
            &nodes,
            &mut outcomes,
            &to_start,
            Duration::from_secs(args.timeout),
        )?;
    }

    let failed: Vec<&Outcome> = outcomes
        .iter()
        .filter(|o| matches!(o.state, State::NotReady | State::Exited))
        .collect();
    for o in &failed {
        report_failure(o, args.timeout);
    }
    if json {
        output::json(&outcomes)?;
    } else {
        print_table(&outcomes)?;
    }
    if failed.is_empty() {
        Ok(0)
    } else {
        let names: Vec<&str> = failed.iter().map(|o| o.node.as_str()).collect();
        Err(CtlError::Failed(format!(
            "{} of {} nodes did not become ready: {}",
            failed.len(),
            outcomes.len(),
            names.join(", ")
        )))
    }
}

/// What we know before starting anything: already running, or to start.
fn outcome(dir: &Path, node: &Node) -> Outcome {
    let paths = NodePaths::new(dir, &node.name);
    let running = process::running_pid(&paths.pid, &paths.config);
    if running.is_none() && paths.pid.exists() {
        // The node died without `down`; its pid file is stale.
        process::remove_pid(&paths.pid);
    }
    Outcome {
        node: node.name.clone(),
        role: node.role,
        pid: running,
        state: if running.is_some() {
            State::AlreadyRunning
        } else {
            State::NotReady
        },
        ready_after: None,
        exit: None,
        socket: paths.socket.display().to_string(),
        log: paths.log.display().to_string(),
        log_from: process::log_len(&paths.log),
    }
}

fn start_and_wait(
    dir: &Path,
    nodes: &[&Node],
    outcomes: &mut [Outcome],
    to_start: &[usize],
    timeout: Duration,
) -> Result<(), CtlError> {
    let dchatd = process::find_dchatd()?;
    // Dropped (and its file removed) when we return, READY or not.
    let notify = NotifySocket::bind(dir)?;
    let started = Instant::now();
    let mut waiting: Vec<(usize, Pid)> = Vec::new();
    for &i in to_start {
        let paths = NodePaths::new(dir, &nodes[i].name);
        match process::spawn(&dchatd, &paths.config, &paths.log, &notify.env_value()) {
            Ok(pid) => {
                outcomes[i].pid = Some(pid.as_raw());
                waiting.push((i, pid));
                process::write_pid(&paths.pid, pid)?;
            }
            Err(e) => {
                outcomes[i].state = State::Exited;
                outcomes[i].exit = Some(e.to_string());
            }
        }
    }

    let deadline = started + timeout;
    while !waiting.is_empty() {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        // Other messages (STATUS=…) and other senders are not our concern.
        if let Some(msg) = notify.recv(POLL.min(deadline - now))?.filter(|m| m.is_ready()) {
            if let Some(pos) = waiting.iter().position(|(_, pid)| pid.as_raw() == msg.pid) {
                let (i, _) = waiting.swap_remove(pos);
                outcomes[i].state = State::Ready;
                outcomes[i].ready_after = Some(started.elapsed().as_secs_f64());
            }
        }
        waiting.retain(|&(i, pid)| match process::try_reap(pid) {
            Some(how) => {
                outcomes[i].state = State::Exited;
                outcomes[i].exit = Some(format!("dchatd {how}"));
                outcomes[i].pid = None;
                process::remove_pid(&NodePaths::new(dir, &nodes[i].name).pid);
                false
            }
            None => true,
        });
    }
    Ok(())
}

/// The failing node, why, and the end of what it logged in this start.
fn report_failure(o: &Outcome, timeout: u64) {
    match (&o.state, &o.exit, o.pid) {
        (State::Exited, Some(how), _) => eprintln!("{}: {how} before READY", o.node),
        (_, _, Some(pid)) => eprintln!(
            "{}: no READY within {timeout} s; still running as pid {pid} (`testnet down` stops it)",
            o.node
        ),
        _ => eprintln!("{}: not ready", o.node),
    }
    let tail = process::log_tail(Path::new(&o.log), o.log_from, LOG_LINES);
    if tail.is_empty() {
        eprintln!("  ({} has nothing new)", o.log);
    } else {
        eprintln!("  last lines of {}:", o.log);
        for line in tail {
            eprintln!("  | {line}");
        }
    }
}

fn print_table(outcomes: &[Outcome]) -> Result<(), CtlError> {
    let rows: Vec<Vec<String>> = outcomes
        .iter()
        .map(|o| {
            let state = match o.state {
                State::Ready => format!("ready in {:.2} s", o.ready_after.unwrap_or_default()),
                State::AlreadyRunning => "already running".into(),
                State::NotReady => "NOT READY".into(),
                State::Exited => format!("FAILED: {}", o.exit.as_deref().unwrap_or("exited")),
            };
            vec![
                o.node.clone(),
                o.role.as_str().into(),
                o.pid.map_or("-".into(), |p| p.to_string()),
                state,
                o.socket.clone(),
            ]
        })
        .collect();
    output::table(&["NODE", "ROLE", "PID", "STATE", "SOCKET"], &rows)
}
