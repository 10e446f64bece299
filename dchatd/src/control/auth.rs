//! Who may use the control socket, decided per connection from the peer's
//! kernel-reported credentials (SO_PEERCRED). The file mode is only a first
//! fence: this check holds even if someone opens the mode up.

use nix::unistd::{getgrouplist, Gid, Uid, User};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Root, the daemon's own user, or a member of the control group.
    Full,
    /// Anyone else, when `public_read` is on: read-only methods only.
    ReadOnly,
    Denied,
}

#[derive(Debug, Clone, Copy)]
pub struct Policy {
    pub daemon_uid: Uid,
    pub group: Option<Gid>,
    pub public_read: bool,
}

/// The peer as the kernel saw it at connect time.
#[derive(Debug, Clone, Copy)]
pub struct Peer {
    pub uid: Uid,
    pub gid: Gid,
    pub pid: Option<i32>,
}

impl Policy {
    pub fn decide(&self, peer: &Peer) -> Access {
        if peer.uid.is_root() || peer.uid == self.daemon_uid || self.in_group(peer) {
            Access::Full
        } else if self.public_read {
            Access::ReadOnly
        } else {
            Access::Denied
        }
    }

    fn in_group(&self, peer: &Peer) -> bool {
        let Some(group) = self.group else { return false };
        if peer.gid == group {
            return true;
        }
        // Supplementary groups come from the user database, as login does.
        match User::from_uid(peer.uid) {
            Ok(Some(user)) => match std::ffi::CString::new(user.name) {
                Ok(name) => getgrouplist(&name, peer.gid)
                    .map(|g| g.contains(&group))
                    .unwrap_or(false),
                Err(_) => false,
            },
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(uid: u32, gid: u32) -> Peer {
        Peer {
            uid: Uid::from_raw(uid),
            gid: Gid::from_raw(gid),
            pid: None,
        }
    }

    #[test]
    fn root_and_self_are_allowed_others_denied() {
        let p = Policy {
            daemon_uid: Uid::from_raw(1234),
            group: None,
            public_read: false,
        };
        assert_eq!(p.decide(&peer(0, 0)), Access::Full);
        assert_eq!(p.decide(&peer(1234, 99)), Access::Full);
        assert_eq!(p.decide(&peer(65534, 65534)), Access::Denied);
    }

    #[test]
    fn group_by_primary_gid_and_public_read() {
        let p = Policy {
            daemon_uid: Uid::from_raw(1234),
            group: Some(Gid::from_raw(4242)),
            public_read: true,
        };
        assert_eq!(p.decide(&peer(5000, 4242)), Access::Full);
        assert_eq!(p.decide(&peer(65534, 65534)), Access::ReadOnly);
    }
}
