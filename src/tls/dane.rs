//! DANE certificate checks for outbound SMTP (RFC 7672, RFC 6698, RFC 7671).
//!
//! What it does: [`dane_config`] builds a rustls client configuration whose certificate check
//! is a host's TLSA records: a DANE-EE record (usage 3) matches the server's own certificate,
//! with neither its name nor its dates checked (RFC 7672 3.1.1); a DANE-TA record (usage 2)
//! matches a certificate the server sends in its chain, which then is the only trust anchor
//! the chain is verified against, with the host name and dates checked (RFC 7672 3.1.2).
//! Selectors 0 (whole certificate) and 1 (SubjectPublicKeyInfo) and matching types 0 (exact),
//! 1 (SHA-256) and 2 (SHA-512) are supported. [`usable`] tells which records can be used at
//! all: PKIX-TA and PKIX-EE (usages 0 and 1) and unknown values are unusable (RFC 7672 3.1.3).
//!
//! What it does not do: DNS (the records are given), a DANE-TA anchor that the server does not
//! send in its chain, DNSSEC.
//!
//! Invariants: a certificate passes only when some usable record matches it; the handshake
//! signatures are always checked.

use std::sync::Arc;

use hickory_proto::rr::rdata::TLSA;
use hickory_proto::rr::rdata::tlsa::{CertUsage, Matching, Selector};
use rustls::DigitallySignedStruct;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

use super::{TlsError, VERSIONS, provider};

/// True when a TLSA record can be used by an SMTP client (RFC 7672 3.1.3).
pub fn usable(r: &TLSA) -> bool {
    matches!(r.cert_usage, CertUsage::DaneTa | CertUsage::DaneEe)
        && matches!(r.selector, Selector::Full | Selector::Spki)
        && matches!(
            r.matching,
            Matching::Raw | Matching::Sha256 | Matching::Sha512
        )
}

/// A client configuration that accepts exactly the certificates `records` vouch for (the
/// unusable ones are ignored; with none usable, nothing is accepted).
pub fn dane_config(records: Vec<TLSA>) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let provider = provider();
    let records: Vec<TLSA> = records.into_iter().filter(usable).collect();
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(VERSIONS)
        .map_err(|err| TlsError::Rustls {
            what: "DANE client configuration".to_owned(),
            err,
        })?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(DaneVerifier { records, provider }))
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Checks a server's chain against TLSA records.
#[derive(Debug)]
struct DaneVerifier {
    records: Vec<TLSA>,
    provider: Arc<CryptoProvider>,
}

/// True when `record` matches certificate `der` (RFC 6698 2.1.2, 2.1.3).
pub fn matches(record: &TLSA, der: &CertificateDer<'_>) -> bool {
    let spki;
    let selected: &[u8] = match record.selector {
        Selector::Full => der.as_ref(),
        Selector::Spki => {
            let Ok(cert) = webpki::EndEntityCert::try_from(der) else {
                return false;
            };
            spki = cert.subject_public_key_info();
            spki.as_ref()
        }
        _ => return false,
    };
    let digest = |alg| ring::digest::digest(alg, selected);
    match record.matching {
        Matching::Raw => selected == record.cert_data.as_slice(),
        Matching::Sha256 => digest(&ring::digest::SHA256).as_ref() == record.cert_data.as_slice(),
        Matching::Sha512 => digest(&ring::digest::SHA512).as_ref() == record.cert_data.as_slice(),
        _ => false,
    }
}

impl DaneVerifier {
    /// DANE-TA: the chain verified against an anchor the server sent and a record matches.
    fn trust_anchor_path(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        now: UnixTime,
    ) -> bool {
        let ta_records = || {
            self.records
                .iter()
                .filter(|r| r.cert_usage == CertUsage::DaneTa)
        };
        for cert in intermediates {
            if !ta_records().any(|r| matches(r, cert)) {
                continue;
            }
            let mut roots = rustls::RootCertStore::empty();
            if roots.add(cert.clone().into_owned()).is_err() {
                continue;
            }
            let Ok(verifier) =
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
                    .build()
            else {
                continue;
            };
            if verifier
                .verify_server_cert(end_entity, intermediates, server_name, &[], now)
                .is_ok()
            {
                return true;
            }
        }
        false
    }
}

impl ServerCertVerifier for DaneVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let ee = self
            .records
            .iter()
            .filter(|r| r.cert_usage == CertUsage::DaneEe)
            .any(|r| matches(r, end_entity));
        if ee || self.trust_anchor_path(end_entity, intermediates, server_name, now) {
            return Ok(ServerCertVerified::assertion());
        }
        Err(rustls::Error::General(
            "no TLSA record matches the server's certificate (DANE)".to_owned(),
        ))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algs = &self.provider.signature_verification_algorithms;
        verify_tls12_signature(message, cert, dss, algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algs = &self.provider.signature_verification_algorithms;
        verify_tls13_signature(message, cert, dss, algs)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};

    fn record(usage: u8, selector: u8, matching: u8, data: Vec<u8>) -> TLSA {
        TLSA::new(usage.into(), selector.into(), matching.into(), data)
    }

    fn sha(alg: &'static ring::digest::Algorithm, data: &[u8]) -> Vec<u8> {
        ring::digest::digest(alg, data).as_ref().to_vec()
    }

    /// A CA and a leaf for `name` signed by it.
    fn chain(name: &str) -> (CertificateDer<'static>, CertificateDer<'static>) {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        let leaf_key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec![name.to_owned()])
            .unwrap()
            .signed_by(&leaf_key, &ca)
            .unwrap();
        (ca.der().clone(), leaf.der().clone())
    }

    fn verify(records: Vec<TLSA>, chain: &[CertificateDer<'static>], name: &str) -> bool {
        let v = DaneVerifier {
            records: records.into_iter().filter(usable).collect(),
            provider: provider(),
        };
        let name = ServerName::try_from(name.to_owned()).unwrap();
        v.verify_server_cert(&chain[0], &chain[1..], &name, &[], UnixTime::now())
            .is_ok()
    }

    #[test]
    fn selectors_and_matching_types() {
        let (_, leaf) = chain("mx.test");
        let spki = webpki::EndEntityCert::try_from(&leaf)
            .unwrap()
            .subject_public_key_info()
            .as_ref()
            .to_vec();
        let full = leaf.as_ref().to_vec();
        let cases = [
            (record(3, 0, 0, full.clone()), true),
            (record(3, 0, 1, sha(&ring::digest::SHA256, &full)), true),
            (record(3, 0, 2, sha(&ring::digest::SHA512, &full)), true),
            (record(3, 1, 0, spki.clone()), true),
            (record(3, 1, 1, sha(&ring::digest::SHA256, &spki)), true),
            (record(3, 1, 2, sha(&ring::digest::SHA512, &spki)), true),
            (record(3, 1, 1, sha(&ring::digest::SHA256, &full)), false),
            (record(3, 0, 1, vec![0; 32]), false),
            (record(3, 2, 1, sha(&ring::digest::SHA256, &full)), false),
            (record(3, 0, 3, full.clone()), false),
        ];
        for (i, (r, want)) in cases.iter().enumerate() {
            assert_eq!(matches(r, &leaf), *want, "case {i}: {r:?}");
        }
    }

    #[test]
    fn usages() {
        let data = vec![0; 32];
        assert!(usable(&record(2, 0, 1, data.clone())));
        assert!(usable(&record(3, 1, 1, data.clone())));
        assert!(!usable(&record(0, 0, 1, data.clone())), "PKIX-TA");
        assert!(!usable(&record(1, 0, 1, data.clone())), "PKIX-EE");
        assert!(!usable(&record(3, 7, 1, data.clone())));
        assert!(!usable(&record(3, 0, 9, data)));
    }

    #[test]
    fn end_entity_and_trust_anchor_records() {
        let (ca, leaf) = chain("mx.test");
        let ee = record(3, 0, 1, sha(&ring::digest::SHA256, leaf.as_ref()));
        let ta = record(2, 0, 1, sha(&ring::digest::SHA256, ca.as_ref()));
        // DANE-EE: the certificate itself, whatever name was asked for.
        assert!(verify(
            vec![ee.clone()],
            std::slice::from_ref(&leaf),
            "mx.test"
        ));
        assert!(verify(vec![ee], std::slice::from_ref(&leaf), "other.test"));
        // DANE-TA: the anchor must be in the chain, and the name must match.
        assert!(verify(
            vec![ta.clone()],
            &[leaf.clone(), ca.clone()],
            "mx.test"
        ));
        assert!(!verify(
            vec![ta.clone()],
            &[leaf.clone(), ca.clone()],
            "other.test"
        ));
        assert!(!verify(vec![ta], std::slice::from_ref(&leaf), "mx.test"));
        // The same record as PKIX-EE is unusable: nothing matches.
        let pkix = record(1, 0, 1, sha(&ring::digest::SHA256, leaf.as_ref()));
        assert!(!verify(vec![pkix], &[leaf], "mx.test"));
    }
}
