use std::collections::BTreeMap;

use serde::Deserialize;

/// Where a consumer group writes.
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
    },
    #[serde(rename = "clickhouse")]
    ClickHouse {
        url: String,
        database: String,
    },
    Alertmanager {
        url: String,
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
            | Self::Alertmanager { url } => url,
        }
    }

    pub(super) fn validate(&self) -> Result<(), (String, String)> {
        let url = self.url();
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(("url".into(), format!("{url:?} is not an http(s) URL")));
        }
        if let Self::PrometheusRemoteWrite {
            basic_auth,
            bearer_token,
            ..
        } = self
        {
            if basic_auth.is_some() && bearer_token.is_some() {
                return Err((
                    "bearer_token".into(),
                    "give basic_auth or bearer_token, not both".into(),
                ));
            }
        }
        Ok(())
    }
}
