//! One daemon per state directory: an exclusive `flock` on
//! `<state_dir>/dchatd.lock`, held for the daemon's life. The kernel drops
//! it when the process dies, so a crash never leaves a stale lock.

use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use nix::fcntl::{Flock, FlockArg};

use crate::error::DaemonError;

pub struct StateLock {
    _file: Flock<std::fs::File>,
}

pub fn acquire(state_dir: &Path) -> Result<StateLock, DaemonError> {
    let path = state_dir.join("dchatd.lock");
    let err = |source| DaemonError::StateDir {
        path: path.clone(),
        source,
    };
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(err)?;
    let mut file = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(locked) => locked,
        Err((mut file, _)) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            return Err(DaemonError::StateDirInUse {
                path: state_dir.to_path_buf(),
                holder: if holder.is_empty() {
                    "unknown".into()
                } else {
                    holder.to_string()
                },
            });
        }
    };
    // Record who holds it, for the message another daemon would print.
    let pid = std::process::id().to_string();
    let written = file
        .set_len(0)
        .and_then(|()| file.seek(SeekFrom::Start(0)))
        .and_then(|_| file.write_all(pid.as_bytes()));
    if let Err(e) = written {
        tracing::debug!(error = %e, "cannot record our pid in the state lock");
    }
    Ok(StateLock { _file: file })
}
