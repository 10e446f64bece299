//! The systemd service watchdog (`WatchdogSec=`).
//!
//! systemd passes the timeout in `WATCHDOG_USEC` (and, since it may be
//! inherited by children, the intended recipient in `WATCHDOG_PID`). If no
//! `WATCHDOG=1` arrives within that time, systemd kills and (per `Restart=`)
//! restarts the service. `sd_watchdog_enabled(3)` recommends pinging at half
//! the timeout, which leaves room for one late tick.

use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// How often to send `WATCHDOG=1`: half of `WATCHDOG_USEC`, or `None` when
/// the watchdog is off or meant for another process.
pub fn interval() -> Option<Duration> {
    interval_from(
        std::env::var("WATCHDOG_USEC").ok().as_deref(),
        std::env::var("WATCHDOG_PID").ok().as_deref(),
        std::process::id(),
    )
}

/// [`interval`] without the environment, so it can be tested.
fn interval_from(usec: Option<&str>, pid: Option<&str>, our_pid: u32) -> Option<Duration> {
    // A WATCHDOG_PID that names someone else means we inherited the variables
    // from a parent that is the real service; pinging on its behalf would hide
    // a hang. An unparsable PID is treated the same way: not provably ours.
    if let Some(pid) = pid {
        if pid.trim().parse::<u32>().ok() != Some(our_pid) {
            return None;
        }
    }
    let usec = usec?.trim().parse::<u64>().ok()?;
    // WATCHDOG_USEC=0 means "disabled"; a 1 µs timeout would halve to zero,
    // which tokio's interval rejects, so both mean "no watchdog" here.
    let half = usec / 2;
    (half > 0).then(|| Duration::from_micros(half))
}

/// Spawns the task that sends `WATCHDOG=1` every [`interval`] until
/// `shutdown` is cancelled. Returns `None` (and spawns nothing) when the
/// watchdog is not enabled for us. Must be called inside a tokio runtime.
///
/// The first ping goes out immediately, then one per interval. Pings stop at
/// shutdown: once the daemon has said STOPPING=1, `TimeoutStopSec=` is what
/// bounds a hung shutdown, not the watchdog.
pub fn spawn(shutdown: CancellationToken) -> Option<JoinHandle<()>> {
    let every = interval()?;
    let span = tracing::info_span!("watchdog");
    Some(tokio::spawn(
        async move {
            tracing::info!(interval_ms = every.as_millis(), "watchdog task started");
            let mut ticks = tokio::time::interval(every);
            // After a stall (e.g. a suspended VM) send one ping and resume the
            // normal rhythm rather than a burst of catch-up pings.
            ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    _ = ticks.tick() => super::notify::watchdog_ping(),
                }
            }
            tracing::debug!("watchdog task stopped");
        }
        .instrument(span),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interval_is_half_the_timeout() {
        assert_eq!(interval_from(Some("30000000"), None, 42), Some(Duration::from_secs(15)));
        assert_eq!(interval_from(Some("3"), None, 42), Some(Duration::from_micros(1)));
    }

    #[test]
    fn interval_honours_watchdog_pid() {
        assert_eq!(
            interval_from(Some("2000000"), Some("42"), 42),
            Some(Duration::from_secs(1))
        );
        assert_eq!(interval_from(Some("2000000"), Some("43"), 42), None);
        assert_eq!(interval_from(Some("2000000"), Some("garbage"), 42), None);
    }

    #[test]
    fn interval_off_when_unset_zero_or_invalid() {
        assert_eq!(interval_from(None, None, 42), None);
        assert_eq!(interval_from(None, Some("42"), 42), None);
        assert_eq!(interval_from(Some("0"), None, 42), None);
        assert_eq!(interval_from(Some("1"), None, 42), None);
        assert_eq!(interval_from(Some("-5"), None, 42), None);
        assert_eq!(interval_from(Some("soon"), None, 42), None);
    }
}
