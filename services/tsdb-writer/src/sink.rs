//! The remote-write client.
use std::time::{Duration, Instant};

use prost::Message;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use weir_contract::remote_write::WriteRequest;
use weir_contract::Series;
use weir_runtime::config::SinkSpec;
use weir_runtime::http::{redact_url, Credentials};

/// Why a request was not written.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// Worth trying again: 5xx, 429, timeouts, refused connections, auth trouble that an
    /// operator can fix without losing data.
    #[error("{0}")]
    Retryable(String),
    /// The receiver says this data can never be written (400, 409, 413, 422).
    #[error("rejected with {status}: {body}")]
    Rejected { status: u16, body: String },
}

pub struct RemoteWriteSink {
    client: reqwest::Client,
    /// May hold `{tenant}` (see [`Target`]).
    url: String,
    /// Headers whose value holds `{tenant}`; the others are the client's defaults.
    tenant_headers: Vec<(HeaderName, String)>,
    auth: Credentials,
    /// The target of every request when nothing is templated.
    fixed: Target,
}

/// Where one request goes: the sink's URL and headers with `{tenant}` replaced.
#[derive(Debug, Clone)]
pub struct Target {
    url: String,
    /// `url` without credentials or query: what logs and errors show.
    shown: String,
    headers: HeaderMap,
}

impl Target {
    pub fn shown_url(&self) -> &str {
        &self.shown
    }
}

impl RemoteWriteSink {
    pub fn new(spec: &SinkSpec, timeout: Duration) -> anyhow::Result<Self> {
        let SinkSpec::PrometheusRemoteWrite {
            url,
            headers,
            basic_auth,
            bearer_token,
            tls,
        } = spec
        else {
            anyhow::bail!("the tsdb-writer needs a sink of type prometheus_remote_write");
        };
        let mut default_headers = HeaderMap::new();
        default_headers.insert(
            "content-type",
            HeaderValue::from_static("application/x-protobuf"),
        );
        default_headers.insert("content-encoding", HeaderValue::from_static("snappy"));
        default_headers.insert(
            "x-prometheus-remote-write-version",
            HeaderValue::from_static("0.1.0"),
        );
        let mut tenant_headers = Vec::new();
        for (k, v) in headers {
            let name = HeaderName::from_bytes(k.as_bytes())
                .map_err(|e| anyhow::anyhow!("sink header {k:?}: {e}"))?;
            if v.contains(TENANT) {
                tenant_headers.push((name, v.clone()));
                continue;
            }
            default_headers.insert(
                name,
                HeaderValue::from_str(v).map_err(|e| anyhow::anyhow!("sink header {k:?}: {e}"))?,
            );
        }
        let auth = Credentials::from_config(basic_auth.as_ref(), bearer_token.as_ref())
            .map_err(anyhow::Error::msg)?;
        let client = weir_runtime::http::client_builder(tls, "prometheus_remote_write")?
            .default_headers(default_headers)
            .user_agent(concat!("weir-tsdb-writer/", env!("CARGO_PKG_VERSION")))
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .build()?;
        let fixed = Target {
            url: url.clone(),
            shown: redact_url(url),
            headers: HeaderMap::new(),
        };
        Ok(Self {
            client,
            url: url.clone(),
            tenant_headers,
            auth,
            fixed,
        })
    }

    /// The sink's URL as it may be shown (no credentials, no query; `{tenant}` as is).
    pub fn shown_url(&self) -> &str {
        &self.fixed.shown
    }

    /// Whether requests differ per tenant (`{tenant}` in the URL or a header).
    pub fn is_templated(&self) -> bool {
        self.url.contains(TENANT) || !self.tenant_headers.is_empty()
    }

    /// The target of a tenant's requests: `{tenant}` replaced by `id`, which the caller
    /// checked with `check_tenant_id` (it cannot leave the path or break a header).
    pub fn target(&self, id: &str) -> anyhow::Result<Target> {
        if !self.is_templated() {
            return Ok(self.fixed.clone());
        }
        let url = self.url.replace(TENANT, id);
        let mut headers = HeaderMap::new();
        for (name, v) in &self.tenant_headers {
            let v = v.replace(TENANT, id);
            headers.insert(
                name.clone(),
                HeaderValue::from_str(&v)
                    .map_err(|e| anyhow::anyhow!("sink header {name}: {e}"))?,
            );
        }
        Ok(Target {
            shown: redact_url(&url),
            url,
            headers,
        })
    }

    /// Sends one snappy-compressed `WriteRequest` to the sink's untemplated target.
    pub async fn send(&self, body: bytes::Bytes) -> Result<(), SendError> {
        self.send_to(&self.fixed, body).await
    }

    /// Sends one snappy-compressed `WriteRequest` to `to`.
    pub async fn send_to(&self, to: &Target, body: bytes::Bytes) -> Result<(), SendError> {
        let mut req = self.client.post(&to.url).body(body);
        if !to.headers.is_empty() {
            req = req.headers(to.headers.clone());
        }
        let req = self.auth.apply(req);
        let started = Instant::now();
        let resp = req.send().await;
        metrics::histogram!("weir_tsdb_writer_request_duration_seconds")
            .record(started.elapsed().as_secs_f64());
        let resp =
            resp.map_err(|e| SendError::Retryable(format!("{}: {}", to.shown, e.without_url())))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let body = resp.text().await.unwrap_or_default();
        let body = body.trim().chars().take(500).collect::<String>();
        match status.as_u16() {
            400 | 409 | 413 | 422 => Err(SendError::Rejected {
                status: status.as_u16(),
                body,
            }),
            s => Err(SendError::Retryable(format!(
                "{} answered {s}: {body}",
                to.shown
            ))),
        }
    }
}

/// The placeholder a sink's URL and header values may hold.
const TENANT: &str = "{tenant}";

/// Reads back one `WriteRequest.timeseries` entry (as the lanes hold them) into a
/// series, for the rare dead letter.
pub fn series_of(entry: &[u8]) -> anyhow::Result<Series> {
    let req = WriteRequest::decode(entry)?;
    let ts = req
        .timeseries
        .into_iter()
        .next()
        .ok_or_else(|| anyhow::anyhow!("empty timeseries entry"))?;
    let mut name = String::new();
    let mut labels = Vec::with_capacity(ts.labels.len());
    for l in ts.labels {
        if l.name == "__name__" {
            name = l.value;
        } else {
            labels.push(weir_contract::Label::new(l.name, l.value));
        }
    }
    let samples = ts
        .samples
        .iter()
        .map(|s| weir_contract::Sample::new(s.timestamp, s.value))
        .collect();
    Ok(Series::new(name, labels, samples))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use weir_contract::remote_write::push_timeseries;
    use weir_contract::{Label, Sample};
    use weir_runtime::config::BasicAuth;

    /// Sends one request with `spec` to a loopback listener and returns the request's
    /// head (lowercased) as the receiver saw it.
    async fn request_head(
        headers: &[(&str, &str)],
        basic_auth: Option<BasicAuth>,
        bearer_token: Option<&str>,
    ) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 16 * 1024];
            let mut seen = Vec::new();
            while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = conn.read(&mut buf).await.unwrap();
                assert!(n > 0, "connection closed before the request head");
                seen.extend_from_slice(&buf[..n]);
            }
            conn.write_all(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")
                .await
                .unwrap();
            String::from_utf8_lossy(&seen).to_lowercase()
        });
        let spec = SinkSpec::PrometheusRemoteWrite {
            url: format!("http://{addr}/api/v1/write"),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
            basic_auth,
            bearer_token: bearer_token.map(str::to_string),
            tls: Default::default(),
        };
        let sink = RemoteWriteSink::new(&spec, Duration::from_secs(5)).unwrap();
        sink.send(bytes::Bytes::from_static(b"x")).await.unwrap();
        server.await.unwrap()
    }

    #[tokio::test]
    async fn extra_headers_and_basic_auth_reach_the_receiver() {
        let head = request_head(
            &[("X-Scope-OrgID", "tenant-a")],
            Some(BasicAuth {
                username: "weir".into(),
                password: "s3cret".into(),
            }),
            None,
        )
        .await;
        assert!(head.contains("x-scope-orgid: tenant-a"), "{head}");
        // base64("weir:s3cret")
        assert!(
            head.contains("authorization: basic d2vpcjpzm2nyzxq="),
            "{head}"
        );
        assert!(head.contains("content-encoding: snappy"), "{head}");
    }

    #[tokio::test]
    async fn a_bearer_token_from_the_environment_reaches_the_receiver() {
        std::env::set_var("WEIR_TEST_SINK_TOKEN", "tok-123");
        let head = request_head(&[], None, Some("env:WEIR_TEST_SINK_TOKEN")).await;
        assert!(head.contains("authorization: bearer tok-123"), "{head}");
    }

    #[test]
    fn a_tenant_target_replaces_the_placeholder_in_url_and_headers() {
        let spec = SinkSpec::PrometheusRemoteWrite {
            url: "http://vminsert:8480/insert/{tenant}/prometheus/api/v1/write".into(),
            headers: BTreeMap::from([
                ("X-Scope-OrgID".to_string(), "{tenant}".to_string()),
                ("X-Fixed".to_string(), "same".to_string()),
            ]),
            basic_auth: None,
            bearer_token: None,
            tls: Default::default(),
        };
        let sink = RemoteWriteSink::new(&spec, Duration::from_secs(5)).unwrap();
        assert!(sink.is_templated());
        let t = sink.target("42:0").unwrap();
        assert_eq!(
            t.url,
            "http://vminsert:8480/insert/42:0/prometheus/api/v1/write"
        );
        assert_eq!(t.headers.get("x-scope-orgid").unwrap(), "42:0");
        assert!(
            t.headers.get("x-fixed").is_none(),
            "fixed headers are the client's"
        );
    }

    #[test]
    fn entries_read_back_into_series() {
        let mut entry = Vec::new();
        push_timeseries(
            &mut entry,
            "m",
            &[("a", "1"), ("z", "2")],
            &[Sample::new(5, 1.5)],
        );
        let s = series_of(&entry).unwrap();
        assert_eq!(
            s,
            Series::new(
                "m",
                vec![Label::new("a", "1"), Label::new("z", "2")],
                vec![Sample::new(5, 1.5)]
            )
        );
    }
}
