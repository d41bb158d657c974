//! Alertmanager's v2 API client: `POST /api/v2/alerts` to every configured Alertmanager
//! (they deduplicate among themselves, as with Prometheus). A send succeeds when one of
//! them accepted it; otherwise the alerts stay due and the caller retries.
use std::time::Duration;

use weir_runtime::config::{SinkSpec, TlsClientOptions};
use weir_runtime::http::{redact_url, Credentials};

use crate::notify::AmAlert;

#[derive(Debug, thiserror::Error)]
pub enum AmError {
    #[error("no Alertmanager configured")]
    NoTarget,
    #[error("Alertmanager {url}: {message}")]
    Http { url: String, message: String },
    #[error("Alertmanager {url} answered {status}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
    },
    #[error("encoding alerts: {0}")]
    Encode(#[from] serde_json::Error),
}

pub struct AlertmanagerClient {
    http: reqwest::Client,
    urls: Vec<String>,
    credentials: Credentials,
}

impl AlertmanagerClient {
    /// `urls`: base URLs such as `http://127.0.0.1:9093`, all with the same TLS and
    /// credentials.
    pub fn new(
        urls: Vec<String>,
        timeout: Duration,
        tls: &TlsClientOptions,
        credentials: Credentials,
    ) -> anyhow::Result<Self> {
        let http = weir_runtime::http::client_builder(tls, "alertmanager")?
            .timeout(timeout)
            .build()?;
        let urls = urls
            .into_iter()
            .map(|u| u.trim_end_matches('/').to_string())
            .collect();
        Ok(Self {
            http,
            urls,
            credentials,
        })
    }

    /// The client of an `alertmanager` sink.
    pub fn of_sink(spec: &SinkSpec, timeout: Duration) -> anyhow::Result<Self> {
        let SinkSpec::Alertmanager {
            url,
            basic_auth,
            bearer_token,
            tls,
        } = spec
        else {
            anyhow::bail!("not an alertmanager sink");
        };
        let creds = Credentials::from_config(basic_auth.as_ref(), bearer_token.as_ref())
            .map_err(anyhow::Error::msg)?;
        Self::new(vec![url.clone()], timeout, tls, creds)
    }

    /// Posts alerts to every Alertmanager; `Ok` when at least one accepted them.
    pub async fn send(&self, alerts: &[AmAlert]) -> Result<(), AmError> {
        if alerts.is_empty() {
            return Ok(());
        }
        let body = serde_json::to_vec(alerts)?;
        let mut last = Err(AmError::NoTarget);
        for base in &self.urls {
            let url = format!("{base}/api/v2/alerts");
            let req = self
                .http
                .post(&url)
                .header("content-type", "application/json")
                .body(body.clone());
            let r = self.credentials.apply(req).send().await;
            // Only the redacted URL is kept: errors reach logs and /readyz.
            let url = redact_url(&url);
            let result = match r {
                Err(e) => Err(AmError::Http {
                    url,
                    message: e.without_url().to_string(),
                }),
                Ok(resp) if resp.status().is_success() => Ok(()),
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let body = resp.text().await.unwrap_or_default();
                    Err(AmError::Status { url, status, body })
                }
            };
            match result {
                Ok(()) => last = Ok(()),
                Err(e) => {
                    tracing::warn!(error = %e, alerts = alerts.len(), "sending alerts");
                    if last.is_err() {
                        last = Err(e);
                    }
                }
            }
        }
        last
    }
}
