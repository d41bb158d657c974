use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// A listener's TLS: PEM certificate chain and key, re-read when they change.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsServerOptions {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// How often the files are checked for a change.
    #[serde(with = "humantime_serde", default = "default_reload")]
    pub reload_interval: Duration,
    /// Client certificates (mTLS): verified against `ca_file`, and mapped to a tenant.
    #[serde(default)]
    pub client_auth: Option<ClientAuthOptions>,
}

fn default_reload() -> Duration {
    crate::tls::DEFAULT_RELOAD_INTERVAL
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientAuthOptions {
    /// CA bundle client certificates must chain to.
    pub ca_file: PathBuf,
    #[serde(default)]
    pub mode: ClientAuthMode,
    /// Subject common name (or a DNS name of the certificate) → tenant. Empty: the
    /// common name is the tenant. A verified certificate that maps to no tenant is
    /// refused with 403.
    #[serde(default)]
    pub tenants: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuthMode {
    /// Every connection must present a certificate from `ca_file`.
    #[default]
    Required,
    /// A certificate is verified when given; without one, API keys still work.
    Optional,
}

/// What an HTTPS client verifies and presents.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsClientOptions {
    /// CA bundle the server's certificate must chain to; else the system's roots.
    pub ca_file: Option<PathBuf>,
    /// Client certificate and key, for servers that ask for one.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// Accept any server certificate. For tests only; says so in the log at start.
    pub insecure_skip_verify: bool,
}

impl TlsServerOptions {
    pub(super) fn validate(&self) -> Result<(), (String, String)> {
        if self.reload_interval.is_zero() {
            return Err(("reload_interval".into(), "must be above zero".into()));
        }
        if let Some(c) = &self.client_auth {
            for (subject, tenant) in &c.tenants {
                if tenant.is_empty() {
                    return Err((
                        format!("client_auth.tenants.{subject}"),
                        "must not be empty".into(),
                    ));
                }
            }
        }
        Ok(())
    }
}

impl TlsClientOptions {
    pub(super) fn validate(&self) -> Result<(), (String, String)> {
        if self.cert_file.is_some() != self.key_file.is_some() {
            return Err((
                "tls.cert_file".into(),
                "cert_file and key_file go together".into(),
            ));
        }
        if self.insecure_skip_verify && self.ca_file.is_some() {
            return Err((
                "tls.insecure_skip_verify".into(),
                "give ca_file or insecure_skip_verify, not both".into(),
            ));
        }
        Ok(())
    }
}
