//! Serving TLS: the certificate and key a listener presents, reloaded without a
//! restart, and the optional client-certificate check (docs/DEPLOYMENT.md, "TLS at
//! latchkey").
//!
//! Policy:
//! - **One crypto stack**: rustls on aws-lc-rs, TLS 1.2 and 1.3 with rustls's safe
//!   defaults.
//! - **A bad file stops the start** with an error naming the setting and the file; the
//!   key must match the certificate.
//! - **Reloading never breaks serving.** [`ServerTls::reload`] (on SIGHUP, or when
//!   [`ServerTls::watch`] sees a file change) reads both files again; new handshakes get
//!   the new certificate, open connections keep theirs. A reload that fails (a half
//!   written file, a key that does not match) is logged and the old certificate stays.
//! - **Client certificates are checked, not demanded, at the handshake.** With a client
//!   CA, a certificate the client offers must chain to it or the handshake fails; a
//!   client that offers none still connects, and what it may do without one is the
//!   application's rule ([`crate::Accepted::client_certificate`]).

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, SystemTime};
use tokio_rustls::TlsAcceptor;

/// What a TLS listener is configured with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificate chain, leaf first (`tls_cert_file`).
    pub cert: PathBuf,
    /// PEM private key, PKCS#8, PKCS#1 or SEC1 (`tls_key_file`).
    pub key: PathBuf,
    /// PEM CA bundle that client certificates must chain to (`tls_client_ca_file`).
    pub client_ca: Option<PathBuf>,
}

/// Which application protocols a TLS listener offers over ALPN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocols {
    /// HTTP/1.1 only.
    Http1,
    /// HTTP/2, then HTTP/1.1.
    Http2AndHttp1,
}

/// A TLS file that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{setting} {}: {reason}", path.display())]
pub struct TlsError {
    /// The setting that names the file.
    pub setting: &'static str,
    /// The file.
    pub path: PathBuf,
    /// What is wrong with it.
    pub reason: String,
}

impl TlsError {
    fn new(setting: &'static str, path: &Path, reason: impl fmt::Display) -> Self {
        Self {
            setting,
            path: path.to_owned(),
            reason: reason.to_string(),
        }
    }
}

/// A listener's TLS: the acceptor and the certificate behind it. Cheap to clone;
/// clones share the certificate, so a reload through one is seen by all.
#[derive(Clone)]
pub struct ServerTls {
    acceptor: TlsAcceptor,
    store: Arc<CertStore>,
}

impl fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerTls")
            .field("files", &self.store.files)
            .finish_non_exhaustive()
    }
}

impl ServerTls {
    /// Reads the files and builds the acceptor offering `protocols`.
    pub fn load(files: TlsFiles, protocols: Protocols) -> Result<Self, TlsError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let (key, stamp) = read_pair(&files, &provider)?;
        let store = Arc::new(CertStore {
            current: RwLock::new(Arc::new(key)),
            stamp: Mutex::new(stamp),
            provider: provider.clone(),
            files,
        });
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::new("tls_cert_file", &store.files.cert, e))?;
        let builder = match &store.files.client_ca {
            None => builder.with_no_client_auth(),
            Some(path) => {
                let roots = read_roots(path)?;
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                        .allow_unauthenticated()
                        .build()
                        .map_err(|e| TlsError::new("tls_client_ca_file", path, e))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config = builder.with_cert_resolver(store.clone());
        config.alpn_protocols = match protocols {
            Protocols::Http1 => vec![b"http/1.1".to_vec()],
            Protocols::Http2AndHttp1 => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
        };
        Ok(Self {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            store,
        })
    }

    /// The acceptor, for a caller that runs its own accept loop (tests do).
    pub fn acceptor(&self) -> &TlsAcceptor {
        &self.acceptor
    }

    /// Reads the certificate and key again; new handshakes present them. On error the
    /// current ones stay.
    pub fn reload(&self) -> Result<(), TlsError> {
        let (key, stamp) = read_pair(&self.store.files, &self.store.provider)?;
        *self
            .store
            .current
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(key);
        *self
            .store
            .stamp
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = stamp;
        Ok(())
    }

    /// [`reload`](Self::reload), logging the outcome: for SIGHUP and the file watch.
    pub fn reload_logged(&self) {
        match self.reload() {
            Ok(()) => tracing::info!(
                cert = %self.store.files.cert.display(),
                "TLS certificate reloaded"
            ),
            Err(error) => {
                tracing::error!(%error, "TLS certificate not reloaded; the previous one stays");
            }
        }
    }

    /// Looks at the files' modification times every `every` and reloads when either
    /// changed, so a certificate renewed by a tool that writes the files in place is
    /// served without a signal. Ends when the last clone of this `ServerTls` is gone.
    pub fn watch(&self, every: Duration) -> tokio::task::JoinHandle<()> {
        let store = Arc::downgrade(&self.store);
        let acceptor = self.acceptor.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(store) = store.upgrade() else { return };
                let seen = *store.stamp.lock().unwrap_or_else(PoisonError::into_inner);
                if stamp(&store.files) != seen {
                    let tls = ServerTls {
                        acceptor: acceptor.clone(),
                        store,
                    };
                    tls.reload_logged();
                }
            }
        })
    }

    /// The leaf certificate presented now, DER-encoded.
    pub fn current_certificate(&self) -> Option<CertificateDer<'static>> {
        self.store.current().cert.first().cloned()
    }
}

/// The certificate in use and where it comes from.
struct CertStore {
    current: RwLock<Arc<CertifiedKey>>,
    /// The files' modification times when last read.
    stamp: Mutex<Stamp>,
    provider: Arc<CryptoProvider>,
    files: TlsFiles,
}

impl CertStore {
    fn current(&self) -> Arc<CertifiedKey> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl fmt::Debug for CertStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertStore")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// Modification times of the certificate and key files.
type Stamp = (Option<SystemTime>, Option<SystemTime>);

fn stamp(files: &TlsFiles) -> Stamp {
    let modified = |path: &Path| std::fs::metadata(path).and_then(|m| m.modified()).ok();
    (modified(&files.cert), modified(&files.key))
}

/// Reads the certificate chain and key and checks that they belong together.
fn read_pair(
    files: &TlsFiles,
    provider: &CryptoProvider,
) -> Result<(CertifiedKey, Stamp), TlsError> {
    // Taken first: a file written after this is seen as changed at the next look.
    let stamp = stamp(files);
    let cert_error =
        |reason: &dyn fmt::Display| TlsError::new("tls_cert_file", &files.cert, reason);
    let key_error = |reason: &dyn fmt::Display| TlsError::new("tls_key_file", &files.key, reason);
    let chain = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|e| cert_error(&e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| cert_error(&e))?;
    if chain.is_empty() {
        return Err(cert_error(&"holds no PEM certificate"));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| key_error(&e))?;
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| key_error(&e))?;
    let certified = CertifiedKey::new(chain, signing);
    certified
        .keys_match()
        .map_err(|_| key_error(&"does not match the certificate of tls_cert_file"))?;
    Ok((certified, stamp))
}

fn read_roots(path: &Path) -> Result<rustls::RootCertStore, TlsError> {
    let error = |reason: &dyn fmt::Display| TlsError::new("tls_client_ca_file", path, reason);
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path).map_err(|e| error(&e))? {
        roots
            .add(cert.map_err(|e| error(&e))?)
            .map_err(|e| error(&e))?;
    }
    if roots.is_empty() {
        return Err(error(&"holds no PEM certificate"));
    }
    Ok(roots)
}
