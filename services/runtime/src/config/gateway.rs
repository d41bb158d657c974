use std::net::SocketAddr;
use std::time::Duration;

use bytesize::ByteSize;
use serde::Deserialize;

/// `weir gateway` settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayConfig {
    pub listen: SocketAddr,
    /// The topic written to; must be declared under `topics`.
    pub topic: String,
    pub limits: GatewayLimits,
    pub validation: ValidationConfig,
    pub auth: AuthConfig,
    /// How long a request waits for Kafka to acknowledge its records before 503.
    #[serde(with = "humantime_serde")]
    pub delivery_timeout: Duration,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            topic: "metrics.raw".into(),
            limits: GatewayLimits::default(),
            validation: ValidationConfig::default(),
            auth: AuthConfig::default(),
            delivery_timeout: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayLimits {
    /// Request body as received (compressed).
    pub max_body_bytes: ByteSize,
    /// Body after snappy or gzip decompression.
    pub max_decompressed_bytes: ByteSize,
    pub max_series_per_request: usize,
    /// Bytes of requests being processed at once; beyond it the gateway answers 429.
    pub max_inflight_bytes: ByteSize,
    /// Largest Kafka record written; a partition's share of a request is split above it,
    /// and so is a single series with more samples than one record holds.
    pub max_record_bytes: ByteSize,
    /// Bytes of records one request may expand into (series keys, labels copied per
    /// series). Line protocol and JSON share one label set among many series, so a small
    /// body can expand a lot; past this the request is refused with 413.
    pub max_expanded_bytes: ByteSize,
    /// Fields on one line-protocol line (each becomes a series).
    pub max_fields_per_line: usize,
    /// Open client connections; further connections wait in the listen backlog.
    pub max_connections: usize,
    /// A request body must arrive within this, or the request is answered 408.
    #[serde(with = "humantime_serde")]
    pub body_read_timeout: Duration,
}

impl Default for GatewayLimits {
    fn default() -> Self {
        Self {
            max_body_bytes: ByteSize::mib(10),
            max_decompressed_bytes: ByteSize::mib(64),
            max_series_per_request: 50_000,
            max_inflight_bytes: ByteSize::mib(256),
            max_record_bytes: ByteSize::kib(900),
            max_expanded_bytes: ByteSize::mib(64),
            max_fields_per_line: 1_000,
            max_connections: 4_096,
            body_read_timeout: Duration::from_secs(30),
        }
    }
}

/// What to do with NaN and ±Inf sample values. Prometheus staleness markers (a NaN with
/// a reserved payload) are always accepted: they are how a series says it has ended.
///
/// The default is `accept`: Prometheus itself exposes NaN (a summary's quantiles before
/// any observation, 0/0 ratios) and stores it, and a gateway that answered 400 to those
/// would make every Prometheus in front of it log errors on every send.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NonFinitePolicy {
    /// Reject the sample (counted, named in the 400 answer).
    Reject,
    /// Drop the sample without an error (counted in `weir_gateway_samples_total{outcome="dropped"}`).
    Drop,
    /// Accept it as is.
    #[default]
    Accept,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ValidationConfig {
    pub max_labels: usize,
    pub max_label_name_length: usize,
    pub max_label_value_length: usize,
    pub max_metric_name_length: usize,
    /// Samples older than now minus this are rejected.
    #[serde(with = "humantime_serde")]
    pub max_sample_age: Duration,
    /// Samples newer than now plus this are rejected.
    #[serde(with = "humantime_serde")]
    pub max_sample_future: Duration,
    pub non_finite: NonFinitePolicy,
}

impl Default for ValidationConfig {
    fn default() -> Self {
        Self {
            max_labels: 30,
            max_label_name_length: 128,
            max_label_value_length: 2048,
            max_metric_name_length: 256,
            max_sample_age: Duration::from_secs(7 * 86_400),
            max_sample_future: Duration::from_secs(600),
            non_finite: NonFinitePolicy::Accept,
        }
    }
}

/// Bearer API keys, each mapped to a tenant that is added to every series as a label.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    pub enabled: bool,
    /// The label that carries the tenant; any value the client sent for it is replaced.
    pub tenant_label: String,
    pub keys: Vec<ApiKey>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            tenant_label: "tenant".into(),
            keys: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKey {
    /// The key itself, or `env:VAR` to read it from the environment.
    pub key: String,
    pub tenant: String,
}

impl ApiKey {
    /// The key's value, resolving `env:VAR`.
    pub fn resolve(&self) -> Result<String, String> {
        match self.key.strip_prefix("env:") {
            Some(var) => {
                std::env::var(var).map_err(|_| format!("environment variable {var} is not set"))
            }
            None => Ok(self.key.clone()),
        }
    }
}

impl GatewayConfig {
    pub(super) fn validate(&self) -> Result<(), (String, String)> {
        let l = &self.limits;
        if l.max_body_bytes.as_u64() == 0 {
            return Err(("limits.max_body_bytes".into(), "must be above zero".into()));
        }
        if l.max_decompressed_bytes < l.max_body_bytes {
            return Err((
                "limits.max_decompressed_bytes".into(),
                "must be at least limits.max_body_bytes".into(),
            ));
        }
        // A request holds its body (or the decompressed body) and its records against the
        // budget; one that alone needs more than all of it is refused with 413.
        if l.max_inflight_bytes < l.max_decompressed_bytes {
            return Err((
                "limits.max_inflight_bytes".into(),
                "must be at least limits.max_decompressed_bytes, or no large request could ever pass".into(),
            ));
        }
        if l.max_fields_per_line == 0 || l.max_connections == 0 {
            return Err((
                "limits.max_fields_per_line / max_connections".into(),
                "must be above zero".into(),
            ));
        }
        if l.body_read_timeout.is_zero() {
            return Err((
                "limits.body_read_timeout".into(),
                "must be above zero".into(),
            ));
        }
        if l.max_series_per_request == 0 {
            return Err((
                "limits.max_series_per_request".into(),
                "must be above zero".into(),
            ));
        }
        if l.max_record_bytes.as_u64() < 1024 {
            return Err((
                "limits.max_record_bytes".into(),
                "must be at least 1KiB".into(),
            ));
        }
        let v = &self.validation;
        if v.max_labels == 0 {
            return Err(("validation.max_labels".into(), "must be above zero".into()));
        }
        // The largest series name and label set that validation lets through must fit in
        // one record with room for samples, or such a series could never be written.
        let largest_series = v.max_metric_name_length
            + v.max_labels * (v.max_label_name_length + v.max_label_value_length + 10)
            + 1024;
        if (l.max_record_bytes.as_u64() as usize) < largest_series * 2 {
            return Err((
                "limits.max_record_bytes".into(),
                format!(
                    "must be at least twice the largest series validation accepts ({} bytes: max_metric_name_length + max_labels x (max_label_name_length + max_label_value_length))",
                    largest_series
                ),
            ));
        }
        if self.auth.enabled {
            if self.auth.keys.is_empty() {
                return Err((
                    "auth.keys".into(),
                    "auth is enabled but no key is configured".into(),
                ));
            }
            for (i, k) in self.auth.keys.iter().enumerate() {
                let key = k
                    .resolve()
                    .map_err(|m| (format!("auth.keys[{i}].key"), m))?;
                if key.len() < 16 {
                    return Err((
                        format!("auth.keys[{i}].key"),
                        "must be at least 16 characters".into(),
                    ));
                }
                if k.tenant.is_empty() {
                    return Err((format!("auth.keys[{i}].tenant"), "must not be empty".into()));
                }
            }
        }
        if self.auth.tenant_label.is_empty() {
            return Err(("auth.tenant_label".into(), "must not be empty".into()));
        }
        Ok(())
    }
}
