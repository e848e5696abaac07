//! The result types of RFC 8460 4.3 and how a failed TLS session is classified into one.
//!
//! What it does: names each result type as the report writes it, and maps what the outbound
//! client said of a failed STARTTLS or handshake to one of them.
//!
//! What it does not do: no counting (`tally.rs`), no I/O.
//!
//! Invariants: every failure gets exactly one type; an unrecognised handshake error is
//! `validation-failure` (the RFC's catch-all).

use serde::{Deserialize, Serialize};

/// A result type (RFC 8460 4.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ResultType {
    /// The receiver did not offer STARTTLS (or refused it).
    StarttlsNotSupported,
    /// The certificate is not valid for the MX host name.
    CertificateHostMismatch,
    /// The certificate has expired.
    CertificateExpired,
    /// The certificate does not chain to a trusted root.
    CertificateNotTrusted,
    /// Any other failure to validate the session (an MX host the MTA-STS policy does not name).
    ValidationFailure,
    /// The certificate matched none of the TLSA records.
    TlsaInvalid,
    /// The TLSA records could not be had in a signed zone.
    DnssecInvalid,
    /// DANE was required but no validated TLSA records were found.
    DaneRequired,
    /// The MTA-STS policy could not be fetched.
    StsPolicyFetchError,
    /// The MTA-STS policy is not valid.
    StsPolicyInvalid,
    /// The MTA-STS policy host's certificate did not validate.
    StsWebpkiInvalid,
}

impl ResultType {
    /// The name the report uses.
    pub fn as_str(self) -> &'static str {
        match self {
            ResultType::StarttlsNotSupported => "starttls-not-supported",
            ResultType::CertificateHostMismatch => "certificate-host-mismatch",
            ResultType::CertificateExpired => "certificate-expired",
            ResultType::CertificateNotTrusted => "certificate-not-trusted",
            ResultType::ValidationFailure => "validation-failure",
            ResultType::TlsaInvalid => "tlsa-invalid",
            ResultType::DnssecInvalid => "dnssec-invalid",
            ResultType::DaneRequired => "dane-required",
            ResultType::StsPolicyFetchError => "sts-policy-fetch-error",
            ResultType::StsPolicyInvalid => "sts-policy-invalid",
            ResultType::StsWebpkiInvalid => "sts-webpki-invalid",
        }
    }
}

/// The type of a failed TLS session: `handshake` is false when STARTTLS was not offered or
/// refused; `reason` is the client's error text (rustls' wording); `dane` when the session was
/// held to TLSA records.
pub fn classify(reason: &str, handshake: bool, dane: bool) -> ResultType {
    if !handshake {
        return ResultType::StarttlsNotSupported;
    }
    let r = reason.to_ascii_lowercase();
    if r.contains("expired") {
        ResultType::CertificateExpired
    } else if dane && (r.contains("certificate") || r.contains("tlsa")) {
        ResultType::TlsaInvalid
    } else if r.contains("not valid for name") || r.contains("notvalidforname") {
        ResultType::CertificateHostMismatch
    } else if r.contains("unknownissuer")
        || r.contains("badsignature")
        || r.contains("invalid peer certificate")
    {
        ResultType::CertificateNotTrusted
    } else {
        ResultType::ValidationFailure
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        use ResultType as R;
        let cases = [
            (
                "STARTTLS not offered",
                false,
                false,
                R::StarttlsNotSupported,
            ),
            (
                "handshake failed: invalid peer certificate: certificate expired: verification time 5",
                true,
                false,
                R::CertificateExpired,
            ),
            (
                "handshake failed: invalid peer certificate: certificate not valid for name \"mx.a.test\"",
                true,
                false,
                R::CertificateHostMismatch,
            ),
            (
                "handshake failed: invalid peer certificate: UnknownIssuer",
                true,
                false,
                R::CertificateNotTrusted,
            ),
            (
                "handshake failed: invalid peer certificate: UnknownIssuer",
                true,
                true,
                R::TlsaInvalid,
            ),
            (
                "handshake failed: received fatal alert: HandshakeFailure",
                true,
                false,
                R::ValidationFailure,
            ),
        ];
        for (reason, handshake, dane, want) in cases {
            assert_eq!(classify(reason, handshake, dane), want, "{reason}");
        }
        assert_eq!(R::DnssecInvalid.as_str(), "dnssec-invalid");
        assert_eq!(
            serde_json::to_string(&R::StsWebpkiInvalid).unwrap(),
            "\"sts-webpki-invalid\""
        );
    }
}
