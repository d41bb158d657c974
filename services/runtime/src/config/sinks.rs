use std::collections::BTreeMap;

use serde::Deserialize;

use super::tls::TlsClientOptions;

/// Where a consumer group writes. Every sink speaks HTTP(S): `tls` says what its client
/// trusts and presents; secrets may be `env:VAR` or `file:PATH`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum SinkSpec {
    /// Any Prometheus remote-write receiver (VictoriaMetrics, Prometheus, Mimir, ...).
    PrometheusRemoteWrite {
        url: String,
        /// Extra headers on every request (e.g. `X-Scope-OrgID` for a tenant).
        #[serde(default)]
        headers: BTreeMap<String, String>,
        #[serde(default)]
        basic_auth: Option<BasicAuth>,
        /// The token, or `env:VAR`.
        #[serde(default)]
        bearer_token: Option<String>,
        #[serde(default)]
        tls: TlsClientOptions,
    },
    #[serde(rename = "clickhouse")]
    ClickHouse {
        url: String,
        database: String,
        #[serde(default)]
        user: Option<String>,
        /// The password, or `env:VAR`.
        #[serde(default)]
        password: Option<String>,
        #[serde(default)]
        tls: TlsClientOptions,
    },
    Alertmanager {
        url: String,
        #[serde(default)]
        basic_auth: Option<BasicAuth>,
        #[serde(default)]
        bearer_token: Option<String>,
        #[serde(default)]
        tls: TlsClientOptions,
    },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    pub username: String,
    /// The password, or `env:VAR`.
    pub password: String,
}

impl SinkSpec {
    pub fn url(&self) -> &str {
        match self {
            Self::PrometheusRemoteWrite { url, .. }
            | Self::ClickHouse { url, .. }
            | Self::Alertmanager { url, .. } => url,
        }
    }

    pub fn tls(&self) -> &TlsClientOptions {
        match self {
            Self::PrometheusRemoteWrite { tls, .. }
            | Self::ClickHouse { tls, .. }
            | Self::Alertmanager { tls, .. } => tls,
        }
    }

    pub(super) fn validate(&self) -> Result<(), (String, String)> {
        let http = |at: &str, url: &str| {
            if url.starts_with("http://") || url.starts_with("https://") {
                Ok(())
            } else {
                Err((at.to_string(), format!("{url:?} is not an http(s) URL")))
            }
        };
        http("url", self.url())?;
        self.tls().validate()?;
        let secret = |at: &str, v: Option<&String>| match v {
            Some(v) => super::resolve_secret(v)
                .map(|_| ())
                .map_err(|m| (at.to_string(), m)),
            None => Ok(()),
        };
        let (basic, bearer) = match self {
            Self::PrometheusRemoteWrite {
                basic_auth,
                bearer_token,
                ..
            }
            | Self::Alertmanager {
                basic_auth,
                bearer_token,
                ..
            } => (basic_auth.as_ref(), bearer_token.as_ref()),
            Self::ClickHouse { user, password, .. } => {
                if password.is_some() && user.is_none() {
                    return Err(("password".into(), "a password needs a user".into()));
                }
                secret("password", password.as_ref())?;
                (None, None)
            }
        };
        if basic.is_some() && bearer.is_some() {
            return Err((
                "bearer_token".into(),
                "give basic_auth or bearer_token, not both".into(),
            ));
        }
        secret("basic_auth.password", basic.map(|b| &b.password))?;
        secret("bearer_token", bearer)?;
        Ok(())
    }
}
