//! Lookups for outbound TLS policy: TLSA records for DANE (RFC 7672, RFC 6698) and TXT
//! records (MTA-STS, RFC 8461 3.1; TLS-RPT, RFC 8460 3).
//!
//! What it does: [`Resolver::tlsa`] looks up `_<port>._tcp.<host>` TLSA records and says
//! whether they may be used: only when the host's address records and the TLSA answer both
//! came with the AD bit from the configured resolver (RFC 7672 2.2: a host in an unsigned zone
//! gets no TLSA lookup at all, so a broken unsigned zone that fails TLSA queries does not
//! hold mail up). [`Resolver::txt`] returns the TXT records of a name, each record's strings
//! joined.
//!
//! What it does not do: DNSSEC validation of its own. The AD bit is trusted as it is: that is
//! only safe when the configured resolver validates and the path to it cannot be tampered
//! with, i.e. a validating resolver on loopback (as Postfix requires for DANE).
//!
//! Invariants: a TLSA answer without AD is never returned as usable records; a temporary
//! failure of the TLSA lookup of a host in a signed zone is an error (the caller must not send
//! to that host without authentication, RFC 7672 2.2).

use hickory_proto::rr::rdata::TLSA;
use hickory_proto::rr::{RData, RecordType};

use super::cache::CachedAnswer;
use super::{DnsError, Resolver, normalize};

/// What the TLSA lookup of one host gave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TlsaLookup {
    /// No DANE for this host: its zone is not signed (or the answer was not validated), or it
    /// publishes no TLSA records. The words say which.
    NotApplicable(&'static str),
    /// DNSSEC-validated TLSA records (never empty).
    Records(Vec<TLSA>),
}

impl Resolver {
    /// The TLSA records of `_<port>._tcp.<host>` if they can be trusted (module header).
    pub async fn tlsa(&self, host: &str, port: u16) -> Result<TlsaLookup, DnsError> {
        let (key, name) = normalize(host)?;
        let mut secure = false;
        for rtype in [RecordType::A, RecordType::AAAA] {
            match self.lookup_ad(&key, &name, rtype).await {
                Ok((CachedAnswer::Positive(_), ad)) => {
                    secure = ad;
                    break;
                }
                Ok((_, ad)) => secure = ad,
                Err(_) => {}
            }
        }
        if !secure {
            return Ok(TlsaLookup::NotApplicable(
                "host address not DNSSEC-validated",
            ));
        }
        let (tkey, tname) = normalize(&format!("_{port}._tcp.{key}"))?;
        match self.lookup_ad(&tkey, &tname, RecordType::TLSA).await? {
            (CachedAnswer::Positive(records), true) => {
                let tlsa: Vec<TLSA> = records
                    .into_iter()
                    .filter_map(|r| match r {
                        RData::TLSA(t) => Some(t),
                        _ => None,
                    })
                    .collect();
                match tlsa.is_empty() {
                    true => Ok(TlsaLookup::NotApplicable("no TLSA records")),
                    false => Ok(TlsaLookup::Records(tlsa)),
                }
            }
            (CachedAnswer::Positive(_), false) => Ok(TlsaLookup::NotApplicable(
                "TLSA answer not DNSSEC-validated",
            )),
            _ => Ok(TlsaLookup::NotApplicable("no TLSA records")),
        }
    }

    /// The TXT records of `name`, each record's strings joined (RFC 8461 3.1); empty when the
    /// name does not exist or has none.
    pub async fn txt(&self, name: &str) -> Result<Vec<String>, DnsError> {
        let (key, qname) = normalize(name)?;
        match self.lookup_ad(&key, &qname, RecordType::TXT).await? {
            (CachedAnswer::Positive(records), _) => Ok(records
                .iter()
                .filter_map(|r| match r {
                    RData::TXT(t) => Some(
                        t.txt_data
                            .iter()
                            .map(|s| String::from_utf8_lossy(s))
                            .collect::<String>(),
                    ),
                    _ => None,
                })
                .collect()),
            _ => Ok(Vec::new()),
        }
    }
}
