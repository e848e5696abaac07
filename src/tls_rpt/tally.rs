//! Counts of TLS sessions per policy domain and policy, with the failure details RFC 8460 4.4
//! asks for, bounded.
//!
//! What it does: [`Tally`] counts successful and failed sessions per (policy domain, policy);
//! each failure detail (result type, sending address, MX host, receiving address) has a
//! count of its own. Tallies merge (the shards' into the reporter's) and serialise (the
//! saved state).
//!
//! What it does not do: no clock, no I/O, no report format (`report.rs`).
//!
//! Invariants: at most `max_domains` domains, [`MAX_POLICIES`] policies per domain and
//! `max_failure_details` failure details per policy; a session that does not fit is counted
//! in `dropped`, never silently lost. Counting a session of a known domain, policy and
//! failure detail allocates nothing.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::result::ResultType;

/// Most distinct policies counted per domain and period.
pub const MAX_POLICIES: usize = 4;

/// The kind of a policy (RFC 8460 4.4 `policy-type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PolicyKind {
    /// MTA-STS.
    Sts,
    /// DANE TLSA records.
    Tlsa,
    /// No policy.
    NoPolicyFound,
}

/// A policy as the report describes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyDesc {
    /// Its kind.
    pub kind: PolicyKind,
    /// `policy-string`: the MTA-STS policy's lines or the TLSA records.
    pub strings: Vec<String>,
    /// `mx-host`: the MX patterns of an MTA-STS policy, the hosts with TLSA records.
    pub mx: Vec<String>,
}

/// One failure detail.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// Its result type.
    pub result: ResultType,
    /// Our address, when known.
    pub sending_ip: Option<IpAddr>,
    /// The MX host.
    pub mx: String,
    /// Its address, when a connection was made or tried.
    pub receiving_ip: Option<IpAddr>,
    /// Sessions that failed so.
    pub count: u64,
}

/// The counts of one policy of a domain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyTally {
    /// The policy.
    pub policy: PolicyDesc,
    /// Successful sessions.
    pub success: u64,
    /// Failed sessions.
    pub failure: u64,
    /// Failed sessions by detail.
    pub details: Vec<Failure>,
}

/// Sessions by policy domain (see the module header).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tally {
    /// Domain -> its policies' counts.
    pub domains: BTreeMap<String, Vec<PolicyTally>>,
    /// Sessions that did not fit the caps.
    pub dropped: u64,
}

/// The caps of a tally.
#[derive(Clone, Copy, Debug)]
pub struct Caps {
    /// Most domains.
    pub domains: usize,
    /// Most failure details per policy.
    pub details: usize,
}

/// What a session came to.
#[derive(Clone, Copy, Debug)]
pub enum Outcome<'a> {
    /// TLS as the policy wants.
    Success,
    /// A failure of this type with this MX host (name, address).
    Failure {
        /// Its type.
        result: ResultType,
        /// Our address, when known.
        sending_ip: Option<IpAddr>,
        /// The MX host name.
        mx: &'a str,
        /// Its address.
        receiving_ip: Option<IpAddr>,
    },
}

impl Tally {
    /// True when nothing was counted.
    pub fn is_empty(&self) -> bool {
        self.domains.is_empty() && self.dropped == 0
    }

    /// Counts one session of `domain` under `policy`.
    pub fn count(&mut self, caps: Caps, domain: &str, policy: &PolicyDesc, outcome: Outcome<'_>) {
        self.add(caps, domain, policy, outcome, 1);
    }

    fn add(&mut self, caps: Caps, domain: &str, policy: &PolicyDesc, outcome: Outcome<'_>, n: u64) {
        if !self.domains.contains_key(domain) {
            if self.domains.len() >= caps.domains {
                self.dropped += n;
                return;
            }
            self.domains.insert(domain.to_owned(), Vec::new());
        }
        let Some(policies) = self.domains.get_mut(domain) else {
            return;
        };
        let p = match policies.iter().position(|p| p.policy == *policy) {
            Some(i) => &mut policies[i],
            None if policies.len() >= MAX_POLICIES => {
                self.dropped += n;
                return;
            }
            None => {
                policies.push(PolicyTally {
                    policy: policy.clone(),
                    success: 0,
                    failure: 0,
                    details: Vec::new(),
                });
                let last = policies.len() - 1;
                &mut policies[last]
            }
        };
        match outcome {
            Outcome::Success => p.success += n,
            Outcome::Failure {
                result,
                sending_ip,
                mx,
                receiving_ip,
            } => {
                let same = |f: &&mut Failure| {
                    f.result == result
                        && f.sending_ip == sending_ip
                        && f.receiving_ip == receiving_ip
                        && f.mx == mx
                };
                if let Some(f) = p.details.iter_mut().find(same) {
                    f.count += n;
                    p.failure += n;
                } else if p.details.len() < caps.details {
                    p.details.push(Failure {
                        result,
                        sending_ip,
                        mx: mx.to_owned(),
                        receiving_ip,
                        count: n,
                    });
                    p.failure += n;
                } else {
                    self.dropped += n;
                }
            }
        }
    }

    /// Adds `other`'s counts to this tally, within `caps`.
    pub fn merge(&mut self, caps: Caps, other: Tally) {
        self.dropped += other.dropped;
        for (domain, policies) in other.domains {
            for p in policies {
                if p.success > 0 {
                    self.add(caps, &domain, &p.policy, Outcome::Success, p.success);
                }
                for f in &p.details {
                    let outcome = Outcome::Failure {
                        result: f.result,
                        sending_ip: f.sending_ip,
                        mx: &f.mx,
                        receiving_ip: f.receiving_ip,
                    };
                    self.add(caps, &domain, &p.policy, outcome, f.count);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sts() -> PolicyDesc {
        PolicyDesc {
            kind: PolicyKind::Sts,
            strings: vec!["version: STSv1".into(), "mode: enforce".into()],
            mx: vec!["mx.a.test".into()],
        }
    }

    fn fail(mx: &str) -> Outcome<'_> {
        Outcome::Failure {
            result: ResultType::CertificateNotTrusted,
            sending_ip: None,
            mx,
            receiving_ip: Some("127.0.0.1".parse().unwrap()),
        }
    }

    #[test]
    fn counts_merge_and_caps() {
        let caps = Caps {
            domains: 2,
            details: 1,
        };
        let mut a = Tally::default();
        a.count(caps, "a.test", &sts(), Outcome::Success);
        a.count(caps, "a.test", &sts(), Outcome::Success);
        a.count(caps, "a.test", &sts(), fail("mx.a.test"));
        a.count(caps, "a.test", &sts(), fail("mx.a.test"));
        // A second detail does not fit.
        a.count(caps, "a.test", &sts(), fail("mx2.a.test"));
        a.count(caps, "b.test", &sts(), Outcome::Success);
        // A third domain does not fit.
        a.count(caps, "c.test", &sts(), Outcome::Success);
        let p = &a.domains["a.test"][0];
        assert_eq!((p.success, p.failure, p.details[0].count), (2, 2, 2));
        assert_eq!(a.dropped, 2);

        let mut total = Tally::default();
        total.merge(caps, a.clone());
        total.merge(caps, a);
        let p = &total.domains["a.test"][0];
        assert_eq!((p.success, p.failure, p.details[0].count), (4, 4, 4));
        assert_eq!(total.dropped, 4);
        let json = serde_json::to_string(&total).unwrap();
        assert_eq!(serde_json::from_str::<Tally>(&json).unwrap(), total);
    }
}
