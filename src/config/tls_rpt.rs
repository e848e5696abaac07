//! `[delivery.tls_policy.tls_rpt]`: SMTP TLS reporting (RFC 8460) of the receivers' policies.
//!
//! What it does: says whether the outcome of TLS sessions with receivers that publish a
//! policy (MTA-STS, DANE) is counted and reported, who the reports come from, how often they
//! are made, and the bounds of what is kept and sent; with defaults and validation.
//!
//! What it does not do: no counting or sending (`tls_rpt` does that).
//!
//! Invariants: the period, the save interval and the HTTPS deadline are never zero; the caps
//! are at least 1.

use serde::{Deserialize, Serialize};

use super::HumanDuration;

/// `[delivery.tls_policy.tls_rpt]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsRptSection {
    /// Count sessions and send daily reports.
    pub enabled: bool,
    /// `organization-name` of the reports. Empty: the host name.
    pub organization: String,
    /// `contact-info` of the reports. Empty: the `from` address.
    pub contact: String,
    /// The From address (and reverse path) of reports sent by mail. Empty:
    /// `noreply-smtp-tls-reporting@<hostname>`.
    pub from: String,
    /// The length of a reporting period: 24h (UTC days) unless testing.
    pub report_interval: HumanDuration,
    /// How often the counts are saved to `<spool.path>/tls-rpt/`.
    pub save_interval: HumanDuration,
    /// Most policy domains counted per period; sessions of further domains are dropped
    /// (and counted as dropped).
    pub max_domains: usize,
    /// Most distinct failure details (result type, hosts) per policy of a domain per period.
    pub max_failure_details: usize,
    /// Deadline of one HTTPS report upload (DNS, connect, TLS, request, answer).
    pub https_timeout: HumanDuration,
    /// Uploads tried per HTTPS report address before giving up.
    pub https_attempts: u32,
}

impl Default for TlsRptSection {
    fn default() -> Self {
        TlsRptSection {
            enabled: false,
            organization: String::new(),
            contact: String::new(),
            from: String::new(),
            report_interval: HumanDuration::secs(86_400),
            save_interval: HumanDuration::secs(60),
            max_domains: 10_000,
            max_failure_details: 100,
            https_timeout: HumanDuration::secs(30),
            https_attempts: 3,
        }
    }
}

impl TlsRptSection {
    /// The From address of reports, given the host name.
    pub fn from_address(&self, hostname: &str) -> String {
        match self.from.is_empty() {
            true => format!("noreply-smtp-tls-reporting@{hostname}"),
            false => self.from.clone(),
        }
    }

    /// Checks the values; the error names the key.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let key = |k: &str| format!("delivery.tls_policy.tls_rpt.{k}");
        if self.report_interval.0.as_secs() < 1 {
            return Err((key("report_interval"), "must be at least 1s".into()));
        }
        if self.save_interval.0.is_zero() {
            return Err((key("save_interval"), "must be > 0".into()));
        }
        if self.max_domains == 0 || self.max_failure_details == 0 {
            return Err((
                key("max_domains"),
                "max_domains and max_failure_details must be at least 1".into(),
            ));
        }
        let t = self.https_timeout.0;
        if t.is_zero() || t.as_secs() > 300 {
            return Err((key("https_timeout"), "must be > 0 and at most 5m".into()));
        }
        if !(1..=10).contains(&self.https_attempts) {
            return Err((key("https_attempts"), "must be between 1 and 10".into()));
        }
        if !self.from.is_empty() && !self.from.contains('@') {
            return Err((key("from"), "must be an address (local@domain)".into()));
        }
        Ok(())
    }
}
