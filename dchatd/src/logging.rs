//! Where dchatd's `tracing` output goes, and at what level.
//!
//! One global subscriber: a reloadable level filter (so SIGHUP can change the
//! level without a restart) in front of exactly one output:
//!
//! - `journald`: journald's native protocol, so span and event fields arrive
//!   as journal fields (`peer_id = …` becomes `PEER_ID=`, queryable with
//!   `journalctl PEER_ID=…`);
//! - `syslog`: libc `syslog(3)`, identifier `dchatd`, facility daemon;
//! - `json`: one JSON object per line on stderr, for log shippers;
//! - `pretty`: compact human-readable lines on stderr;
//! - `auto`: journald when systemd connected stderr to the journal, else pretty.
//!
//! `RUST_LOG` is deliberately not read: the level comes from the config file
//! (and whatever environment overrides the config loader applies), so there
//! is one place to look when asking "why is it this verbose?".

use std::fmt;
use std::io::{self, IsTerminal};
use std::str::FromStr;

use tracing_subscriber::filter::{EnvFilter, LevelFilter};
use tracing_subscriber::layer::{Layered, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, Layer, Registry};

use crate::systemd;

/// The identifier journald and syslog file our lines under (`journalctl -t dchatd`).
const IDENTIFIER: &str = "dchatd";

/// Where log output goes; the `[log] format` config key and `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// journald if stderr is the journal, else pretty.
    Auto,
    /// journald's native protocol; an error if journald is not reachable.
    Journald,
    /// syslog(3), facility daemon.
    Syslog,
    /// JSON lines on stderr.
    Json,
    /// Compact human-readable lines on stderr.
    Pretty,
}

impl LogFormat {
    /// Every format, in the order the documentation lists them.
    pub const ALL: [LogFormat; 5] = [
        LogFormat::Auto,
        LogFormat::Journald,
        LogFormat::Syslog,
        LogFormat::Json,
        LogFormat::Pretty,
    ];

    /// The name used in config files and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Auto => "auto",
            LogFormat::Journald => "journald",
            LogFormat::Syslog => "syslog",
            LogFormat::Json => "json",
            LogFormat::Pretty => "pretty",
        }
    }
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for LogFormat {
    type Err = LogError;

    /// Exactly the lowercase names serde accepts, so the config file and the
    /// command line agree on what is valid.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        LogFormat::ALL
            .into_iter()
            .find(|format| format.as_str() == s)
            .ok_or_else(|| LogError::UnknownFormat(s.to_owned()))
    }
}

/// Why logging could not be set up or changed.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The level string is neither a level nor valid filter directives.
    #[error("invalid log level {level:?}: {reason}")]
    InvalidLevel { level: String, reason: String },
    /// Not one of auto, journald, syslog, json, pretty.
    #[error("unknown log format {0:?}: expected one of auto, journald, syslog, json, pretty")]
    UnknownFormat(String),
    /// `format = "journald"` but journald's socket cannot be reached.
    #[error("cannot log to journald (is systemd-journald running?): {0}")]
    JournaldUnavailable(#[source] io::Error),
    /// syslog-tracing allows one syslog connection per process.
    #[error("syslog logging is already set up in this process")]
    SyslogInUse,
    /// A global subscriber (or `log` logger) is already installed.
    #[error("logging is already initialised: {0}")]
    AlreadyInitialized(String),
    /// The subscriber holding the filter is gone (cannot happen once `init`
    /// has succeeded, since the global subscriber lives forever).
    #[error("cannot change the log level: {0}")]
    Reload(String),
}

/// The subscriber the output layer sits on: the registry behind the filter.
type Filtered = Layered<reload::Layer<EnvFilter, Registry>, Registry>;
type Output = Box<dyn Layer<Filtered> + Send + Sync>;

/// Changes the level of the running subscriber (e.g. on SIGHUP).
#[derive(Clone)]
pub struct LogHandle {
    filter: reload::Handle<EnvFilter, Registry>,
}

impl fmt::Debug for LogHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogHandle").finish_non_exhaustive()
    }
}

impl LogHandle {
    /// Replaces the level filter; same syntax as [`validate_level`]. On error
    /// the old filter stays in place.
    pub fn set_level(&self, level: &str) -> Result<(), LogError> {
        let filter = build_filter(level)?;
        self.filter
            .reload(filter)
            .map_err(|e| LogError::Reload(e.to_string()))?;
        tracing::info!(level, "log level changed");
        Ok(())
    }
}

/// Checks a level before anything is started, so a typo in the config fails
/// `--check-config` instead of silently muting the daemon.
///
/// Accepts a plain level (`error`, `warn`, `info`, `debug`, `trace`, `off`)
/// or comma-separated `EnvFilter` directives such as `info,dchatd::net=debug`.
/// A bare word that is not a level is rejected even though `EnvFilter` would
/// read it as "everything from target <word>": `level = "verbose"` is far more
/// likely a mistake than a wish to see only the `verbose` module.
pub fn validate_level(level: &str) -> Result<(), LogError> {
    build_filter(level).map(drop)
}

/// Installs the global subscriber; call once, early in `main`, after the
/// config is loaded. Returns the handle that changes the level later.
pub fn init(format: LogFormat, level: &str) -> Result<LogHandle, LogError> {
    let filter = build_filter(level)?;

    // Something worth saying about the choice, logged once the subscriber
    // exists (there is nowhere to say it before).
    let mut fallback: Option<io::Error> = None;
    let (chosen, output): (LogFormat, Output) = match format {
        LogFormat::Auto if systemd::stderr_is_journal() => match journald_layer() {
            Ok(layer) => (LogFormat::Journald, layer),
            Err(error) => {
                fallback = Some(error);
                (LogFormat::Pretty, pretty_layer())
            }
        },
        LogFormat::Auto | LogFormat::Pretty => (LogFormat::Pretty, pretty_layer()),
        LogFormat::Journald => (
            LogFormat::Journald,
            journald_layer().map_err(LogError::JournaldUnavailable)?,
        ),
        LogFormat::Syslog => (LogFormat::Syslog, syslog_layer()?),
        LogFormat::Json => (LogFormat::Json, json_layer()),
    };

    // Install with everything enabled, then narrow to the configured filter.
    // `try_init` also bridges the `log` crate (used by some dependencies) and
    // freezes `log`'s own max level at whatever the filter allows right now;
    // starting at TRACE keeps a later `set_level("debug")` effective for
    // those crates too, while the real filter below still decides.
    let (filter_layer, handle) = reload::Layer::new(EnvFilter::new(LevelFilter::TRACE.to_string()));
    tracing_subscriber::registry()
        .with(filter_layer)
        .with(output)
        .try_init()
        .map_err(|e| LogError::AlreadyInitialized(e.to_string()))?;
    let handle = LogHandle { filter: handle };
    handle
        .filter
        .reload(filter)
        .map_err(|e| LogError::Reload(e.to_string()))?;

    if let Some(error) = fallback {
        tracing::warn!(%error, "stderr is the journal but journald's socket is unreachable; logging plain text to stderr");
    }
    tracing::info!(requested = %format, format = %chosen, level, "logging started");
    Ok(handle)
}

/// Parses `level` into a filter; see [`validate_level`] for the syntax.
fn build_filter(level: &str) -> Result<EnvFilter, LogError> {
    let invalid = |reason: String| LogError::InvalidLevel {
        level: level.to_owned(),
        reason,
    };
    // EnvFilter trims each directive but then slices by the untrimmed
    // offsets, so "info, dchatd=debug" misparses; normalise first.
    let directives: Vec<&str> = level.split(',').map(str::trim).filter(|d| !d.is_empty()).collect();
    if directives.is_empty() {
        return Err(invalid("empty; use one of error, warn, info, debug, trace, off".into()));
    }
    for directive in &directives {
        // EnvFilter reads "dchatd=" as "dchatd=trace"; a missing level is
        // far more likely an unfinished edit.
        if directive.ends_with('=') {
            return Err(invalid(format!("{directive:?} has no level after '='")));
        }
        let targets_something = directive.contains('=') || directive.contains('[');
        if !targets_something && directive.parse::<LevelFilter>().is_err() {
            return Err(invalid(format!(
                "{directive:?} is not a level (error, warn, info, debug, trace, off); \
                 per-module levels are written target=level, e.g. dchatd=debug"
            )));
        }
    }
    EnvFilter::builder()
        // Field-value regexes are a denial-of-service footgun and nobody
        // needs them to pick a log level.
        .with_regex(false)
        .parse(directives.join(","))
        .map_err(|e| invalid(e.to_string()))
}

/// journald's native protocol. Field names are passed through without the
/// crate's default `F_` prefix, so `peer_id` is `PEER_ID=` in the journal as
/// the operator guide promises. (Fields from spans are included too.)
fn journald_layer() -> io::Result<Output> {
    let layer = tracing_journald::layer()?
        .with_syslog_identifier(IDENTIFIER.to_owned())
        .with_field_prefix(None)
        // Matches the syslog output, so `journalctl SYSLOG_FACILITY=3` finds
        // dchatd's lines whichever way they arrived.
        .with_custom_fields([("SYSLOG_FACILITY", "3")]);
    Ok(Box::new(layer))
}

/// syslog(3) via syslog-tracing. Timestamps and colours are left to syslog;
/// the level stays in the text because many syslog files do not show the
/// priority.
fn syslog_layer() -> Result<Output, LogError> {
    let syslog = syslog_tracing::Syslog::new(
        c"dchatd",
        syslog_tracing::Options::LOG_PID,
        syslog_tracing::Facility::Daemon,
    )
    .ok_or(LogError::SyslogInUse)?;
    Ok(Box::new(
        tracing_subscriber::fmt::layer()
            .compact()
            .with_writer(syslog)
            .with_ansi(false)
            .without_time(),
    ))
}

fn json_layer() -> Output {
    Box::new(
        tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .with_writer(io::stderr),
    )
}

/// Compact lines on stderr. Colours only on a terminal, never into a file or
/// pipe; no timestamps when the journal (which stamps every line) is reading
/// stderr anyway.
fn pretty_layer() -> Output {
    let layer = tracing_subscriber::fmt::layer()
        .compact()
        .with_writer(io::stderr)
        .with_ansi(io::stderr().is_terminal());
    if systemd::stderr_is_journal() {
        Box::new(layer.without_time())
    } else {
        Box::new(layer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_levels_are_valid() {
        for level in ["error", "warn", "info", "debug", "trace", "off", "INFO", " debug "] {
            validate_level(level).unwrap_or_else(|e| panic!("{level:?}: {e}"));
        }
    }

    #[test]
    fn directives_are_valid() {
        for level in [
            "info,dchatd=debug",
            "warn, dchatd::net=trace , libp2p_gossipsub=off",
            "dchatd=debug",
            "info,[peer{peer_id=abc}]=trace",
        ] {
            validate_level(level).unwrap_or_else(|e| panic!("{level:?}: {e}"));
        }
    }

    #[test]
    fn typos_and_garbage_are_rejected() {
        for level in [
            "",
            " , ",
            "verbose",
            "infoo",
            "info,dbug",
            "dchatd=loud",
            "dchatd=",
            "?",
        ] {
            assert!(validate_level(level).is_err(), "{level:?} should be rejected");
        }
    }

    #[test]
    fn invalid_level_error_names_the_value() {
        let e = validate_level("verbose").unwrap_err();
        let text = e.to_string();
        assert!(text.contains("\"verbose\""), "{text}");
        assert!(text.contains("target=level"), "{text}");
    }

    #[test]
    fn format_round_trips_through_str() {
        for format in LogFormat::ALL {
            assert_eq!(format.to_string().parse::<LogFormat>().unwrap(), format);
        }
        assert_eq!("journald".parse::<LogFormat>().unwrap(), LogFormat::Journald);
    }

    #[test]
    fn unknown_format_is_rejected() {
        for bad in ["", "JSON", "text", "journal", "auto "] {
            assert!(
                matches!(bad.parse::<LogFormat>(), Err(LogError::UnknownFormat(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn format_serde_uses_lowercase_names() {
        for format in LogFormat::ALL {
            let json = serde_json::to_string(&format).unwrap();
            assert_eq!(json, format!("\"{}\"", format.as_str()));
            assert_eq!(serde_json::from_str::<LogFormat>(&json).unwrap(), format);
        }
        assert!(serde_json::from_str::<LogFormat>("\"Pretty\"").is_err());
    }
}
