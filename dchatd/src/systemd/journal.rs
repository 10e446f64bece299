//! Is stderr the journal?
//!
//! systemd sets `JOURNAL_STREAM=<device>:<inode>` when it connects a
//! service's stdout/stderr to journald. The variable alone is not enough: it
//! is inherited by children whose stderr may have been redirected elsewhere
//! (`dchatd 2>file` from a shell inside a unit), so, as `sd_journal_stream_fd(3)`
//! and systemd.exec(5) advise, we compare it with what fd 2 actually is.

/// True when fd 2 is the stream systemd connected to the journal, i.e. when
/// logging through journald's native protocol keeps the output in the same
/// place while adding structured fields.
pub fn stderr_is_journal() -> bool {
    let Some(expected) = std::env::var("JOURNAL_STREAM")
        .ok()
        .as_deref()
        .and_then(parse_journal_stream)
    else {
        return false;
    };
    match nix::sys::stat::fstat(std::io::stderr()) {
        Ok(stat) => (stat.st_dev, stat.st_ino) == expected,
        // No usable fd 2 (closed): certainly not the journal.
        Err(_) => false,
    }
}

/// Parses `"<device>:<inode>"` (both decimal, as systemd formats them).
fn parse_journal_stream(value: &str) -> Option<(u64, u64)> {
    let (dev, ino) = value.trim().split_once(':')?;
    Some((dev.parse().ok()?, ino.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_device_and_inode() {
        assert_eq!(parse_journal_stream("8:1234567"), Some((8, 1_234_567)));
        assert_eq!(parse_journal_stream("0:0"), Some((0, 0)));
    }

    #[test]
    fn rejects_malformed_journal_stream() {
        for bad in ["", ":", "8", "8:", ":12", "8:12:3", "a:b", "-1:5", "8:x"] {
            assert_eq!(parse_journal_stream(bad), None, "{bad:?}");
        }
    }

    /// The comparison itself, on a file whose identity we know.
    #[test]
    fn fstat_identity_matches_formatted_stream() {
        let file = tempfile::tempfile().unwrap();
        let stat = nix::sys::stat::fstat(&file).unwrap();
        let formatted = format!("{}:{}", stat.st_dev, stat.st_ino);
        assert_eq!(parse_journal_stream(&formatted), Some((stat.st_dev, stat.st_ino)));
    }
}
