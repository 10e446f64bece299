//! `dchatctl db backup|restore|migrate|check` against real `dchatd --dev`
//! processes: a backup taken under a stream of writes, restores of bad
//! files refused with the live database untouched, backups into places
//! that cannot take them, and an offline restore into a stopped node.
#![allow(clippy::unwrap_used)]

mod db_common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use db_common::{accounts_in_file, db_path, dev, fails, integrity, json, local_accounts, ok, Writer};
use dchat_testkit::{ctl, ctl_as, is_root, record_lock_held, skip_or_fail};

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Files in `dir`, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn kept_files(state: &Path) -> Vec<String> {
    listing(state)
        .into_iter()
        .filter(|n| n.contains(".pre-restore-"))
        .collect()
}

#[test]
fn backup_under_writes_holds_every_earlier_write_and_restores() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let d = dev(&state);
    let socket = d.socket_path();
    for i in 0..20 {
        ok(socket, &["account", "create", &format!("before{i}")]);
    }
    let writer = Writer::start(socket, "during");
    // Let the stream of writes get going before the backup begins.
    while writer.acked().len() < 5 {
        std::thread::sleep(Duration::from_millis(10));
    }
    let before_backup = writer.acked();
    let file = tmp.path().join("backup.db");
    let report = json(socket, &["db", "backup", file.to_str().unwrap()]);
    let during = writer.finish();
    assert!(
        during.len() > before_backup.len(),
        "writes went on during the backup: {} then {}",
        before_backup.len(),
        during.len()
    );
    // Commits held for a moment, the checkpointed file alone was the
    // snapshot, and it was copied as it is.
    let log = d.log();
    assert!(log.contains("the database file, checkpointed and held still"), "{log}");

    // The file on its own: private, whole, consistent, with every write
    // acknowledged before the backup began.
    assert_eq!(mode(&file), 0o600);
    assert_eq!(report["bytes"].as_u64(), Some(std::fs::metadata(&file).unwrap().len()));
    assert_eq!(report["sha256"].as_str().unwrap().len(), 64, "{report}");
    assert_eq!(integrity(&file), "ok");
    let in_file = accounts_in_file(&file);
    for name in (0..20)
        .map(|i| format!("before{i}"))
        .chain(before_backup.iter().cloned())
    {
        assert!(
            in_file.contains(&name),
            "{name} was acknowledged before the backup began"
        );
    }
    assert!(
        listing(tmp.path()).iter().all(|n| !n.contains(".tmp-")),
        "no temporary file left: {:?}",
        listing(tmp.path())
    );

    // Restored live, it is what the daemon serves.
    ok(socket, &["account", "create", "after"]);
    let restored = json(socket, &["db", "restore", file.to_str().unwrap()]);
    assert_eq!(restored["sha256"], report["sha256"], "{restored}");
    let previous = restored["previous"].as_str().unwrap();
    assert!(Path::new(previous).is_file(), "previous database kept at {previous}");
    assert_eq!(kept_files(&state).len(), 1);
    let accounts = local_accounts(socket);
    for name in &in_file {
        assert!(accounts.contains(name), "{name} restored");
    }
    assert!(
        !accounts.contains(&"after".to_string()),
        "a write after the backup is gone"
    );
    let check = json(socket, &["db", "check"]);
    assert_eq!(check["ok"], true, "{check}");
    assert_eq!(check["kept"].as_array().unwrap().len(), 1, "{check}");
    ok(socket, &["account", "create", "after-restore"]);

    // Refuses to overwrite without --force; replaces with it.
    let line = fails(socket, &["db", "backup", file.to_str().unwrap()]);
    assert!(line.contains("exists") && line.contains("--force"), "{line}");
    ok(socket, &["database", "backup", file.to_str().unwrap(), "--force"]);
    assert!(accounts_in_file(&file).contains(&"after-restore".to_string()));
}

#[test]
fn bad_restores_are_refused_and_the_live_database_keeps_serving() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let d = dev(&state);
    let socket = d.socket_path();
    ok(socket, &["account", "create", "alice"]);
    let good = tmp.path().join("good.db");
    ok(socket, &["db", "backup", good.to_str().unwrap()]);
    let bytes = std::fs::read(&good).unwrap();

    let truncated = tmp.path().join("truncated.db");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let cut_mid_page = tmp.path().join("cut.db");
    std::fs::write(&cut_mid_page, &bytes[..bytes.len() - 100]).unwrap();
    let not_sqlite = tmp.path().join("notes.txt");
    std::fs::write(&not_sqlite, "these are not the pages you are looking for\n".repeat(200)).unwrap();
    let newer = tmp.path().join("newer.db");
    std::fs::copy(&good, &newer).unwrap();
    {
        let conn = rusqlite::Connection::open(&newer).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
    }
    let other = tmp.path().join("other-network.db");
    {
        let o = dev(&tmp.path().join("other"));
        ok(o.socket_path(), &["account", "create", "mallory"]);
        ok(o.socket_path(), &["db", "backup", other.to_str().unwrap()]);
    }

    let cases: [(&Path, &str); 5] = [
        (&truncated, "truncated"),
        (&cut_mid_page, "truncated"),
        (&not_sqlite, "not a SQLite database"),
        (&newer, "schema version 99"),
        (&other, "belongs to network"),
    ];
    for (file, expected) in cases {
        let line = fails(socket, &["db", "restore", file.to_str().unwrap()]);
        assert!(line.contains(expected), "{}: {line}", file.display());
        assert!(line.contains("unchanged"), "{}: {line}", file.display());
        assert_eq!(local_accounts(socket), ["alice"], "after {}", file.display());
        assert!(kept_files(&state).is_empty(), "nothing was set aside");
    }
    assert!(
        listing(&state).iter().all(|n| !n.contains(".tmp-")),
        "no temporary file left: {:?}",
        listing(&state)
    );
    let check = json(socket, &["db", "check"]);
    assert_eq!(check["ok"], true, "{check}");
    ok(socket, &["account", "create", "bob"]);
    assert_eq!(local_accounts(socket), ["alice", "bob"]);

    // --force takes the other network's file; the refusal was the only
    // obstacle.
    let forced = json(socket, &["db", "restore", other.to_str().unwrap(), "--force"]);
    assert!(forced["previous"].is_string(), "{forced}");
    assert_eq!(local_accounts(socket), ["mallory"]);
}

#[test]
fn backup_over_the_live_database_is_refused_even_with_force() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let d = dev(&state);
    ok(d.socket_path(), &["account", "create", "alice"]);
    let live = db_path(&state);
    let line = fails(d.socket_path(), &["db", "backup", live.to_str().unwrap(), "--force"]);
    assert!(line.contains("is the node's live database"), "{line}");
    assert_eq!(integrity(&live), "ok");
    assert_eq!(local_accounts(d.socket_path()), ["alice"]);
    assert!(
        listing(&state).iter().all(|n| !n.contains(".tmp")),
        "{:?}",
        listing(&state)
    );
}

#[test]
fn backup_to_a_missing_directory_fails_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let d = dev(&tmp.path().join("state"));
    let target = tmp.path().join("no-such-dir").join("b.db");
    let line = fails(d.socket_path(), &["db", "backup", target.to_str().unwrap()]);
    assert!(line.contains("cannot write") && line.contains("No such file"), "{line}");
    assert!(!target.exists());
}

#[test]
fn backup_to_a_read_only_directory_fails_cleanly() {
    if !is_root() {
        skip_or_fail("needs root to run dchatctl as another user");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let d = dev(&tmp.path().join("state"));
    // nobody may enter the directory but not write in it. Root ignores
    // modes, so dchatctl runs as nobody; it fails before it would need the
    // socket (which nobody could not reach anyway).
    let dir = tmp.path().join("read-only");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o555)).unwrap();
    let target = dir.join("b.db");
    let out = ctl_as(
        65534,
        65534,
        d.socket_path(),
        &["db", "backup", target.to_str().unwrap()],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot write") && stderr.contains("Permission denied"),
        "{stderr}"
    );
    assert!(listing(&dir).is_empty(), "{:?}", listing(&dir));
}

#[test]
fn backup_to_a_full_disk_fails_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let d = dev(&tmp.path().join("state"));
    let socket = d.socket_path();
    for i in 0..50 {
        ok(socket, &["account", "create", &format!("user{i}")]);
    }
    // A filesystem smaller than the database: the backup must hit ENOSPC.
    let small = tmp.path().join("small");
    std::fs::create_dir(&small).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=24k,mode=0755", "tmpfs"])
        .arg(&small)
        .output();
    match mounted {
        Ok(out) if out.status.success() => {}
        Ok(out) => {
            skip_or_fail(&format!(
                "cannot mount a small tmpfs: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
            return;
        }
        Err(e) => {
            skip_or_fail(&format!("cannot run mount: {e}"));
            return;
        }
    }
    struct Unmount<'a>(&'a Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(self.0).status();
        }
    }
    let _unmount = Unmount(&small);

    let target = small.join("b.db");
    let line = fails(socket, &["db", "backup", target.to_str().unwrap()]);
    assert!(line.contains("No space left"), "{line}");
    assert!(listing(&small).is_empty(), "nothing left behind: {:?}", listing(&small));
    // The daemon is fine and a backup elsewhere works.
    let elsewhere = tmp.path().join("b.db");
    ok(socket, &["db", "backup", elsewhere.to_str().unwrap()]);
    assert_eq!(integrity(&elsewhere), "ok");
}

#[test]
fn offline_restore_into_a_stopped_node() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let file = tmp.path().join("b.db");
    let mut d = dev(&state);
    let socket = d.socket_path().to_path_buf();
    ok(&socket, &["account", "create", "alice"]);
    ok(&socket, &["db", "backup", file.to_str().unwrap()]);
    ok(&socket, &["account", "create", "bob"]);

    // Refused while the daemon runs: the state lock says so.
    let args = [
        "db",
        "restore",
        file.to_str().unwrap(),
        "--offline",
        "--dev",
        "--state-dir",
        state.to_str().unwrap(),
    ];
    let out = ctl(&socket, &args);
    assert_eq!(out.status.code(), Some(1), "{}", db_common::describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("is running"), "{stderr}");
    assert!(kept_files(&state).is_empty());

    assert!(d.stop().success());
    let mut with_json = args.to_vec();
    with_json.push("--json");
    let out = ctl(&socket, &with_json);
    assert!(out.status.success(), "{}", db_common::describe(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        report["previous"].as_str().unwrap().contains(".pre-restore-"),
        "{report}"
    );
    assert_eq!(integrity(&db_path(&state)), "ok");
    assert_eq!(accounts_in_file(&db_path(&state)), ["alice"]);

    let d = dev(&state);
    assert_eq!(local_accounts(d.socket_path()), ["alice"], "data present after start");
    let check = json(d.socket_path(), &["db", "check"]);
    assert_eq!(check["ok"], true, "{check}");
}

#[test]
fn migrate_lists_applied_steps_and_check_reports_sizes() {
    let tmp = tempfile::tempdir().unwrap();
    let d = dev(&tmp.path().join("state"));
    let socket = d.socket_path();
    let m = json(socket, &["database", "migrate"]);
    assert_eq!(m["schema_version"], m["supported"], "{m}");
    assert!(!m["applied"].as_array().unwrap().is_empty(), "{m}");
    assert_eq!(m["pending"], serde_json::json!([]), "{m}");
    assert_eq!(m["migrated"], serde_json::json!([]), "{m}");
    let human = ok(socket, &["db", "migrate"]);
    assert!(human.contains("no pending migrations"), "{human}");
    assert!(
        human.contains("meta and accounts") && human.contains("applied"),
        "{human}"
    );

    ok(socket, &["account", "create", "alice"]);
    let c = json(socket, &["db", "check"]);
    assert_eq!(c["ok"], true, "{c}");
    assert_eq!(c["integrity"], serde_json::json!(["ok"]), "{c}");
    assert!(c["page_size"].as_u64().unwrap() >= 512, "{c}");
    assert!(c["page_count"].as_u64().unwrap() > 0, "{c}");
    assert!(
        c["file_bytes"].as_u64().is_some() && c["wal_bytes"].as_u64().is_some(),
        "{c}"
    );
    let accounts = c["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "accounts")
        .unwrap_or_else(|| panic!("{c}"));
    assert_eq!(accounts["rows"], 1, "{c}");
    let human = ok(socket, &["db", "check"]);
    assert!(
        human.contains("integrity:") && human.contains("write-ahead log:"),
        "{human}"
    );
}

/// Raw Varlink, as any client could send it: the bulk protocol is checked
/// by the daemon, not trusted.
#[test]
fn backup_and_restore_calls_are_checked_on_the_wire() {
    use dchat_testkit::{call, RawConn, Recv};
    let tmp = tempfile::tempdir().unwrap();
    let d = dev(&tmp.path().join("state"));
    let socket = d.socket_path();
    ok(socket, &["account", "create", "alice"]);

    let plain = call(socket, "io.dchat.Database.Backup", serde_json::json!({}));
    assert_eq!(plain["error"], "io.dchat.Database.ExpectedUpgrade", "{plain}");
    let other = RawConn::connect(socket)
        .unwrap()
        .call(r#"{"method":"io.dchat.Database.Check","upgrade":true}"#);
    assert!(other.contains("InvalidParameter"), "{other}");

    let restore_with = |bytes: u64, data: &[u8], sha: &str| -> String {
        let mut conn = RawConn::connect(socket).unwrap();
        let reply = conn.call(&format!(
            r#"{{"method":"io.dchat.Database.Restore","parameters":{{"bytes":{bytes}}},"upgrade":true}}"#
        ));
        assert_eq!(reply, r#"{"parameters":{}}"#);
        let mut frame = format!(r#"{{"parameters":{{"data":{}}},"continues":true}}"#, data.len()).into_bytes();
        frame.push(0);
        frame.extend_from_slice(data);
        // The daemon may hang up as soon as it has seen enough.
        let _ = conn.send(&frame);
        let _ = conn.send_frame(&format!(r#"{{"parameters":{{"sha256":"{sha}"}}}}"#));
        let mut last = String::new();
        loop {
            match conn.recv(Duration::from_secs(10)) {
                Recv::Frame(f) => last = f,
                Recv::Closed => return last,
                Recv::TimedOut => panic!("no end to the restore; last: {last}"),
            }
        }
    };
    let too_much = restore_with(10, &[0u8; 20], "00");
    assert!(
        too_much.contains("InvalidBackup") && too_much.contains("more than"),
        "{too_much}"
    );
    let corrupted = restore_with(4096, &[7u8; 4096], "00");
    assert!(
        corrupted.contains("InvalidBackup") && corrupted.contains("in transit"),
        "{corrupted}"
    );
    let sha_of_zeros = "ad7facb2586fc6e966c004d7d1d16b024f5805ff7cb47c7a85dabd8b48892ca7";
    let garbage = restore_with(4096, &[0u8; 4096], sha_of_zeros);
    assert!(garbage.contains("not a SQLite database"), "{garbage}");

    assert_eq!(local_accounts(socket), ["alice"]);
    assert!(kept_files(&tmp.path().join("state")).is_empty());
    assert_eq!(json(socket, &["db", "check"])["ok"], true);
}

/// Reads bulk messages until the backup summary; collects streamed data
/// and the phases of the progress messages on the way. An error reply ends
/// it early: `Err(frame)`.
fn backup_messages(conn: &mut dchat_testkit::RawConn) -> Result<(serde_json::Value, Vec<u8>, Vec<String>), String> {
    use dchat_testkit::Recv;
    let wait = Duration::from_secs(30);
    let (mut data, mut phases) = (Vec::new(), Vec::new());
    loop {
        let frame = match conn.recv(wait) {
            Recv::Frame(f) => f,
            other => panic!("the backup ended without a summary: {other:?}"),
        };
        let v: serde_json::Value = serde_json::from_str(&frame).unwrap();
        if v.get("error").is_some() {
            return Err(frame);
        }
        let p = &v["parameters"];
        if let Some(n) = p["data"].as_u64() {
            data.extend(conn.recv_exact(usize::try_from(n).unwrap(), wait).unwrap());
        } else if let Some(phase) = p["progress"]["phase"].as_str() {
            if phases.last().map(String::as_str) != Some(phase) {
                phases.push(phase.to_string());
            }
        } else if p["backup"].is_object() {
            return Ok((p["backup"].clone(), data, phases));
        }
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(bytes))
}

#[test]
fn backup_streams_its_bytes_or_writes_into_a_handed_over_descriptor() {
    use dchat_testkit::RawConn;
    use std::os::fd::AsRawFd;
    let tmp = tempfile::tempdir().unwrap();
    let d = dev(&tmp.path().join("state"));
    let socket = d.socket_path();
    for i in 0..20 {
        ok(socket, &["account", "create", &format!("user{i}")]);
    }
    let start_call = |params: &str| {
        let mut conn = RawConn::connect(socket).unwrap();
        let reply = conn.call(&format!(
            r#"{{"method":"io.dchat.Database.Backup","parameters":{params},"upgrade":true}}"#
        ));
        let start: serde_json::Value = serde_json::from_str(&reply).unwrap();
        assert!(start["parameters"]["bytes"].as_u64().unwrap() > 0, "{reply}");
        conn
    };

    // Any Varlink client, without a descriptor: data messages, then the summary.
    let mut conn = start_call("{}");
    let (summary, data, phases) = backup_messages(&mut conn).unwrap();
    assert_eq!(summary["bytes"].as_u64(), Some(data.len() as u64));
    assert_eq!(summary["sha256"].as_str(), Some(sha256_hex(&data).as_str()));
    assert!(phases.iter().all(|p| p == "snapshot"), "{phases:?}");
    let streamed = tmp.path().join("streamed.db");
    std::fs::write(&streamed, &data).unwrap();
    assert_eq!(integrity(&streamed), "ok");
    assert_eq!(accounts_in_file(&streamed).len(), 20);

    // With a descriptor: the daemon writes the client's file itself, over
    // whatever the file held, and sends no data.
    let written = tmp.path().join("written.db");
    std::fs::write(&written, vec![0x55u8; data.len() * 3]).unwrap();
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&written)
        .unwrap();
    let mut conn = start_call(r#"{"file_descriptor":true}"#);
    conn.send_with_fds(b"F", &[file.as_raw_fd()]).unwrap();
    drop(file);
    let (summary, data, phases) = backup_messages(&mut conn).unwrap();
    assert!(data.is_empty(), "no data messages with a descriptor");
    assert!(phases.iter().all(|p| p == "write"), "{phases:?}");
    let bytes = std::fs::read(&written).unwrap();
    assert_eq!(summary["bytes"].as_u64(), Some(bytes.len() as u64));
    assert_eq!(summary["sha256"].as_str(), Some(sha256_hex(&bytes).as_str()));
    assert_eq!(integrity(&written), "ok");
    assert_eq!(accounts_in_file(&written).len(), 20);

    // Descriptors the daemon must refuse, each with a clear error.
    let read_only = std::fs::File::open(&written).unwrap();
    let (pipe_read, _pipe_write) = nix::unistd::pipe().unwrap();
    let cases: [(&[std::os::fd::RawFd], &str); 4] = [
        (&[read_only.as_raw_fd()], "not open for reading and writing"),
        (&[pipe_read.as_raw_fd()], "a pipe"),
        (&[], "expected a file descriptor"),
        (&[read_only.as_raw_fd(), pipe_read.as_raw_fd()], "2 descriptors"),
    ];
    for (fds, expected) in cases {
        let mut conn = start_call(r#"{"file_descriptor":true}"#);
        conn.send_with_fds(b"F", fds).unwrap();
        let refused = backup_messages(&mut conn).unwrap_err();
        assert!(
            refused.contains("io.dchat.Database.BackupFailed") && refused.contains(expected),
            "{expected}: {refused}"
        );
    }
    // The live database's own files: refused, and kept open by the daemon,
    // since closing a descriptor on them would drop its SQLite locks
    // (another process could then take the database from under it).
    let live = db_path(&tmp.path().join("state"));
    for suffix in ["", "-shm"] {
        let name = format!("{}{suffix}", live.display());
        let handed = std::fs::OpenOptions::new().read(true).write(true).open(&name).unwrap();
        assert!(record_lock_held(&handed), "{name}: SQLite's lock");
        let mut conn = start_call(r#"{"file_descriptor":true}"#);
        conn.send_with_fds(b"F", &[handed.as_raw_fd()]).unwrap();
        let refused = backup_messages(&mut conn).unwrap_err();
        assert!(refused.contains("the live database's own file"), "{refused}");
        assert!(record_lock_held(&handed), "{name}: the daemon dropped its locks");
        // Among descriptors refused for their number, too.
        let mut conn = start_call(r#"{"file_descriptor":true}"#);
        conn.send_with_fds(b"F", &[pipe_read.as_raw_fd(), handed.as_raw_fd()])
            .unwrap();
        let refused = backup_messages(&mut conn).unwrap_err();
        assert!(refused.contains("2 descriptors"), "{refused}");
        assert!(record_lock_held(&handed), "{name}: the daemon dropped its locks");
    }
    assert_eq!(integrity(&live), "ok");
    assert_eq!(
        sha256_hex(&std::fs::read(&written).unwrap()),
        summary["sha256"].as_str().unwrap()
    );
    // The refusals touched neither that file nor the live database.
    assert_eq!(json(socket, &["db", "check"])["ok"], true);
    ok(socket, &["account", "create", "after"]);
}
