//! The aggregate report of one policy domain and period (RFC 8460 4.4), and where it goes
//! (the `_smtp._tls` TXT record, RFC 8460 3).
//!
//! What it does: [`rua`] reads the reporting addresses out of a domain's `_smtp._tls` TXT
//! records; [`build`] writes the JSON report of a domain's counts; [`gzip`] compresses it;
//! [`file_name`] names it as RFC 8460 5.3 says.
//!
//! What it does not do: no DNS, no sending, no clock (the period and the names are
//! parameters).
//!
//! Invariants: a report is valid JSON with the RFC's field names; only `mailto:` and `https:`
//! addresses are returned; a record set with more than one `v=TLSRPTv1` record (or none) has
//! no addresses.

use std::io::Write;
use std::time::{Duration, UNIX_EPOCH};

use serde_json::{Value, json};

use super::tally::{PolicyKind, PolicyTally};

/// Where a report goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rua {
    /// By mail to this address.
    Mailto(String),
    /// By HTTPS POST to this URL.
    Https(String),
}

/// The reporting addresses of a `_smtp._tls` TXT record set (RFC 8460 3).
pub fn rua(records: &[String]) -> Vec<Rua> {
    let ours: Vec<&String> = records
        .iter()
        .filter(|r| {
            let r = r.trim_start();
            r.starts_with("v=TLSRPTv1;") || r == "v=TLSRPTv1"
        })
        .collect();
    let [record] = ours.as_slice() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for field in record.split(';').skip(1) {
        let Some((key, value)) = field.split_once('=') else {
            continue;
        };
        if !key.trim().eq_ignore_ascii_case("rua") {
            continue;
        }
        for uri in value.split(',').map(str::trim) {
            let lower = uri.to_ascii_lowercase();
            if let Some(addr) = uri.get(7..).filter(|_| lower.starts_with("mailto:")) {
                let addr = addr.split('?').next().unwrap_or("");
                let addr = percent_encoding::percent_decode_str(addr).decode_utf8_lossy();
                if addr.contains('@') && !addr.contains(['<', '>', ' ', '\r', '\n']) {
                    out.push(Rua::Mailto(addr.into_owned()));
                }
            } else if lower.starts_with("https://") {
                out.push(Rua::Https(uri.to_owned()));
            }
        }
    }
    out
}

/// RFC 3339 UTC date-time of Unix second `t`.
pub fn datetime(t: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(t)).to_string()
}

/// Who made a report, and for which period.
pub struct Header<'a> {
    /// `organization-name`.
    pub organization: &'a str,
    /// `contact-info`.
    pub contact: &'a str,
    /// `report-id`.
    pub report_id: &'a str,
    /// First second of the period (Unix).
    pub start: u64,
    /// End of the period (Unix, exclusive).
    pub end: u64,
}

/// The JSON report of `domain`'s `policies` (RFC 8460 4.4).
pub fn build(h: &Header<'_>, domain: &str, policies: &[PolicyTally]) -> Vec<u8> {
    let policies: Vec<Value> = policies
        .iter()
        .map(|p| {
            let kind = match p.policy.kind {
                PolicyKind::Sts => "sts",
                PolicyKind::Tlsa => "tlsa",
                PolicyKind::NoPolicyFound => "no-policy-found",
            };
            let mut policy = json!({ "policy-type": kind, "policy-domain": domain });
            if !p.policy.strings.is_empty() {
                policy["policy-string"] = json!(p.policy.strings);
            }
            if !p.policy.mx.is_empty() {
                policy["mx-host"] = json!(p.policy.mx);
            }
            let details: Vec<Value> = p
                .details
                .iter()
                .map(|f| {
                    let mut d = json!({
                        "result-type": f.result.as_str(),
                        "receiving-mx-hostname": f.mx,
                        "failed-session-count": f.count,
                    });
                    if let Some(ip) = f.sending_ip {
                        d["sending-mta-ip"] = json!(ip.to_string());
                    }
                    if let Some(ip) = f.receiving_ip {
                        d["receiving-ip"] = json!(ip.to_string());
                    }
                    d
                })
                .collect();
            json!({
                "policy": policy,
                "summary": {
                    "total-successful-session-count": p.success,
                    "total-failure-session-count": p.failure,
                },
                "failure-details": details,
            })
        })
        .collect();
    let report = json!({
        "organization-name": h.organization,
        "date-range": {
            "start-datetime": datetime(h.start),
            "end-datetime": datetime(h.end.saturating_sub(1).max(h.start)),
        },
        "contact-info": h.contact,
        "report-id": h.report_id,
        "policies": policies,
    });
    serde_json::to_vec(&report).unwrap_or_default()
}

/// `data` compressed with gzip.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    // Writing to a Vec cannot fail.
    let _ = e.write_all(data);
    e.finish().unwrap_or_default()
}

/// The report's file name (RFC 8460 5.3): `submitter!domain!start!end!unique.json.gz`.
pub fn file_name(submitter: &str, domain: &str, start: u64, end: u64, unique: &str) -> String {
    format!("{submitter}!{domain}!{start}!{end}!{unique}.json.gz")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls_rpt::result::ResultType;
    use crate::tls_rpt::tally::{Failure, PolicyDesc};

    #[test]
    fn rua_addresses() {
        let r = |s: &[&str]| rua(&s.iter().map(|x| x.to_string()).collect::<Vec<_>>());
        assert_eq!(
            r(&[
                "v=TLSRPTv1; rua=mailto:tls@r.test,https://r.test/x",
                "other"
            ]),
            [
                Rua::Mailto("tls@r.test".into()),
                Rua::Https("https://r.test/x".into())
            ]
        );
        assert_eq!(
            r(&["v=TLSRPTv1;rua=mailto:a%40b@r.test?subject=x"]),
            [Rua::Mailto("a@b@r.test".into())]
        );
        assert!(r(&["v=TLSRPTv1; rua=ftp://x"]).is_empty());
        assert!(
            r(&[
                "v=TLSRPTv1; rua=mailto:a@r.test",
                "v=TLSRPTv1; rua=mailto:b@r.test"
            ])
            .is_empty()
        );
        assert!(r(&["v=STSv1; id=1"]).is_empty());
    }

    #[test]
    fn report_fields() {
        let p = PolicyTally {
            policy: PolicyDesc {
                kind: PolicyKind::Sts,
                strings: vec!["version: STSv1".into(), "mode: enforce".into()],
                mx: vec!["*.a.test".into()],
            },
            success: 3,
            failure: 1,
            details: vec![Failure {
                result: ResultType::CertificateExpired,
                sending_ip: Some("192.0.2.1".parse().unwrap()),
                mx: "mx.a.test".into(),
                receiving_ip: Some("192.0.2.2".parse().unwrap()),
                count: 1,
            }],
        };
        let h = Header {
            organization: "Org",
            contact: "c@o.test",
            report_id: "id1",
            start: 86_400,
            end: 2 * 86_400,
        };
        let v: Value = serde_json::from_slice(&build(&h, "a.test", &[p])).unwrap();
        assert_eq!(v["date-range"]["start-datetime"], "1970-01-02T00:00:00Z");
        assert_eq!(v["date-range"]["end-datetime"], "1970-01-02T23:59:59Z");
        let p = &v["policies"][0];
        assert_eq!(p["policy"]["policy-type"], "sts");
        assert_eq!(p["policy"]["mx-host"][0], "*.a.test");
        assert_eq!(p["summary"]["total-successful-session-count"], 3);
        let d = &p["failure-details"][0];
        assert_eq!(d["result-type"], "certificate-expired");
        assert_eq!(d["sending-mta-ip"], "192.0.2.1");
        assert_eq!(d["receiving-ip"], "192.0.2.2");
        assert_eq!(d["failed-session-count"], 1);
        let gz = gzip(b"hello");
        let mut out = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&gz[..]), &mut out)
            .unwrap();
        assert_eq!(out, "hello");
    }
}
