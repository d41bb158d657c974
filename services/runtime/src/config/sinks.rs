use std::collections::BTreeMap;

use serde::Deserialize;

/// Where a consumer group writes.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum SinkSpec {
    /// Any Prometheus remote-write receiver (VictoriaMetrics, Prometheus, Mimir, ...).
    PrometheusRemoteWrite {
        url: String,
        #[serde(default)]
        headers: BTreeMap<String, String>,
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
        Ok(())
    }
}
