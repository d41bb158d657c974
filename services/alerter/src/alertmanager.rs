//! Alertmanager's v2 API client: `POST /api/v2/alerts` to every configured Alertmanager
//! (they deduplicate among themselves, as with Prometheus). A send succeeds when one of
//! them accepted it; otherwise the alerts stay due and the caller retries.
use std::time::Duration;

use crate::notify::AmAlert;

#[derive(Debug, thiserror::Error)]
pub enum AmError {
    #[error("no Alertmanager configured")]
    NoTarget,
    #[error("Alertmanager {url}: {source}")]
    Http { url: String, source: reqwest::Error },
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
}

impl AlertmanagerClient {
    /// `urls`: base URLs such as `http://127.0.0.1:9093`.
    pub fn new(urls: Vec<String>, timeout: Duration) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder().timeout(timeout).build()?;
        let urls = urls
            .into_iter()
            .map(|u| u.trim_end_matches('/').to_string())
            .collect();
        Ok(Self { http, urls })
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
            let r = self
                .http
                .post(&url)
                .header("content-type", "application/json")
                .body(body.clone())
                .send()
                .await;
            let result = match r {
                Err(source) => Err(AmError::Http { url, source }),
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
