//! `[delivery.tls_policy]`: outbound TLS that receivers can require of us (DANE, MTA-STS).
//!
//! What it does: says whether DNSSEC-validated TLSA records (RFC 7672) and MTA-STS policies
//! (RFC 8461) are honoured for mail routed by MX, where MTA-STS policies are kept, and how a
//! policy fetch is bounded; with defaults and validation.
//!
//! What it does not do: no lookups, no fetches (delivery does them), no per-route settings
//! (routes and the smarthost keep their configured `tls`).
//!
//! Invariants: a fetch is always bounded in time and size.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{ByteSize, HumanDuration};

/// `[delivery.tls_policy]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsPolicySection {
    /// Honour TLSA records of MX hosts when the resolver vouches for them with the AD bit.
    /// Only safe with a validating resolver on loopback in `dns.servers`.
    pub dane: bool,
    /// Look up, fetch and apply MTA-STS policies of recipient domains.
    pub mta_sts: bool,
    /// Where fetched MTA-STS policies are kept across restarts. Default: `<spool.path>/mta-sts`.
    pub mta_sts_cache: Option<PathBuf>,
    /// Longest a policy fetch may take (connect, TLS, request and body together).
    pub mta_sts_fetch_timeout: HumanDuration,
    /// Largest policy body accepted (RFC 8461 3.3 suggests 64 KiB).
    pub mta_sts_max_size: ByteSize,
    /// Port of the policy host's HTTPS server (443; another port only for tests).
    pub mta_sts_port: u16,
    /// TLS reporting (RFC 8460).
    pub tls_rpt: super::tls_rpt::TlsRptSection,
}

impl Default for TlsPolicySection {
    fn default() -> Self {
        TlsPolicySection {
            dane: false,
            mta_sts: false,
            mta_sts_cache: None,
            mta_sts_fetch_timeout: HumanDuration::secs(10),
            mta_sts_max_size: ByteSize::kib(64),
            mta_sts_port: 443,
            tls_rpt: Default::default(),
        }
    }
}

impl TlsPolicySection {
    /// Checks the values; the error names the key.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let t = self.mta_sts_fetch_timeout.0;
        if t.is_zero() || t > Duration::from_secs(60) {
            return Err((
                "delivery.tls_policy.mta_sts_fetch_timeout".into(),
                "must be > 0 and at most 60s".into(),
            ));
        }
        let size = self.mta_sts_max_size.0;
        if !(1024..=1024 * 1024).contains(&size) {
            return Err((
                "delivery.tls_policy.mta_sts_max_size".into(),
                "must be between 1KiB and 1MiB".into(),
            ));
        }
        if self.mta_sts_port == 0 {
            return Err((
                "delivery.tls_policy.mta_sts_port".into(),
                "must not be 0".into(),
            ));
        }
        self.tls_rpt.validate()
    }
}
