//! Getting the control socket: adopted from systemd when it passes one,
//! otherwise bound here with the configured mode and group.

use std::io::ErrorKind;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::UnixStream as StdUnixStream;
use std::path::{Path, PathBuf};

use interprocess::local_socket::traits::tokio::Listener as _;
use interprocess::local_socket::{GenericFilePath, ListenerOptions, ToFsName};
use interprocess::os::unix::local_socket::ListenerOptionsExt;
use interprocess::os::unix::uds_local_socket::tokio::Listener;
use nix::unistd::{Gid, Group};

use crate::config::ControlConfig;
use crate::error::DaemonError;
use crate::systemd;

/// The name dchatd.socket gives the control socket (FileDescriptorName=).
pub const FD_NAME: &str = "control";

pub struct BoundSocket {
    pub listener: Listener,
    pub path: PathBuf,
    /// Whether systemd passed the socket (then systemd owns the file).
    pub activated: bool,
    pub group: Option<Gid>,
}

/// Resolves the control group; an unknown group is a configuration error.
pub fn resolve_group(config: &ControlConfig) -> Result<Option<Gid>, DaemonError> {
    let Some(name) = &config.group else { return Ok(None) };
    match Group::from_name(name) {
        Ok(Some(group)) => Ok(Some(group.gid)),
        Ok(None) => Err(DaemonError::GroupNotFound(name.clone())),
        Err(e) => Err(DaemonError::Socket {
            path: config.socket.clone(),
            message: format!("looking up group {name:?}: {e}"),
        }),
    }
}

pub fn bind(config: &ControlConfig) -> Result<BoundSocket, DaemonError> {
    let group = resolve_group(config)?;
    let sock_err = |message: String| DaemonError::Socket {
        path: config.socket.clone(),
        message,
    };
    if let Some(std_listener) = systemd::take_listener(FD_NAME).map_err(|e| sock_err(e.to_string()))? {
        let path = std_listener
            .local_addr()
            .ok()
            .and_then(|a| a.as_pathname().map(Path::to_path_buf))
            .unwrap_or_else(|| config.socket.clone());
        std_listener
            .set_nonblocking(true)
            .map_err(|e| sock_err(e.to_string()))?;
        let mut listener =
            Listener::try_from(std::os::fd::OwnedFd::from(std_listener)).map_err(|e| sock_err(e.to_string()))?;
        // systemd created the file and removes it; we must not.
        listener.do_not_reclaim_name_on_drop();
        tracing::info!(socket = %path.display(), "using the control socket passed by systemd");
        return Ok(BoundSocket {
            listener,
            path,
            activated: true,
            group,
        });
    }

    let path = config.socket.clone();
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| sock_err(format!("creating {}: {e}", parent.display())))?;
    }
    clear_stale(&path)?;
    let name = path
        .as_path()
        .to_fs_name::<GenericFilePath>()
        .map_err(|e| sock_err(e.to_string()))?;
    let listener = ListenerOptions::new()
        .name(name)
        .mode(config.mode)
        .reclaim_name(true)
        .create_tokio()
        .map_err(|e| sock_err(format!("cannot listen: {e}")))?;
    let interprocess::local_socket::tokio::Listener::UdSocket(listener) = listener;
    if let Some(gid) = group {
        nix::unistd::chown(&path, None, Some(gid))
            .map_err(|e| sock_err(format!("cannot give the socket to group {gid}: {e}")))?;
    }
    // fchmod before bind already set the mode; make sure no umask narrowed it.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(config.mode))
        .map_err(|e| sock_err(e.to_string()))?;
    tracing::info!(socket = %path.display(), mode = format!("{:o}", config.mode), "control socket bound");
    Ok(BoundSocket {
        listener,
        path,
        activated: false,
        group,
    })
}

/// A socket file left by a daemon that died is replaced; one that still
/// answers belongs to a running daemon and is left alone; anything that is
/// not a socket is never deleted.
fn clear_stale(path: &Path) -> Result<(), DaemonError> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(DaemonError::Socket {
                path: path.to_path_buf(),
                message: e.to_string(),
            })
        }
    };
    if !meta.file_type().is_socket() {
        return Err(DaemonError::Socket {
            path: path.to_path_buf(),
            message: "exists and is not a socket; refusing to replace it".into(),
        });
    }
    match StdUnixStream::connect(path) {
        Ok(_) => Err(DaemonError::SocketInUse(path.to_path_buf())),
        Err(e) if e.kind() == ErrorKind::ConnectionRefused || e.kind() == ErrorKind::NotFound => {
            tracing::info!(socket = %path.display(), "removing a stale control socket");
            std::fs::remove_file(path)
                .or_else(|e| {
                    if e.kind() == ErrorKind::NotFound {
                        Ok(())
                    } else {
                        Err(e)
                    }
                })
                .map_err(|e| DaemonError::Socket {
                    path: path.to_path_buf(),
                    message: format!("cannot remove stale socket: {e}"),
                })
        }
        Err(e) => Err(DaemonError::Socket {
            path: path.to_path_buf(),
            message: format!("cannot probe existing socket: {e}"),
        }),
    }
}
