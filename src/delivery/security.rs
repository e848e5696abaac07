//! The TLS each next hop of a destination gets: DANE, then MTA-STS, then the configured
//! policy.
//!
//! What it does: at routing time, for mail routed by MX, [`resolve`] looks up the TLSA
//! records of every MX host (with `delivery.tls_policy.dane`) and, when no host has DANE, the
//! recipient domain's MTA-STS policy (with `delivery.tls_policy.mta_sts`); the result,
//! [`Security`], travels with the destination. At connection time [`for_hop`] says what one
//! hop's connection must do: which rustls configuration, whether TLS may be skipped, and what
//! the events call the policy applied.
//!
//! The order (RFC 8461 2, RFC 7672 2.2): a host with DNSSEC-validated, usable TLSA records gets
//! DANE (a certificate that matches none of them defers the mail); a host with validated TLSA
//! records none of which are usable gets TLS without authentication; a host whose TLSA lookup
//! failed in a signed zone is not sent to. Otherwise an MTA-STS policy in `enforce` mode
//! refuses MX hosts it does not name and needs a certificate valid for the host name
//! (`verify`); in `testing` mode the configured policy applies and failures are only
//! logged. Otherwise the configured policy (`delivery.tls`, a route's `tls`) applies.
//!
//! When TLS reporting is on, [`resolve`] also describes the policy as RFC 8460 reports it
//! ([`Security::report`]), once per routing, so that counting a session allocates nothing.
//!
//! What it does not do: no lookups for configured routes and the smarthost (their `tls` is
//! what the operator chose), no counting (the connection does, `tls_rpt`).
//!
//! Invariants: a hop with usable DANE records is never sent to without a matching
//! certificate; an MX host that an `enforce` policy does not name is never connected to.

use std::rc::Rc;
use std::sync::Arc;

use crate::config::Config;
use crate::dns::{MxHost, Resolver, TlsaLookup};
use crate::mta_sts::{Cached, Mode, MtaSts};
use crate::tls::{TlsPolicy, dane_config, usable_tlsa};
use crate::tls_rpt::{PolicyDesc, PolicyKind};

/// What DANE says of one host.
#[derive(Clone, Debug)]
pub enum Dane {
    /// DANE does not apply (the words say why).
    NotApplicable(&'static str),
    /// Usable records: the certificate must match one (the configuration checks it).
    Verify(Arc<rustls::ClientConfig>),
    /// Validated records, none usable: TLS is mandatory, authentication is not (RFC 7672 2.2).
    EncryptOnly,
    /// The TLSA lookup failed for a host in a signed zone: not to be sent to for now.
    Failed(String),
}

/// The receiver-published TLS requirements of a destination.
#[derive(Clone, Debug, Default)]
pub struct Security {
    /// DANE per MX host name (empty: DANE off or not applicable to this destination).
    pub dane: Vec<(String, Dane)>,
    /// The MTA-STS policy applied to the recipient domain.
    pub sts: Option<Cached>,
    /// The policy as TLS reports describe it (None: no policy, or reporting is off).
    pub report: Option<Rc<PolicyDesc>>,
}

impl Security {
    /// True when some host of the destination has DANE (then MTA-STS is not applied).
    pub fn has_dane(&self) -> bool {
        self.dane
            .iter()
            .any(|(_, d)| matches!(d, Dane::Verify(_) | Dane::EncryptOnly | Dane::Failed(_)))
    }

    /// The MTA-STS mode in force, if any.
    pub fn sts_mode(&self) -> Option<Mode> {
        self.sts.as_ref().map(|c| c.policy.mode)
    }

    /// One line for `mta dest show`: the policy of each host.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        for (host, d) in &self.dane {
            let what = match d {
                Dane::NotApplicable(why) => format!("no DANE ({why})"),
                Dane::Verify(_) => "DANE".to_owned(),
                Dane::EncryptOnly => "DANE, encryption only (no usable TLSA record)".to_owned(),
                Dane::Failed(why) => format!("DANE lookup failed: {why}"),
            };
            parts.push(format!("{host}: {what}"));
        }
        if let Some(c) = &self.sts {
            parts.push(format!(
                "MTA-STS {} (id {}, max_age {}s)",
                c.policy.mode.as_str(),
                c.id,
                c.policy.max_age
            ));
        }
        parts.join("; ")
    }
}

/// The policy a connection applied, as the events name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// The destination's configured policy.
    Configured(TlsPolicy),
    /// DANE: the certificate matched a TLSA record.
    Dane,
    /// DANE with no usable record: encrypted, not authenticated.
    DaneEncryptOnly,
    /// MTA-STS `enforce`: the certificate is valid for the MX host.
    MtaSts,
    /// MTA-STS `testing`: the configured policy, failures logged.
    MtaStsTesting(TlsPolicy),
}

impl std::fmt::Display for Applied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = |p: &TlsPolicy| match p {
            TlsPolicy::None => "none",
            TlsPolicy::Opportunistic => "opportunistic",
            TlsPolicy::Required => "required",
            TlsPolicy::Verify => "verify",
        };
        match self {
            Applied::Configured(p) => f.write_str(name(p)),
            Applied::Dane => f.write_str("dane"),
            Applied::DaneEncryptOnly => f.write_str("dane-encrypt-only"),
            Applied::MtaSts => f.write_str("mta-sts"),
            Applied::MtaStsTesting(p) => write!(f, "mta-sts-testing/{}", name(p)),
        }
    }
}

/// What a connection to one hop must do.
#[derive(Clone, Debug)]
pub struct HopTls {
    /// The STARTTLS policy.
    pub policy: TlsPolicy,
    /// A configuration that replaces the policy's (DANE).
    pub config: Option<Arc<rustls::ClientConfig>>,
    /// What the events call it.
    pub applied: Applied,
    /// Why the hop must not be connected to at all.
    pub refuse: Option<String>,
}

impl HopTls {
    /// True when a successful handshake means the certificate was authenticated.
    pub fn authenticates(&self) -> bool {
        matches!(self.applied, Applied::Dane | Applied::MtaSts) || self.policy == TlsPolicy::Verify
    }
}

/// What a connection to `host` must do, given the destination's `security` and its
/// configured policy.
pub fn for_hop(security: &Security, configured: TlsPolicy, host: &str) -> HopTls {
    let plain = |policy, applied| HopTls {
        policy,
        config: None,
        applied,
        refuse: None,
    };
    match security
        .dane
        .iter()
        .find(|(h, _)| h.eq_ignore_ascii_case(host))
    {
        Some((_, Dane::Verify(config))) => {
            return HopTls {
                policy: TlsPolicy::Required,
                config: Some(config.clone()),
                applied: Applied::Dane,
                refuse: None,
            };
        }
        Some((_, Dane::EncryptOnly)) => {
            let policy = match configured {
                TlsPolicy::Verify => TlsPolicy::Verify,
                _ => TlsPolicy::Required,
            };
            return plain(policy, Applied::DaneEncryptOnly);
        }
        Some((_, Dane::Failed(why))) => {
            return HopTls {
                refuse: Some(format!("DANE: {why}")),
                ..plain(TlsPolicy::Required, Applied::Dane)
            };
        }
        _ => {}
    }
    match &security.sts {
        Some(c) if c.policy.mode == Mode::Enforce && !c.policy.matches_mx(host) => HopTls {
            // RFC 8461 4.1: only the MX hosts the policy names.
            refuse: Some(format!(
                "MTA-STS: {host} is not named by the enforced policy (mx: {})",
                c.policy.mx.join(", ")
            )),
            ..plain(TlsPolicy::Verify, Applied::MtaSts)
        },
        _ => match security.sts_mode() {
            Some(Mode::Enforce) => plain(TlsPolicy::Verify, Applied::MtaSts),
            Some(Mode::Testing) => plain(configured, Applied::MtaStsTesting(configured)),
            _ => plain(configured, Applied::Configured(configured)),
        },
    }
}

/// The DANE state of each host (`delivery.tls_policy.dane`), and the validated TLSA records
/// in presentation form.
async fn dane(
    resolver: &Resolver,
    hosts: &[MxHost],
    port: u16,
) -> (Vec<(String, Dane)>, Vec<String>) {
    let mut out = Vec::new();
    let mut texts = Vec::new();
    for h in hosts {
        if out.iter().any(|(n, _): &(String, Dane)| *n == h.name) {
            continue;
        }
        let d = match resolver.tlsa(&h.name, port).await {
            Ok(TlsaLookup::NotApplicable(why)) => Dane::NotApplicable(why),
            Ok(TlsaLookup::Records(records)) => {
                texts.extend(records.iter().map(|r| r.to_string()));
                if records.iter().any(usable_tlsa) {
                    match dane_config(records) {
                        Ok(c) => Dane::Verify(c),
                        Err(e) => Dane::Failed(e.to_string()),
                    }
                } else {
                    Dane::EncryptOnly
                }
            }
            Err(e) => Dane::Failed(format!("TLSA lookup: {e}")),
        };
        out.push((h.name.clone(), d));
    }
    (out, texts)
}

/// The policy of `security` as a TLS report describes it (RFC 8460 4.4), if it has one.
fn report(security: &Security, tlsa: Vec<String>) -> Option<PolicyDesc> {
    if security.has_dane() {
        let mx = security
            .dane
            .iter()
            .filter(|(_, d)| !matches!(d, Dane::NotApplicable(_)))
            .map(|(h, _)| h.clone())
            .collect();
        return Some(PolicyDesc {
            kind: PolicyKind::Tlsa,
            strings: tlsa,
            mx,
        });
    }
    let c = security.sts.as_ref()?;
    let mut strings = vec![
        "version: STSv1".to_owned(),
        format!("mode: {}", c.policy.mode.as_str()),
    ];
    strings.extend(c.policy.mx.iter().map(|m| format!("mx: {m}")));
    strings.push(format!("max_age: {}", c.policy.max_age));
    Some(PolicyDesc {
        kind: PolicyKind::Sts,
        strings,
        mx: c.policy.mx.clone(),
    })
}

/// The security of MX-routed mail for `domain` through `hosts` (module header).
pub async fn resolve(
    config: &Config,
    resolver: &Resolver,
    sts: Option<&MtaSts>,
    domain: &str,
    hosts: &[MxHost],
) -> Rc<Security> {
    let p = &config.delivery.tls_policy;
    let mut security = Security::default();
    let mut tlsa = Vec::new();
    if p.dane {
        (security.dane, tlsa) = dane(resolver, hosts, config.delivery.mx_port).await;
    }
    if !security.has_dane()
        && let Some(sts) = sts
    {
        security.sts = sts
            .policy(resolver, domain)
            .await
            .filter(|c| c.policy.mode != Mode::None);
    }
    if crate::tls_rpt::recorder::enabled() {
        security.report = report(&security, tlsa).map(Rc::new);
    }
    Rc::new(security)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mta_sts::Policy;

    fn sts(mode: Mode) -> Option<Cached> {
        Some(Cached {
            id: "1".into(),
            policy: Policy {
                mode,
                mx: vec!["*.a.test".into()],
                max_age: 60,
            },
            fetched_unix: 0,
        })
    }

    #[test]
    fn reports_describe_the_policy() {
        let mut s = Security {
            dane: vec![],
            sts: sts(Mode::Enforce),
            report: None,
        };
        let p = report(&s, vec![]).unwrap();
        assert_eq!(p.kind, PolicyKind::Sts);
        assert_eq!(
            p.strings,
            [
                "version: STSv1",
                "mode: enforce",
                "mx: *.a.test",
                "max_age: 60"
            ]
        );
        assert_eq!(p.mx, ["*.a.test"]);
        s.dane = vec![
            ("mx.a.test".into(), Dane::EncryptOnly),
            ("mx.b.test".into(), Dane::NotApplicable("unsigned")),
        ];
        let p = report(&s, vec!["3 1 1 ab".into()]).unwrap();
        assert_eq!(p.kind, PolicyKind::Tlsa);
        assert_eq!(
            (p.strings, p.mx),
            (vec!["3 1 1 ab".into()], vec!["mx.a.test".into()])
        );
        assert!(report(&Security::default(), vec![]).is_none());
    }

    #[test]
    fn what_each_hop_gets() {
        use TlsPolicy as P;
        let dane_config = dane_config(vec![]).unwrap();
        let with = |dane: Vec<(&str, Dane)>, sts| Security {
            dane: dane.into_iter().map(|(h, d)| (h.to_owned(), d)).collect(),
            sts,
            report: None,
        };
        let cases: Vec<(Security, TlsPolicy, &str, TlsPolicy, &str, bool)> = vec![
            (
                Security::default(),
                P::Opportunistic,
                "mx.a.test",
                P::Opportunistic,
                "opportunistic",
                false,
            ),
            (
                Security::default(),
                P::Verify,
                "mx.a.test",
                P::Verify,
                "verify",
                false,
            ),
            (
                with(vec![("mx.a.test", Dane::Verify(dane_config.clone()))], None),
                P::None,
                "mx.a.test",
                P::Required,
                "dane",
                false,
            ),
            (
                with(vec![("mx.a.test", Dane::EncryptOnly)], None),
                P::Opportunistic,
                "mx.a.test",
                P::Required,
                "dane-encrypt-only",
                false,
            ),
            (
                with(vec![("mx.a.test", Dane::Failed("x".into()))], None),
                P::Opportunistic,
                "mx.a.test",
                P::Required,
                "dane",
                true,
            ),
            (
                with(
                    vec![("mx.a.test", Dane::NotApplicable("y"))],
                    sts(Mode::Enforce),
                ),
                P::Opportunistic,
                "mx.a.test",
                P::Verify,
                "mta-sts",
                false,
            ),
            (
                with(vec![], sts(Mode::Enforce)),
                P::Opportunistic,
                "mx.b.test",
                P::Verify,
                "mta-sts",
                true,
            ),
            (
                with(vec![], sts(Mode::Testing)),
                P::Opportunistic,
                "mx.b.test",
                P::Opportunistic,
                "mta-sts-testing/opportunistic",
                false,
            ),
            // DANE of one host does not decide for another.
            (
                with(vec![("mx.x.test", Dane::EncryptOnly)], None),
                P::Opportunistic,
                "mx.a.test",
                P::Opportunistic,
                "opportunistic",
                false,
            ),
        ];
        for (i, (security, configured, host, policy, applied, refused)) in cases.iter().enumerate()
        {
            let hop = for_hop(security, *configured, host);
            assert_eq!(hop.policy, *policy, "case {i}");
            assert_eq!(hop.applied.to_string(), *applied, "case {i}");
            assert_eq!(hop.refuse.is_some(), *refused, "case {i}");
            assert_eq!(
                hop.config.is_some(),
                *applied == "dane" && !refused,
                "case {i}"
            );
        }
    }
}
