//! TLS for every role, with rustls and the `ring` provider named explicitly (no
//! process-wide default to install or forget):
//!
//! - [`ServerTls`]: a listener's certificate, key and optional client CA, read from
//!   files and re-read when they change, so a renewed certificate (cert-manager, a
//!   rotated Kubernetes secret) takes effect for new connections without a restart;
//!   open connections keep the configuration they started with.
//! - [`client_config`]: what an HTTP sink or any other client verifies and presents:
//!   a CA bundle (else the system's roots), a client certificate, and an explicit
//!   `insecure_skip_verify`.
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
use tokio_util::sync::CancellationToken;

use crate::config::{ClientAuthMode, TlsClientOptions, TlsServerOptions};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{what} {path}: {source}")]
    Pem {
        what: &'static str,
        path: String,
        source: rustls::pki_types::pem::Error,
    },
    #[error("{what} {path} holds no {expected}")]
    Empty {
        what: &'static str,
        path: String,
        expected: &'static str,
    },
    #[error("{0}")]
    Rustls(#[from] rustls::Error),
    #[error("client CA {path}: {source}")]
    Verifier {
        path: String,
        source: rustls::server::VerifierBuilderError,
    },
}

/// The one crypto provider weir uses.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Makes [`provider`] the process default, for HTTP clients built without our config
/// (reqwest is built without a provider of its own, and panics without one). Every
/// binary calls it first; calling it again does nothing.
pub fn install_default_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn certs(what: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = |source| TlsError::Pem {
        what,
        path: path.display().to_string(),
        source,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(pem)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem)?;
    if certs.is_empty() {
        return Err(TlsError::Empty {
            what,
            path: path.display().to_string(),
            expected: "PEM certificate",
        });
    }
    Ok(certs)
}

fn key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|source| TlsError::Pem {
        what: "private key",
        path: path.display().to_string(),
        source,
    })
}

fn roots(what: &'static str, path: &Path) -> Result<RootCertStore, TlsError> {
    let mut store = RootCertStore::empty();
    for c in certs(what, path)? {
        store.add(c)?;
    }
    Ok(store)
}

/// A server configuration built from the files as they are now. HTTP/2 and HTTP/1.1
/// are offered by ALPN.
pub fn server_config(o: &TlsServerOptions) -> Result<ServerConfig, TlsError> {
    let builder =
        ServerConfig::builder_with_provider(provider()).with_safe_default_protocol_versions()?;
    let builder = match &o.client_auth {
        Some(ca) => {
            let roots = Arc::new(roots("client CA", &ca.ca_file)?);
            let v = WebPkiClientVerifier::builder_with_provider(roots, provider());
            let v = match ca.mode {
                ClientAuthMode::Required => v,
                ClientAuthMode::Optional => v.allow_unauthenticated(),
            };
            let v = v.build().map_err(|source| TlsError::Verifier {
                path: ca.ca_file.display().to_string(),
                source,
            })?;
            builder.with_client_cert_verifier(v)
        }
        None => builder.with_no_client_auth(),
    };
    let mut cfg =
        builder.with_single_cert(certs("certificate", &o.cert_file)?, key(&o.key_file)?)?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(cfg)
}

/// A listener's TLS configuration, re-read when one of its files changes.
#[derive(Clone)]
pub struct ServerTls {
    options: TlsServerOptions,
    current: Arc<RwLock<Arc<ServerConfig>>>,
}

impl ServerTls {
    pub fn load(options: &TlsServerOptions) -> Result<Self, TlsError> {
        let cfg = server_config(options)?;
        Ok(Self {
            options: options.clone(),
            current: Arc::new(RwLock::new(Arc::new(cfg))),
        })
    }

    /// The configuration new connections get.
    pub fn current(&self) -> Arc<ServerConfig> {
        match self.current.read() {
            Ok(c) => c.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    fn files(&self) -> Vec<PathBuf> {
        let mut f = vec![
            self.options.cert_file.clone(),
            self.options.key_file.clone(),
        ];
        if let Some(ca) = &self.options.client_auth {
            f.push(ca.ca_file.clone());
        }
        f
    }

    /// Re-reads the files now. A set that does not load (a certificate written before
    /// its key, say) leaves the working configuration in place.
    pub fn reload(&self) -> Result<(), TlsError> {
        let cfg = server_config(&self.options)?;
        match self.current.write() {
            Ok(mut c) => *c = Arc::new(cfg),
            Err(p) => *p.into_inner() = Arc::new(cfg),
        }
        Ok(())
    }

    /// Polls the files' modification times every `options.reload_interval` and reloads
    /// when one changed. Polling, not inotify: Kubernetes updates a mounted secret by
    /// swapping a symlink, which watches on the file itself miss, and one `stat` per
    /// file every few seconds costs nothing.
    pub fn spawn_watch(&self, stop: CancellationToken) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            let mut seen = mtimes(&me.files());
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(me.options.reload_interval) => {}
                }
                let now = mtimes(&me.files());
                if now == seen {
                    continue;
                }
                match me.reload() {
                    Ok(()) => {
                        metrics::counter!("weir_tls_reloads_total", "outcome" => "ok").increment(1);
                        tracing::info!(cert = %me.options.cert_file.display(), "TLS certificate reloaded");
                        seen = now;
                    }
                    Err(e) => {
                        // Tried again at the next tick: the other file may be on its way.
                        metrics::counter!("weir_tls_reloads_total", "outcome" => "failed")
                            .increment(1);
                        tracing::warn!(error = %e, "TLS files changed but do not load; keeping the previous certificate");
                    }
                }
            }
        })
    }
}

fn mtimes(files: &[PathBuf]) -> Vec<Option<SystemTime>> {
    files
        .iter()
        .map(|f| std::fs::metadata(f).and_then(|m| m.modified()).ok())
        .collect()
}

/// What a client verifies and presents. Without a CA bundle the system's roots
/// (`/etc/ssl/certs`) are trusted. ALPN is left to the HTTP client (hyper-rustls
/// refuses a config that already has it).
pub fn client_config(o: &TlsClientOptions) -> Result<ClientConfig, TlsError> {
    let builder =
        ClientConfig::builder_with_provider(provider()).with_safe_default_protocol_versions()?;
    let builder = if o.insecure_skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(provider())))
    } else {
        let store = match &o.ca_file {
            Some(path) => roots("CA bundle", path)?,
            None => {
                let mut store = RootCertStore::empty();
                let found = rustls_native_certs::load_native_certs();
                for c in found.certs {
                    // One unparseable system certificate must not leave a client with none.
                    let _ = store.add(c);
                }
                store
            }
        };
        builder.with_root_certificates(store)
    };
    let cfg = match (&o.cert_file, &o.key_file) {
        (Some(c), Some(k)) => {
            builder.with_client_auth_cert(certs("client certificate", c)?, key(k)?)?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(cfg)
}

/// `insecure_skip_verify`: accepts any server certificate, still checking that the
/// handshake is signed by the key in it.
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A default for `reload_interval`.
pub const DEFAULT_RELOAD_INTERVAL: Duration = Duration::from_secs(10);
