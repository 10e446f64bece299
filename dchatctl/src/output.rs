//! Human output (aligned tables and sentences) and `--json`.
//!
//! Everything bound for stdout goes through [`write`] (or the [`outln!`]
//! macro) instead of `println!`, which panics when stdout is a closed pipe
//! (`dchatctl account list --json | head -c1`). A closed stdout becomes
//! [`CtlError::StdoutClosed`], which `main` turns into a quiet exit 0: the
//! reader has all it wanted.

use std::fmt;
use std::io::Write;

use serde::Serialize;

use crate::error::CtlError;

/// `println!` that returns [`CtlError::StdoutClosed`] instead of panicking.
#[macro_export]
macro_rules! outln {
    () => {
        $crate::output::write(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::output::write(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// Writes to stdout. Rust's stdout flushes at each newline, so a reader
/// that went away is noticed at the line it missed.
pub fn write(args: fmt::Arguments<'_>) -> Result<(), CtlError> {
    std::io::stdout().lock().write_fmt(args).map_err(stdout_error)
}

/// Writes raw bytes to stdout (completion scripts) and flushes them.
pub fn write_bytes(bytes: &[u8]) -> Result<(), CtlError> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes).and_then(|()| out.flush()).map_err(stdout_error)
}

fn stdout_error(e: std::io::Error) -> CtlError {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        CtlError::StdoutClosed
    } else {
        CtlError::Failed(format!("cannot write to stdout: {e}"))
    }
}

/// Prints `value` as one JSON document.
pub fn json<T: Serialize + ?Sized>(value: &T) -> Result<(), CtlError> {
    let text =
        serde_json::to_string_pretty(value).map_err(|e| CtlError::Failed(format!("cannot encode output: {e}")))?;
    outln!("{text}")
}

/// Prints rows under a header, columns padded to their widest cell.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> Result<(), CtlError> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<width$}", width = widths.get(i).copied().unwrap_or(0)))
            .collect();
        outln!("{}", padded.join("  ").trim_end())
    };
    line(header.iter().map(|h| h.to_string()).collect())?;
    for row in rows {
        line(row.clone())?;
    }
    Ok(())
}

/// Prints `label: value` pairs with the values aligned.
pub fn fields(pairs: &[(&str, String)]) -> Result<(), CtlError> {
    let width = pairs.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (k, v) in pairs {
        outln!("{:<width$}  {v}", format!("{k}:"), width = width + 1)?;
    }
    Ok(())
}

/// Text from other people, made safe for one line of a terminal: control
/// characters (newlines, escape sequences) and the invisible marks that
/// reorder text (bidi overrides) are shown escaped, never acted on.
pub fn sanitize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        let bidi = matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
        if c.is_control() || bidi {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// An RFC 3339 time as `YYYY-MM-DD HH:MM:SS`, UTC marks dropped and other
/// offsets kept; anything else unchanged.
pub fn short_time(rfc3339: &str) -> String {
    let (Some(date), Some(time)) = (rfc3339.get(..10), rfc3339.get(11..19)) else {
        return sanitize(rfc3339);
    };
    if !matches!(rfc3339.as_bytes().get(10), Some(b'T' | b't' | b' ')) {
        return sanitize(rfc3339);
    }
    let rest = rfc3339.get(19..).unwrap_or("");
    // Fractional seconds, then the offset.
    let offset = rest.trim_start_matches(|c: char| c == '.' || c.is_ascii_digit());
    match offset {
        "" | "Z" | "z" | "+00:00" => format!("{date} {time}"),
        other => format!("{date} {time}{}", sanitize(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_short() {
        assert_eq!(short_time("2026-11-22T06:40:01Z"), "2026-11-22 06:40:01");
        assert_eq!(short_time("2026-11-22T06:40:01.123456Z"), "2026-11-22 06:40:01");
        assert_eq!(short_time("2026-11-22T06:40:01+00:00"), "2026-11-22 06:40:01");
        assert_eq!(short_time("2026-11-22T07:40:01+01:00"), "2026-11-22 07:40:01+01:00");
        assert_eq!(short_time("yesterday"), "yesterday");
        assert_eq!(
            short_time("2026-11-22T06:4é"),
            "2026-11-22T06:4é",
            "no panic off a char boundary"
        );
    }

    #[test]
    fn remote_text_cannot_drive_the_terminal() {
        assert_eq!(sanitize("hi\nthere"), "hi\\nthere");
        assert_eq!(sanitize("\u{1b}[2Jgone"), "\\u{1b}[2Jgone");
        assert_eq!(sanitize("abc\u{202e}fed"), "abc\\u{202e}fed");
        assert_eq!(sanitize("héllo → 👋"), "héllo → 👋");
    }
}
