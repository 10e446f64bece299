//! `dchat-testkit-call [--uid UID --gid GID] SOCKET JSON`: one raw Varlink
//! call, optionally as another user, for tests of the daemon's
//! SO_PEERCRED checks.
//!
//! Started as root, it sheds its supplementary groups and takes `GID` and
//! `UID` before connecting, so the daemon sees exactly that user. Exit
//! status: 0 with the reply frame on stdout; 1 closed without a reply; 2
//! usage; 69 cannot connect (why on stderr); 75 no reply within 5 s.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test support

use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::process::ExitCode;
use std::time::Duration;

use nix::unistd::{setgid, setgroups, setuid, Gid, Uid};

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut take = |flag: &str| -> Option<u32> {
        let i = args.iter().position(|a| a == flag)?;
        let value = args.get(i + 1)?.parse().ok();
        args.drain(i..=i + 1);
        value
    };
    let (uid, gid) = (take("--uid"), take("--gid"));
    let [socket, json] = args.as_slice() else {
        eprintln!("usage: dchat-testkit-call [--uid UID --gid GID] SOCKET JSON");
        return ExitCode::from(2);
    };
    // Order matters: groups and gid while we are still root, uid last.
    if let Some(gid) = gid {
        setgroups(&[]).expect("setgroups([])");
        setgid(Gid::from_raw(gid)).expect("setgid");
    }
    if let Some(uid) = uid {
        setuid(Uid::from_raw(uid)).expect("setuid");
    }

    let mut stream = match UnixStream::connect(socket) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("cannot connect to {socket}: {e}");
            return ExitCode::from(69);
        }
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("SO_RCVTIMEO");
    let mut frame = json.as_bytes().to_vec();
    frame.push(0);
    if let Err(e) = stream.write_all(&frame) {
        eprintln!("cannot send: {e}");
        return ExitCode::from(1);
    }
    let mut reply = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => {
                eprintln!("connection closed without a reply");
                return ExitCode::from(1);
            }
            Ok(n) => {
                reply.extend_from_slice(&chunk[..n]);
                if let Some(end) = reply.iter().position(|b| *b == 0) {
                    println!("{}", String::from_utf8_lossy(&reply[..end]));
                    return ExitCode::SUCCESS;
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                eprintln!("no reply within 5 s");
                return ExitCode::from(75);
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => {
                eprintln!("connection broke: {e}");
                return ExitCode::from(1);
            }
        }
    }
}
