//! Who is calling: a bearer API key, or a verified client certificate (mTLS). Each maps
//! to a tenant, written into every series as a label (replacing any value the client
//! sent) so tenants cannot spoof each other.
//!
//! Keys are kept only as SHA-256 hashes. A presented key is hashed and compared with
//! every stored hash in constant time, without stopping at a match, so neither the
//! comparison nor the position of a key shows in the answer's timing. Keys come from
//! the topology and from `keys_file`, which is read again on SIGHUP and when it
//! changes; a file that does not load leaves the keys in use as they were.
//!
//! Rotating a key without refusing a request: add the new key to the file, wait for
//! the reload (the log line `API keys reloaded`, or `weir_gateway_auth_keys` changing;
//! SIGHUP reloads at once), move clients to it, then remove the old one.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use axum::http::{header, HeaderMap, StatusCode};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio_util::sync::CancellationToken;
use weir_runtime::config::{resolve_secret, ApiKey, AuthConfig, KeysFile};

use crate::error::ApiError;

/// The SHA-256 of a key as `weir keys hash` prints it and the topology takes it.
pub fn hash_hex(key: &str) -> String {
    Sha256::digest(key.trim().as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[derive(Debug, Clone)]
struct StoredKey {
    hash: [u8; 32],
    tenant: Arc<str>,
}

#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

fn stored(k: &ApiKey) -> Result<StoredKey, String> {
    let hash = match (&k.key, &k.sha256) {
        (Some(key), None) => {
            let key = resolve_secret(key)?;
            Sha256::digest(key.trim().as_bytes()).into()
        }
        (None, Some(h)) => {
            let hex = h.strip_prefix("sha256:").unwrap_or(h);
            let mut out = [0u8; 32];
            if hex.len() != 64 {
                return Err("sha256 must be 64 hex digits".into());
            }
            for (i, o) in out.iter_mut().enumerate() {
                *o = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16)
                    .map_err(|_| "sha256 must be 64 hex digits".to_string())?;
            }
            out
        }
        _ => return Err("give exactly one of key and sha256".into()),
    };
    Ok(StoredKey {
        hash,
        tenant: Arc::from(k.tenant.as_str()),
    })
}

/// Reads a keys file: `keys: [{tenant, sha256 | key, name}]`.
pub fn read_keys_file(path: &Path) -> Result<Vec<ApiKey>, KeysError> {
    let text = std::fs::read_to_string(path).map_err(|source| KeysError::Read {
        path: path.display().to_string(),
        source,
    })?;
    parse_keys_file(&text).map_err(|message| KeysError::Invalid {
        path: path.display().to_string(),
        message,
    })
}

fn parse_keys_file(text: &str) -> Result<Vec<ApiKey>, String> {
    let de = serde_yaml::Deserializer::from_str(text);
    let f: KeysFile = serde_path_to_error::deserialize(de).map_err(|e| {
        let at = e.path().to_string();
        format!("{at}: {}", e.into_inner())
    })?;
    for (i, k) in f.keys.iter().enumerate() {
        k.check().map_err(|(f, m)| format!("keys[{i}].{f}: {m}"))?;
    }
    Ok(f.keys)
}

/// The caller as its client certificate says: with `tenant` unset the certificate was
/// verified but maps to no tenant.
#[derive(Debug, Clone)]
pub struct PeerIdentity {
    pub subject: String,
    pub tenant: Option<Arc<str>>,
}

/// Client certificate → tenant: by subject common name or DNS name, through the map;
/// with an empty map the common name is the tenant.
#[derive(Debug, Clone, Default)]
pub struct CertTenants {
    map: BTreeMap<String, String>,
}

impl CertTenants {
    pub fn new(map: BTreeMap<String, String>) -> Self {
        Self { map }
    }

    /// Names the holder of a certificate the TLS layer has already verified.
    pub fn identify(&self, der: &[u8]) -> PeerIdentity {
        let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
            return PeerIdentity {
                subject: "(unparseable certificate)".into(),
                tenant: None,
            };
        };
        let cn = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|a| a.as_str().ok())
            .map(str::to_string);
        let mut names: Vec<String> = cn.iter().cloned().collect();
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for n in &san.value.general_names {
                if let x509_parser::extensions::GeneralName::DNSName(d) = n {
                    names.push(d.to_string());
                }
            }
        }
        let subject = cert.subject().to_string();
        let tenant = if self.map.is_empty() {
            cn.filter(|c| !c.is_empty())
        } else {
            names.iter().find_map(|n| self.map.get(n).cloned())
        };
        PeerIdentity {
            subject,
            tenant: tenant.map(|t| Arc::from(t.as_str())),
        }
    }
}

pub struct Auth {
    enabled: bool,
    tenant_label: String,
    from_config: Vec<StoredKey>,
    keys_file: Option<PathBuf>,
    reload_interval: Duration,
    keys: RwLock<Arc<Vec<StoredKey>>>,
}

impl Auth {
    pub fn from_config(c: &AuthConfig) -> anyhow::Result<Self> {
        let mut from_config = Vec::new();
        for (i, k) in c.keys.iter().enumerate() {
            from_config
                .push(stored(k).map_err(|e| anyhow::anyhow!("gateway.auth.keys[{i}]: {e}"))?);
        }
        let auth = Self {
            enabled: c.enabled,
            tenant_label: c.tenant_label.clone(),
            from_config,
            keys_file: c.keys_file.clone(),
            reload_interval: c.keys_reload_interval,
            keys: RwLock::new(Arc::new(Vec::new())),
        };
        // At start a keys file that does not load is an error, not a warning.
        let n = auth
            .reload()
            .map_err(|e| anyhow::anyhow!("gateway.auth.keys_file: {e}"))?;
        tracing::info!(keys = n, "API keys loaded");
        Ok(auth)
    }

    pub fn tenant_label(&self) -> &str {
        &self.tenant_label
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Builds the key set again from the topology and the keys file; returns its size.
    pub fn reload(&self) -> Result<usize, KeysError> {
        let mut keys = self.from_config.clone();
        if let Some(path) = &self.keys_file {
            for (i, k) in read_keys_file(path)?.iter().enumerate() {
                keys.push(stored(k).map_err(|message| KeysError::Invalid {
                    path: path.display().to_string(),
                    message: format!("keys[{i}]: {message}"),
                })?);
            }
        }
        if self.enabled && keys.is_empty() {
            return Err(KeysError::Invalid {
                path: self
                    .keys_file
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
                message: "no key left: every client would be refused".into(),
            });
        }
        let n = keys.len();
        match self.keys.write() {
            Ok(mut k) => *k = Arc::new(keys),
            Err(p) => *p.into_inner() = Arc::new(keys),
        }
        metrics::gauge!("weir_gateway_auth_keys").set(n as f64);
        Ok(n)
    }

    /// Reloads the keys file on SIGHUP and whenever its modification time or size
    /// changes (polled: see `weir_runtime::tls::ServerTls::spawn_watch` for why).
    pub fn spawn_watch(
        self: &Arc<Self>,
        stop: CancellationToken,
    ) -> Option<tokio::task::JoinHandle<()>> {
        let path = self.keys_file.clone()?;
        let me = self.clone();
        Some(tokio::spawn(async move {
            let mut hup =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
            let mut seen = stamp(&path);
            loop {
                let forced = tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(me.reload_interval) => false,
                    _ = async { match hup.as_mut() { Some(h) => { h.recv().await; } None => std::future::pending().await } } => true,
                };
                let now = stamp(&path);
                if !forced && now == seen {
                    continue;
                }
                match me.reload() {
                    Ok(n) => {
                        metrics::counter!("weir_gateway_auth_reloads_total", "outcome" => "ok")
                            .increment(1);
                        tracing::info!(keys = n, file = %path.display(), sighup = forced, "API keys reloaded");
                        seen = now;
                    }
                    Err(e) => {
                        // A file caught half-written loads at the next tick.
                        metrics::counter!("weir_gateway_auth_reloads_total", "outcome" => "failed")
                            .increment(1);
                        tracing::warn!(error = %e, "keys file changed but does not load; keeping the keys in use");
                    }
                }
            }
        }))
    }

    fn lookup(&self, presented: &str) -> Option<Arc<str>> {
        let hash: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let keys = match self.keys.read() {
            Ok(k) => k.clone(),
            Err(p) => p.into_inner().clone(),
        };
        let mut found = None;
        for k in keys.iter() {
            // Every stored hash is compared; a match does not end the loop.
            if bool::from(k.hash.ct_eq(&hash)) {
                found = Some(k.tenant.clone());
            }
        }
        found
    }

    /// The caller's tenant (`None` when auth is off), or 401/403. A client certificate
    /// that names a tenant is enough; otherwise `Authorization: Bearer KEY` (or
    /// InfluxDB's `Token KEY`) must carry a known key.
    pub fn tenant(
        &self,
        headers: &HeaderMap,
        peer: Option<&PeerIdentity>,
    ) -> Result<Option<Arc<str>>, ApiError> {
        if !self.enabled {
            return Ok(None);
        }
        if let Some(p) = peer {
            match &p.tenant {
                Some(t) => return Ok(Some(t.clone())),
                None if headers.get(header::AUTHORIZATION).is_none() => {
                    metrics::counter!("weir_gateway_auth_failures_total", "reason" => "certificate_unmapped").increment(1);
                    return Err(ApiError::new(
                        StatusCode::FORBIDDEN,
                        format!(
                            "client certificate {} maps to no tenant (gateway.tls.client_auth.tenants)",
                            p.subject
                        ),
                    ));
                }
                None => {}
            }
        }
        let fail = |reason: &'static str, msg: &str| {
            metrics::counter!("weir_gateway_auth_failures_total", "reason" => reason).increment(1);
            ApiError::unauthorized(msg)
        };
        let value = headers
            .get(header::AUTHORIZATION)
            .ok_or_else(|| {
                fail(
                    "missing",
                    "missing Authorization header: send `Authorization: Bearer <api key>`",
                )
            })?
            .to_str()
            .map_err(|_| fail("malformed", "Authorization header is not valid text"))?;
        let key = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("Token "))
            .ok_or_else(|| {
                fail(
                    "malformed",
                    "Authorization must be `Bearer <api key>` or `Token <api key>`",
                )
            })?
            .trim();
        self.lookup(key)
            .map(Some)
            .ok_or_else(|| fail("invalid_key", "invalid API key"))
    }
}

fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(keys: Vec<ApiKey>, file: Option<PathBuf>) -> AuthConfig {
        AuthConfig {
            enabled: true,
            keys,
            keys_file: file,
            ..AuthConfig::default()
        }
    }

    fn bearer(k: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            format!("Bearer {k}").parse().unwrap(),
        );
        h
    }

    #[test]
    fn keys_by_value_and_by_hash_name_their_tenant() {
        let a = Auth::from_config(&cfg(
            vec![
                ApiKey {
                    tenant: "acme".into(),
                    key: Some("acme-secret-key-0001".into()),
                    sha256: None,
                    name: None,
                },
                ApiKey {
                    tenant: "globex".into(),
                    key: None,
                    sha256: Some(format!("sha256:{}", hash_hex("globex-secret-key-01"))),
                    name: None,
                },
            ],
            None,
        ))
        .unwrap();
        let t = |k| a.tenant(&bearer(k), None).map(|t| t.map(|t| t.to_string()));
        assert_eq!(t("acme-secret-key-0001").unwrap().as_deref(), Some("acme"));
        assert_eq!(
            t("globex-secret-key-01").unwrap().as_deref(),
            Some("globex")
        );
        assert_eq!(t("globex-secret-key-02").unwrap_err().status, 401);
        assert_eq!(a.tenant(&HeaderMap::new(), None).unwrap_err().status, 401);
    }

    #[test]
    fn a_keys_file_reloads_and_a_broken_one_keeps_the_old_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.yaml");
        let write = |keys: &[(&str, &str)]| {
            let mut s = String::from("keys:\n");
            for (t, k) in keys {
                s += &format!("  - tenant: {t}\n    sha256: {}\n", hash_hex(k));
            }
            std::fs::write(&path, s).unwrap();
        };
        write(&[("acme", "old-key-of-acme-0001")]);
        let a = Auth::from_config(&cfg(vec![], Some(path.clone()))).unwrap();
        assert!(a.tenant(&bearer("old-key-of-acme-0001"), None).is_ok());
        write(&[
            ("acme", "old-key-of-acme-0001"),
            ("acme", "new-key-of-acme-0002"),
        ]);
        assert_eq!(a.reload().unwrap(), 2);
        assert!(a.tenant(&bearer("new-key-of-acme-0002"), None).is_ok());
        write(&[("acme", "new-key-of-acme-0002")]);
        a.reload().unwrap();
        assert_eq!(
            a.tenant(&bearer("old-key-of-acme-0001"), None)
                .unwrap_err()
                .status,
            401
        );
        std::fs::write(&path, "keys:\n  - tenant: acme\n    sha256: nothex\n").unwrap();
        assert!(a.reload().is_err());
        assert!(a.tenant(&bearer("new-key-of-acme-0002"), None).is_ok());
        std::fs::write(&path, "keys: []\n").unwrap();
        assert!(a.reload().unwrap_err().to_string().contains("no key left"));
        assert!(a.tenant(&bearer("new-key-of-acme-0002"), None).is_ok());
    }

    #[test]
    fn a_certificate_with_a_tenant_needs_no_key() {
        let a = Auth::from_config(&cfg(
            vec![ApiKey {
                tenant: "acme".into(),
                key: Some("acme-secret-key-0001".into()),
                sha256: None,
                name: None,
            }],
            None,
        ))
        .unwrap();
        let peer = PeerIdentity {
            subject: "CN=edge-1".into(),
            tenant: Some(Arc::from("edge")),
        };
        let t = a.tenant(&HeaderMap::new(), Some(&peer)).unwrap();
        assert_eq!(t.as_deref(), Some("edge"));
        let unmapped = PeerIdentity {
            subject: "CN=stranger".into(),
            tenant: None,
        };
        let e = a.tenant(&HeaderMap::new(), Some(&unmapped)).unwrap_err();
        assert_eq!(e.status, 403);
        assert!(e.message.contains("CN=stranger"), "{}", e.message);
    }
}
