//! Test certificates: a throw-away CA and leaf certificates it signs, written as PEM files.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};

/// A CA certificate file and one (cert, key) file pair per requested name list.
pub struct TestCerts {
    pub ca: PathBuf,
    pub leaves: Vec<(PathBuf, PathBuf)>,
}

/// Makes a CA and one leaf per entry of `names` (each leaf valid for its names), in `dir`.
pub fn make_certs(dir: &Path, names: &[&[&str]]) -> TestCerts {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "mta test CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("CA key"))
        .expect("CA certificate");
    let ca_path = dir.join("ca.pem");
    std::fs::write(&ca_path, ca.pem()).expect("write CA");
    let mut leaves = Vec::new();
    for (i, leaf_names) in names.iter().enumerate() {
        let sans: Vec<String> = leaf_names.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(sans).expect("leaf params");
        params
            .distinguished_name
            .push(DnType::CommonName, leaf_names[0]);
        let key = KeyPair::generate().expect("leaf key");
        let cert = params.signed_by(&key, &ca).expect("leaf certificate");
        let cert_path = dir.join(format!("leaf-{i}.pem"));
        let key_path = dir.join(format!("leaf-{i}.key"));
        std::fs::write(&cert_path, cert.pem()).expect("write cert");
        std::fs::write(&key_path, key.serialize_pem()).expect("write key");
        leaves.push((cert_path, key_path));
    }
    TestCerts {
        ca: ca_path,
        leaves,
    }
}
