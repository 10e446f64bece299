//! `testnet down DIR [NODE...]`: SIGTERM, wait, then SIGKILL.
//!
//! The nodes are not our children (an earlier `up` started them), so their
//! exit status cannot be collected; what we report is how each ended: by
//! SIGTERM within the timeout, by SIGKILL after it, or not at all.

use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::Signal;
use serde::Serialize;

use super::manifest::{Manifest, NodePaths, Role};
use super::{process, DownArgs};
use crate::error::CtlError;
use crate::output;

const POLL: Duration = Duration::from_millis(50);
/// After SIGKILL the kernel needs only a moment; past this, give up.
const KILL_GRACE: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum State {
    /// Running until now; being stopped.
    Stopping,
    /// Exited after SIGTERM.
    Stopped,
    /// Still running at the timeout; exited after SIGKILL.
    Killed,
    NotRunning,
    /// Could not be signalled, or survived SIGKILL.
    StillRunning,
}

#[derive(Serialize)]
struct Outcome {
    node: String,
    role: Role,
    pid: Option<i32>,
    state: State,
    /// Seconds from SIGTERM until the process was gone.
    seconds: Option<f64>,
    error: Option<String>,
    #[serde(skip)]
    pid_file: std::path::PathBuf,
    #[serde(skip)]
    config: std::path::PathBuf,
}

pub fn run(args: &DownArgs, json: bool) -> Result<u8, CtlError> {
    let (dir, manifest) = Manifest::load(&args.dir)?;
    let nodes = manifest.select(&args.nodes)?;
    let started = Instant::now();
    let mut outcomes: Vec<Outcome> = nodes
        .iter()
        .map(|node| {
            let paths = NodePaths::new(&dir, &node.name);
            let pid = process::running_pid(&paths.pid, &paths.config);
            let mut o = Outcome {
                node: node.name.clone(),
                role: node.role,
                pid,
                state: State::NotRunning,
                seconds: None,
                error: None,
                pid_file: paths.pid,
                config: paths.config,
            };
            if let Some(pid) = pid {
                o.state = State::Stopping;
                if let Err(e) = process::signal(pid, Signal::SIGTERM) {
                    fail_signal(&mut o, e, "SIGTERM");
                }
            }
            o
        })
        .collect();

    wait_gone(
        &mut outcomes,
        started,
        started + Duration::from_secs(args.timeout),
        State::Stopped,
    );
    let killed_at = Instant::now();
    for o in outcomes.iter_mut().filter(|o| o.state == State::Stopping) {
        if let Err(e) = process::signal(o.pid.unwrap_or_default(), Signal::SIGKILL) {
            fail_signal(o, e, "SIGKILL");
        }
    }
    wait_gone(&mut outcomes, started, killed_at + KILL_GRACE, State::Killed);
    for o in outcomes.iter_mut() {
        match o.state {
            State::Stopping => {
                o.state = State::StillRunning;
                o.error = Some("still running after SIGKILL".into());
            }
            // Gone (or never there): its pid file would only mislead.
            State::Stopped | State::Killed | State::NotRunning => process::remove_pid(&o.pid_file),
            State::StillRunning => {}
        }
    }

    if json {
        output::json(&outcomes)?;
    } else {
        print_table(&outcomes, args.timeout)?;
    }
    let stuck: Vec<&str> = outcomes
        .iter()
        .filter(|o| o.state == State::StillRunning)
        .map(|o| o.node.as_str())
        .collect();
    if stuck.is_empty() {
        Ok(0)
    } else {
        Err(CtlError::Failed(format!("could not stop {}", stuck.join(", "))))
    }
}

/// Polls until every stopping node is gone or `deadline`; those gone are
/// marked `gone_state`.
fn wait_gone(outcomes: &mut [Outcome], started: Instant, deadline: Instant, gone_state: State) {
    loop {
        for o in outcomes.iter_mut().filter(|o| o.state == State::Stopping) {
            if !process::is_alive(o.pid.unwrap_or_default(), Some(&o.config)) {
                o.state = gone_state;
                o.seconds = Some(started.elapsed().as_secs_f64());
            }
        }
        if Instant::now() >= deadline || !outcomes.iter().any(|o| o.state == State::Stopping) {
            return;
        }
        std::thread::sleep(POLL);
    }
}

fn fail_signal(o: &mut Outcome, e: Errno, signal: &str) {
    if e == Errno::ESRCH {
        // It exited between the check and the signal; wait_gone sees that.
        return;
    }
    o.state = State::StillRunning;
    o.error = Some(format!("cannot send {signal}: {e}"));
}

fn print_table(outcomes: &[Outcome], timeout: u64) -> Result<(), CtlError> {
    let rows: Vec<Vec<String>> = outcomes
        .iter()
        .map(|o| {
            let secs = o.seconds.unwrap_or_default();
            let result = match o.state {
                State::Stopped => format!("stopped in {secs:.2} s"),
                State::Killed => format!("killed (SIGKILL) after {timeout} s without exiting"),
                State::NotRunning => "was not running".into(),
                State::Stopping | State::StillRunning => {
                    format!("STILL RUNNING: {}", o.error.as_deref().unwrap_or("unknown"))
                }
            };
            vec![
                o.node.clone(),
                o.role.as_str().into(),
                o.pid.map_or("-".into(), |p| p.to_string()),
                result,
            ]
        })
        .collect();
    output::table(&["NODE", "ROLE", "PID", "RESULT"], &rows)
}
