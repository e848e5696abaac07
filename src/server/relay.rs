//! The relay policy: who may send mail to which domains (decided at RCPT).
//!
//! What it does: mail to a `local_domains` or `relay_domains` entry is accepted from anyone;
//! a client in `trusted_networks` may send to any domain; `<postmaster>` is always accepted
//! (RFC 5321 4.5.1). Everyone else naming another domain is refused (`554 5.7.1`).
//!
//! What it does not do: no authentication (a later layer marks a session as authenticated,
//! which this policy treats like a trusted network), no DNS, no per-user rules.
//!
//! Invariants: domains are compared lower-cased; `*.example.com` matches every name strictly
//! below `example.com` but not `example.com` itself; a plain entry matches exactly.

use std::collections::HashSet;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::config::RelaySection;
use crate::smtp::{Domain, ForwardPath};

/// A set of domain names and `*.suffix` patterns.
#[derive(Clone, Debug, Default)]
pub struct DomainSet {
    exact: HashSet<String>,
    /// Suffixes with their leading dot, e.g. `.example.com`.
    suffixes: Vec<String>,
}

impl DomainSet {
    /// Builds the set from configuration entries (already validated).
    pub fn new<S: AsRef<str>>(entries: &[S]) -> Self {
        let mut set = DomainSet::default();
        for e in entries {
            let e = e.as_ref().to_ascii_lowercase();
            match e.strip_prefix('*') {
                Some(suffix) => set.suffixes.push(suffix.to_owned()),
                None => {
                    set.exact.insert(e);
                }
            }
        }
        set
    }

    /// True if `domain` (any case) is in the set.
    pub fn contains(&self, domain: &str) -> bool {
        let d = domain.trim_end_matches('.').to_ascii_lowercase();
        self.exact.contains(&d)
            || self
                .suffixes
                .iter()
                .any(|s| d.len() > s.len() && d.ends_with(s.as_str()))
    }

    /// True if the set has no entries.
    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.suffixes.is_empty()
    }
}

/// True if `ip` (an IPv4-mapped IPv6 address counting as its IPv4 address) is in one of
/// `networks`.
pub fn in_networks(networks: &[IpNet], ip: IpAddr) -> bool {
    let ip = ip.to_canonical();
    networks.iter().any(|n| n.contains(&ip))
}

/// The relay policy of one listener.
#[derive(Clone, Debug, Default)]
pub struct RelayPolicy {
    local: DomainSet,
    relay: DomainSet,
    trusted: Vec<IpNet>,
}

impl RelayPolicy {
    /// Builds the policy from the `[relay]` section.
    pub fn new(section: &RelaySection) -> Self {
        RelayPolicy {
            local: DomainSet::new(&section.local_domains),
            relay: DomainSet::new(&section.relay_domains),
            trusted: section.trusted_networks.clone(),
        }
    }

    /// True if `client` is in a trusted network.
    pub fn is_trusted(&self, client: IpAddr) -> bool {
        in_networks(&self.trusted, client)
    }

    /// True if a client (trusted or not) may send to `rcpt`.
    pub fn allows(&self, trusted: bool, rcpt: &ForwardPath) -> bool {
        match rcpt {
            ForwardPath::Postmaster => true,
            ForwardPath::Mailbox(m) => {
                trusted
                    || match &m.domain {
                        Domain::Name(d) => self.local.contains(d) || self.relay.contains(d),
                        Domain::Literal(_) => false,
                    }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smtp::Mailbox;

    fn rcpt(domain: &str) -> ForwardPath {
        ForwardPath::Mailbox(Mailbox {
            local_part: "u".into(),
            domain: Domain::Name(domain.into()),
        })
    }

    #[test]
    fn domain_patterns() {
        let set = DomainSet::new(&["example.com", "*.example.net"]);
        assert!(set.contains("example.com"));
        assert!(set.contains("EXAMPLE.com"));
        assert!(!set.contains("sub.example.com"));
        assert!(set.contains("a.example.net"));
        assert!(set.contains("a.b.example.net"));
        assert!(!set.contains("example.net"));
        assert!(!set.contains("badexample.net"));
    }

    #[test]
    fn policy() {
        let section = RelaySection {
            local_domains: vec!["local.test".into()],
            relay_domains: vec!["*.relay.test".into()],
            trusted_networks: vec!["10.0.0.0/8".parse().unwrap()],
            postmaster: None,
        };
        let p = RelayPolicy::new(&section);
        assert!(p.is_trusted("10.1.2.3".parse().unwrap()));
        assert!(p.is_trusted("::ffff:10.1.2.3".parse().unwrap()));
        assert!(!p.is_trusted("192.0.2.1".parse().unwrap()));
        assert!(p.allows(false, &rcpt("local.test")));
        assert!(p.allows(false, &rcpt("x.relay.test")));
        assert!(!p.allows(false, &rcpt("elsewhere.test")));
        assert!(p.allows(true, &rcpt("elsewhere.test")));
        assert!(p.allows(false, &ForwardPath::Postmaster));
    }
}
