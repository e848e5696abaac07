//! Who may use the admin endpoint.
//!
//! What it does: `AccessPolicy` permits a request (a read or a change) when the peer's address is in one of the
//! allowed networks, or when the request carries `Authorization: Bearer <token>` matching the
//! configured token (compared in constant time). [`LiveAccess`] holds the policy in force: the
//! endpoint reads it for every request and a reload replaces it.
//!
//! What it does not do: no choice of which routes it guards (the handler's: the admin API
//! guards all but `GET /health`), no users or roles, no rate limiting.
//!
//! Invariants: with no token configured, only the address check applies; an empty configured
//! token never matches; IPv4-mapped IPv6 peers are checked as IPv4; a request is judged whole
//! by the policy in force when its head arrived.

use std::cell::RefCell;
use std::net::IpAddr;
use std::rc::Rc;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// The admin endpoint's access policy (the `[admin]` access settings).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessPolicy {
    /// Networks whose peers may change state without a token.
    #[serde(default = "default_allow")]
    pub allow: Vec<IpNet>,
    /// A bearer token that permits changes from anywhere.
    #[serde(default)]
    pub token: Option<String>,
}

fn default_allow() -> Vec<IpNet> {
    vec![
        IpNet::V4(ipnet::Ipv4Net::new_assert(std::net::Ipv4Addr::LOCALHOST, 8)),
        IpNet::V6(ipnet::Ipv6Net::new_assert(
            std::net::Ipv6Addr::LOCALHOST,
            128,
        )),
    ]
}

impl Default for AccessPolicy {
    fn default() -> Self {
        AccessPolicy {
            allow: default_allow(),
            token: None,
        }
    }
}

impl AccessPolicy {
    /// Whether a request from `peer` with this `Authorization` header value may proceed (the
    /// admin API asks it for reads and changes alike).
    pub fn permits_change(&self, peer: IpAddr, authorization_header: Option<&str>) -> bool {
        let peer = peer.to_canonical();
        if self.allow.iter().any(|net| net.contains(&peer)) {
            return true;
        }
        self.token_matches(authorization_header)
    }

    /// Whether the header carries the configured bearer token (never with no token set).
    pub fn token_matches(&self, authorization_header: Option<&str>) -> bool {
        match (&self.token, authorization_header.and_then(bearer)) {
            (Some(expected), Some(given)) if !expected.is_empty() => {
                constant_time_eq(expected.as_bytes(), given.as_bytes())
            }
            _ => false,
        }
    }
}

/// The access policy in force, shared on the endpoint's shard by the endpoint (which asks it
/// about every request) and the shard's reload (which replaces it).
#[derive(Clone, Debug, Default)]
pub struct LiveAccess(Rc<RefCell<AccessPolicy>>);

impl LiveAccess {
    /// Starts with `policy`.
    pub fn new(policy: AccessPolicy) -> LiveAccess {
        LiveAccess(Rc::new(RefCell::new(policy)))
    }

    /// Replaces the policy (a reload): the next request is judged by the new one.
    pub fn set(&self, policy: AccessPolicy) {
        *self.0.borrow_mut() = policy;
    }

    /// [`AccessPolicy::token_matches`] of the policy in force.
    pub fn token_matches(&self, authorization_header: Option<&str>) -> bool {
        self.0.borrow().token_matches(authorization_header)
    }

    /// [`AccessPolicy::permits_change`] of the policy in force.
    pub fn permits_change(&self, peer: IpAddr, authorization_header: Option<&str>) -> bool {
        self.0.borrow().permits_change(peer, authorization_header)
    }
}

/// The token of a `Bearer` credential (scheme matched case-insensitively).
fn bearer(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Compares without an early exit on the first differing byte (the length is not secret).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    #[test]
    fn default_allows_loopback_only() {
        let p = AccessPolicy::default();
        assert!(p.permits_change(ip("127.0.0.1"), None));
        assert!(p.permits_change(ip("127.9.8.7"), None));
        assert!(p.permits_change(ip("::1"), None));
        assert!(p.permits_change(ip("::ffff:127.0.0.1"), None));
        assert!(!p.permits_change(ip("192.0.2.1"), None));
        assert!(!p.permits_change(ip("192.0.2.1"), Some("Bearer ")));
    }

    #[test]
    fn token_permits_from_anywhere() {
        let p = AccessPolicy {
            allow: vec![],
            token: Some("s3cret".into()),
        };
        assert!(p.permits_change(ip("192.0.2.1"), Some("Bearer s3cret")));
        assert!(p.permits_change(ip("192.0.2.1"), Some("bearer  s3cret ")));
        assert!(!p.permits_change(ip("192.0.2.1"), Some("Bearer s3creT")));
        assert!(!p.permits_change(ip("192.0.2.1"), Some("Bearer s3cret2")));
        assert!(!p.permits_change(ip("192.0.2.1"), Some("Basic s3cret")));
        assert!(!p.permits_change(ip("127.0.0.1"), None));
        let empty = AccessPolicy {
            allow: vec![],
            token: Some(String::new()),
        };
        assert!(!empty.permits_change(ip("192.0.2.1"), Some("Bearer ")));
    }

    #[test]
    fn a_replaced_policy_judges_the_next_request() {
        let live = LiveAccess::new(AccessPolicy {
            allow: vec![],
            token: Some("old".into()),
        });
        let endpoint = live.clone();
        assert!(endpoint.permits_change(ip("192.0.2.1"), Some("Bearer old")));
        live.set(AccessPolicy {
            allow: vec![],
            token: Some("new".into()),
        });
        assert!(!endpoint.permits_change(ip("192.0.2.1"), Some("Bearer old")));
        assert!(endpoint.permits_change(ip("192.0.2.1"), Some("Bearer new")));
    }

    #[test]
    fn deserializes_with_defaults_and_rejects_unknown_fields() {
        let p: AccessPolicy = toml::from_str("token = \"t\"").expect("valid");
        assert_eq!(p.allow, AccessPolicy::default().allow);
        let p: AccessPolicy = toml::from_str("allow = [\"10.0.0.0/8\"]").expect("valid");
        assert!(p.permits_change(ip("10.1.2.3"), None));
        assert!(!p.permits_change(ip("127.0.0.1"), None));
        assert!(toml::from_str::<AccessPolicy>("allowed = []").is_err());
    }
}
