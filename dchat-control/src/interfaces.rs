//! The Varlink interface definitions the daemon serves through
//! `org.varlink.service.GetInterfaceDescription`. They are the source of
//! truth for the wire API; the typed structs in [`crate::api`] follow them
//! and a test checks that every method named there is defined here.

pub const SERVICE: &str = include_str!("../interfaces/org.varlink.service.varlink");
pub const DAEMON: &str = include_str!("../interfaces/io.dchat.Daemon.varlink");
pub const ACCOUNTS: &str = include_str!("../interfaces/io.dchat.Accounts.varlink");
pub const CHAIN: &str = include_str!("../interfaces/io.dchat.Chain.varlink");
pub const CHANNELS: &str = include_str!("../interfaces/io.dchat.Channels.varlink");
pub const DATABASE: &str = include_str!("../interfaces/io.dchat.Database.varlink");
pub const NETWORK: &str = include_str!("../interfaces/io.dchat.Network.varlink");
pub const MESSAGES: &str = include_str!("../interfaces/io.dchat.Messages.varlink");

/// Every interface the daemon implements, by name.
pub const ALL: &[(&str, &str)] = &[
    ("org.varlink.service", SERVICE),
    ("io.dchat.Daemon", DAEMON),
    ("io.dchat.Accounts", ACCOUNTS),
    ("io.dchat.Chain", CHAIN),
    ("io.dchat.Channels", CHANNELS),
    ("io.dchat.Database", DATABASE),
    ("io.dchat.Network", NETWORK),
    ("io.dchat.Messages", MESSAGES),
];

/// The definition of `name`, if the daemon implements it.
pub fn description(name: &str) -> Option<&'static str> {
    ALL.iter().find(|(n, _)| *n == name).map(|(_, d)| *d)
}

/// Whether the definition of `interface` declares `member` as a method.
pub fn defines_method(interface: &str, member: &str) -> bool {
    description(interface).is_some_and(|d| {
        d.lines()
            .filter_map(|l| l.trim_start().strip_prefix("method "))
            .any(|rest| rest.split('(').next().map(str::trim) == Some(member))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_definition_names_itself() {
        for (name, text) in ALL {
            let declared = text.lines().find_map(|l| l.strip_prefix("interface ")).map(str::trim);
            assert_eq!(declared, Some(*name));
        }
    }

    #[test]
    fn every_api_method_is_defined() {
        for method in crate::api::methods() {
            let (iface, member) = method.method.rsplit_once('.').unwrap();
            assert!(defines_method(iface, member), "{} is not defined", method.method);
        }
    }
}
