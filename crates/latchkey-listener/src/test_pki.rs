//! A private CA for tests (feature `test-pki`): certificates for servers and clients,
//! valid, expired or for another host, written to files the way an operator's would be.
//! Test code: it panics on any failure.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, date_time_ymd,
};
use std::path::{Path, PathBuf};

/// A CA made for one test, with its files in a temporary directory.
pub struct TestCa {
    key: KeyPair,
    cert: rcgen::Certificate,
    /// The CA certificate, PEM: what `tls_ca_file` or `tls_client_ca_file` names.
    pub pem_file: PathBuf,
    dir: tempfile::TempDir,
}

/// What a certificate is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Use {
    /// A TLS server (`tls_cert_file`).
    Server,
    /// A TLS client for mutual TLS (`tls_client_cert_file`).
    Client,
}

/// A certificate and key, PEM files in the CA's directory.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The certificate.
    pub cert_file: PathBuf,
    /// Its private key (PKCS#8).
    pub key_file: PathBuf,
    /// The certificate, DER.
    pub der: Vec<u8>,
}

impl TestCa {
    /// A new CA called `name`.
    pub fn new(name: &str) -> Self {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let pem_file = dir.path().join(format!("{name}-ca.pem"));
        std::fs::write(&pem_file, cert.pem()).unwrap();
        Self {
            key,
            cert,
            pem_file,
            dir,
        }
    }

    /// The directory the files are in.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A certificate for `names` (DNS names or IP addresses), valid now, written to
    /// `{stem}.pem` and `{stem}.key`.
    pub fn issue(&self, stem: &str, names: &[&str], usage: Use) -> Issued {
        self.make(stem, names, usage, false)
    }

    /// Like [`issue`](Self::issue), but expired since 2021.
    pub fn issue_expired(&self, stem: &str, names: &[&str], usage: Use) -> Issued {
        self.make(stem, names, usage, true)
    }

    fn make(&self, stem: &str, names: &[&str], usage: Use, expired: bool) -> Issued {
        let key = KeyPair::generate().unwrap();
        let owned: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = CertificateParams::new(owned).unwrap();
        let common = names.first().copied().unwrap_or(stem);
        params.distinguished_name.push(DnType::CommonName, common);
        params.extended_key_usages = vec![match usage {
            Use::Server => ExtendedKeyUsagePurpose::ServerAuth,
            Use::Client => ExtendedKeyUsagePurpose::ClientAuth,
        }];
        if expired {
            params.not_before = date_time_ymd(2020, 1, 1);
            params.not_after = date_time_ymd(2021, 1, 1);
        }
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        let cert_file = self.dir.path().join(format!("{stem}.pem"));
        let key_file = self.dir.path().join(format!("{stem}.key"));
        std::fs::write(&cert_file, cert.pem()).unwrap();
        std::fs::write(&key_file, key.serialize_pem()).unwrap();
        Issued {
            cert_file,
            key_file,
            der: cert.der().to_vec(),
        }
    }
}

impl Issued {
    /// A TLS acceptor presenting this certificate (HTTP/1.1 by ALPN), for a test's own
    /// accept loop.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        let files = crate::TlsFiles {
            cert: self.cert_file.clone(),
            key: self.key_file.clone(),
            client_ca: None,
        };
        crate::ServerTls::load(files, crate::Protocols::Http1)
            .unwrap()
            .acceptor()
            .clone()
    }
}
