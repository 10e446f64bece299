//! Counts read from the nodes' databases (read-only, WAL), which a stream
//! that lags cannot skip.

use super::*;

pub(super) fn open_ro(db: &Path) -> Connection {
    let conn = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .expect("open a node's database read-only");
    conn.busy_timeout(Duration::from_secs(5)).expect("busy timeout");
    conn
}

/// States of `account`'s outgoing messages tagged `tag`, from its database.
pub(super) fn db_states(db: &Path, account: &str, tag: &str) -> HashMap<String, usize> {
    let conn = open_ro(db);
    let mut stmt = conn
        .prepare(
            "SELECT state, COUNT(*) FROM messages WHERE account = ?1 AND direction = 'out' \
             AND substr(text, 1, length(?2) + 1) = ?2 || ' ' GROUP BY state",
        )
        .expect("prepare");
    stmt.query_map(rusqlite::params![account, tag], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
    })
    .expect("query states")
    .filter_map(Result::ok)
    .map(|(s, c)| (s, usize::try_from(c).unwrap_or(0)))
    .collect()
}

/// Incoming messages of `account` tagged `tag`: count and the latest
/// `received_at` (ms since the epoch, the node's clock).
pub(super) fn db_count_in(db: &Path, account: &str, tag: &str) -> (usize, Option<i64>) {
    let conn = open_ro(db);
    conn.query_row(
        "SELECT COUNT(*), MAX(received_at) FROM messages WHERE account = ?1 AND direction = 'in' \
         AND substr(text, 1, length(?2) + 1) = ?2 || ' '",
        rusqlite::params![account, tag],
        |r| Ok((usize::try_from(r.get::<_, i64>(0)?).unwrap_or(0), r.get(1)?)),
    )
    .expect("count incoming")
}

/// Polls until `want` of the messages are in `state` or nothing changes for
/// `stall`; the count reached.
pub(super) async fn wait_states(
    db: &Path,
    account: &str,
    tag: &str,
    state: &str,
    want: usize,
    stall: Duration,
) -> usize {
    let mut have = 0;
    let mut progress = Instant::now();
    loop {
        let now = db_states(db, account, tag).get(state).copied().unwrap_or(0);
        if now > have {
            have = now;
            progress = Instant::now();
        }
        if have >= want || progress.elapsed() >= stall {
            return have;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
