//! What every HTTP sink shares: the client's TLS (CA bundle, client certificate,
//! `insecure_skip_verify`), its credentials, and URLs made safe to print.
use crate::config::{resolve_secret, BasicAuth, TlsClientOptions};
use crate::tls::{client_config, TlsError};

/// A reqwest client builder whose TLS is `tls` (see [`crate::tls::client_config`]).
pub fn client_builder(
    tls: &TlsClientOptions,
    what: &str,
) -> Result<reqwest::ClientBuilder, TlsError> {
    if tls.insecure_skip_verify {
        tracing::warn!(
            sink = what,
            "tls.insecure_skip_verify is on: the server's certificate is not checked"
        );
    }
    let mut cfg = client_config(tls)?;
    // A preconfigured config is used as is: reqwest sets no ALPN of its own on it.
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(reqwest::Client::builder().tls_backend_preconfigured(cfg))
}

/// Basic auth or a bearer token, secrets resolved (`env:VAR`, `file:PATH`).
#[derive(Clone, Default)]
pub enum Credentials {
    #[default]
    None,
    Basic(String, String),
    Bearer(String),
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::None => "none",
            Self::Basic(..) => "basic (redacted)",
            Self::Bearer(_) => "bearer (redacted)",
        })
    }
}

impl Credentials {
    pub fn from_config(basic: Option<&BasicAuth>, bearer: Option<&String>) -> Result<Self, String> {
        Ok(match (basic, bearer) {
            (Some(b), _) => Self::Basic(b.username.clone(), resolve_secret(&b.password)?),
            (None, Some(t)) => Self::Bearer(resolve_secret(t)?),
            (None, None) => Self::None,
        })
    }

    pub fn apply(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match self {
            Self::None => req,
            Self::Basic(u, p) => req.basic_auth(u, Some(p)),
            Self::Bearer(t) => req.bearer_auth(t),
        }
    }
}

/// `url` without credentials in it (`https://user:pass@host/` → `https://host/`) nor a
/// query string (tokens travel there too): what logs and `/readyz` may print.
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((s, r)) => (Some(s), r),
        None => (None, url),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let path = path.split_once('?').map_or(path, |(p, _)| p);
    match scheme {
        Some(s) => format!("{s}://{host}{path}"),
        None => format!("{host}{path}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_credentials_and_query() {
        assert_eq!(
            redact_url("https://u:p@vm:8428/api/v1/write?token=x"),
            "https://vm:8428/api/v1/write"
        );
        assert_eq!(redact_url("http://ch:8123"), "http://ch:8123");
        assert_eq!(redact_url("http://a@b@host/x"), "http://host/x");
    }
}
