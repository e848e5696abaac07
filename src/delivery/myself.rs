//! Which next hops are this MTA itself, so that mail never loops back to it (RFC 5321 5.1 and
//! 6.3; Postfix's "mail for D loops back to myself").
//!
//! What it does: knows the host's SMTP listening addresses, its interface addresses and the
//! operator's `delivery.own_addresses` (public addresses reached through NAT or a load
//! balancer), and answers two questions: is this address:port one of ours, and which hops of a
//! DNS answer may be used at all. For MX hosts it applies RFC 5321 5.1: once our own entry is
//! found, it and every entry of equal or higher preference are discarded. Loopback,
//! unspecified and link-local addresses from DNS are treated as ours: a name in someone else's
//! zone must never make us connect to ourselves, or to a server that trusts loopback.
//!
//! What it does not do: no DNS, no connections, no decision on what to tell the sender (the
//! router turns "nothing left" into a 5.4.6 bounce). The interface list is read when the
//! shard starts and again on each SIGHUP reload; an address added in between is not seen.
//!
//! Invariants: an address is compared after unmapping IPv4-mapped IPv6; a listener on the
//! unspecified address owns its port on every local address; hops a route names explicitly
//! (an IP literal or a name) are refused only when they are one of our listening sockets.

use std::net::{IpAddr, SocketAddr};

use crate::dns::MxHost;

/// The addresses that are this host.
#[derive(Clone, Debug, Default)]
pub struct Myself {
    /// Bound SMTP listening sockets (concrete ports).
    listeners: Vec<SocketAddr>,
    /// Addresses of the host's interfaces, plus the configured own addresses.
    local: Vec<IpAddr>,
    /// The configured own addresses (reached through NAT: any listener port is ours there).
    own: Vec<IpAddr>,
    /// The port MX hosts are reached on (25; `delivery.mx_port`).
    mx_port: u16,
    /// MX hosts on loopback addresses may be used (`delivery.mx_allow_loopback`, test rigs).
    loopback_mx: bool,
}

impl Myself {
    /// Our listening sockets and `own` extra addresses, plus the host's interface addresses
    /// (read now; an error reading them leaves only loopback and the configured ones).
    pub fn new(listeners: &[SocketAddr], own: &[IpAddr]) -> Myself {
        let interfaces: Vec<IpAddr> = match if_addrs::get_if_addrs() {
            Ok(ifs) => ifs.iter().map(|i| i.ip()).collect(),
            Err(e) => {
                tracing::warn!(error = %e, "cannot list the host's addresses; loop detection knows only the listeners and delivery.own_addresses");
                Vec::new()
            }
        };
        Myself::from_parts(listeners, &interfaces, own)
    }

    /// As [`Myself::new`], with the interface addresses given (no system call).
    pub fn from_parts(listeners: &[SocketAddr], interfaces: &[IpAddr], own: &[IpAddr]) -> Myself {
        let set = |v: Vec<IpAddr>| {
            let mut v: Vec<IpAddr> = v.into_iter().map(|ip| ip.to_canonical()).collect();
            v.sort();
            v.dedup();
            v
        };
        Myself {
            listeners: listeners
                .iter()
                .map(|a| SocketAddr::new(a.ip().to_canonical(), a.port()))
                .collect(),
            local: set(interfaces.iter().chain(own).copied().collect()),
            own: set(own.to_vec()),
            mx_port: 25,
            loopback_mx: false,
        }
    }

    /// MX hosts are reached on `port`; with `loopback`, MX hosts on loopback addresses are
    /// not refused (a test rig whose receivers listen on 127.0.0.1; never in production).
    /// Our own listeners stay refused.
    pub fn with_mx(mut self, port: u16, loopback: bool) -> Myself {
        self.mx_port = port;
        self.loopback_mx = loopback;
        self
    }

    /// True if connecting to `hop` would reach one of our own SMTP listeners.
    pub fn is_listener(&self, hop: SocketAddr) -> bool {
        let ip = hop.ip().to_canonical();
        self.listeners.iter().any(|l| {
            l.port() == hop.port()
                && (l.ip() == ip
                    || (l.ip().is_unspecified()
                        && (ip.is_loopback() || ip.is_unspecified() || self.local.contains(&ip))))
        }) || (self.own.contains(&ip) && self.listeners.iter().any(|l| l.port() == hop.port()))
    }

    /// True if a hop learnt from DNS must not be connected to: one of our listeners, one of
    /// our addresses, or a loopback, unspecified or link-local address.
    pub fn refuses_from_dns(&self, hop: SocketAddr) -> bool {
        let ip = hop.ip().to_canonical();
        let allowed = self.loopback_mx && ip.is_loopback();
        (!allowed && (is_special(ip) || self.local.contains(&ip))) || self.is_listener(hop)
    }

    /// RFC 5321 5.1: the lowest preference among MX hosts (reached on the MX port) with an
    /// address that [`Myself::refuses_from_dns`]. That host and every host of equal or higher
    /// preference must be dropped; `None` if no host is ours.
    pub fn own_preference(&self, hosts: &[MxHost]) -> Option<u16> {
        hosts
            .iter()
            .filter(|h| {
                h.addrs
                    .iter()
                    .any(|a| self.refuses_from_dns(SocketAddr::new(*a, self.mx_port)))
            })
            .map(|h| h.preference)
            .min()
    }
}

/// Loopback, unspecified or link-local (IPv4 169.254/16, IPv6 fe80::/10).
pub fn is_special(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(v4) => v4.is_loopback() || v4.is_unspecified() || v4.is_link_local(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.is_unspecified() || (v6.segments()[0] & 0xffc0) == 0xfe80
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn me() -> Myself {
        Myself::from_parts(
            &[sa("0.0.0.0:25"), sa("127.0.0.1:2525"), sa("10.0.0.5:587")],
            &[
                "192.0.2.10".parse().unwrap(),
                "2001:db8::10".parse().unwrap(),
            ],
            &["203.0.113.9".parse().unwrap()],
        )
    }

    #[test]
    fn listeners_and_wildcards() {
        let m = me();
        assert!(m.is_listener(sa("127.0.0.1:2525")));
        assert!(m.is_listener(sa("[::ffff:127.0.0.1]:2525")));
        assert!(
            !m.is_listener(sa("127.0.0.1:2526")),
            "another port of loopback"
        );
        assert!(
            m.is_listener(sa("127.0.0.5:25")),
            "0.0.0.0:25 owns loopback's port 25"
        );
        assert!(m.is_listener(sa("192.0.2.10:25")), "an interface address");
        assert!(m.is_listener(sa("[2001:db8::10]:25")));
        assert!(m.is_listener(sa("0.0.0.0:25")));
        assert!(!m.is_listener(sa("192.0.2.11:25")), "someone else");
        assert!(
            !m.is_listener(sa("192.0.2.10:2525")),
            "2525 is bound to loopback only"
        );
        assert!(
            m.is_listener(sa("203.0.113.9:587")),
            "NAT: a configured own address"
        );
        assert!(m.is_listener(sa("203.0.113.9:25")));
        assert!(!m.is_listener(sa("203.0.113.9:26")));
    }

    #[test]
    fn dns_hops_never_reach_special_addresses() {
        let m = me();
        for a in [
            "127.0.0.1:25",
            "127.1.2.3:25",
            "[::1]:25",
            "0.0.0.0:25",
            "[::]:25",
            "169.254.1.1:25",
            "[fe80::1]:25",
            "[::ffff:127.0.0.1]:25",
            "192.0.2.10:25",
            "203.0.113.9:25",
        ] {
            assert!(m.refuses_from_dns(sa(a)), "{a}");
        }
        assert!(!m.refuses_from_dns(sa("198.51.100.7:25")));
        assert!(!m.refuses_from_dns(sa("[2001:db8::99]:25")));
    }

    fn mx(preference: u16, addrs: &[&str]) -> MxHost {
        MxHost {
            name: format!("mx{preference}.example"),
            preference,
            addrs: addrs.iter().map(|a| a.parse().unwrap()).collect(),
        }
    }

    #[test]
    fn our_mx_preference() {
        let m = me();
        let hosts = vec![
            mx(5, &["198.51.100.1"]),
            mx(10, &["198.51.100.2"]),
            mx(10, &["198.51.100.3", "192.0.2.10"]),
            mx(20, &["127.0.0.1"]),
        ];
        assert_eq!(m.own_preference(&hosts), Some(10));
        assert_eq!(m.own_preference(&[mx(10, &["127.0.0.1"])]), Some(10));
        assert_eq!(m.own_preference(&[mx(0, &["::1"])]), Some(0));
        let others = [mx(10, &["198.51.100.1"]), mx(20, &["2001:db8::99"])];
        assert_eq!(m.own_preference(&others), None);
    }

    #[test]
    fn special_addresses() {
        for a in [
            "127.0.0.1",
            "0.0.0.0",
            "169.254.0.1",
            "::1",
            "::",
            "fe80::1",
            "febf::1",
        ] {
            assert!(is_special(a.parse().unwrap()), "{a}");
        }
        for a in ["192.0.2.1", "10.0.0.1", "2001:db8::1", "fec0::1"] {
            assert!(!is_special(a.parse().unwrap()), "{a}");
        }
    }
}
