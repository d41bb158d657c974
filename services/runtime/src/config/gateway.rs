use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use bytesize::ByteSize;
use serde::Deserialize;

use super::tls::TlsServerOptions;

/// `weir gateway` settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayConfig {
    pub listen: SocketAddr,
    /// Serve `/metrics`, `/healthz` and `/readyz` here instead of on `listen` (plain
    /// HTTP, so a scraper needs no client certificate or API key).
    pub ops_listen: Option<SocketAddr>,
    /// HTTPS (HTTP/2 and HTTP/1.1) on `listen`; absent: plain HTTP.
    pub tls: Option<TlsServerOptions>,
    /// The topic written to; must be declared under `topics`.
    pub topic: String,
    pub limits: GatewayLimits,
    pub validation: ValidationConfig,
    pub auth: AuthConfig,
    /// Per-tenant rate and series limits.
    pub tenants: TenantsConfig,
    /// How OTLP metrics (`POST /v1/metrics`) become series.
    pub otlp: OtlpConfig,
    /// How long a request waits for Kafka to acknowledge its records before 503.
    #[serde(with = "humantime_serde")]
    pub delivery_timeout: Duration,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            ops_listen: None,
            tls: None,
            topic: "metrics.raw".into(),
            limits: GatewayLimits::default(),
            validation: ValidationConfig::default(),
            auth: AuthConfig::default(),
            tenants: TenantsConfig::default(),
            otlp: OtlpConfig::default(),
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
    /// Series never seen before (by this gateway, within `tenants.active_series_idle`)
    /// admitted per hour over all tenants; past it, requests bringing new series are
    /// answered 429 while known series keep flowing. 0: no limit. A guard against a
    /// cardinality explosion (a label carrying a request id) reaching the TSDB.
    pub max_new_series_per_hour: u64,
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
            max_new_series_per_hour: 0,
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

/// OTLP translation, as Prometheus' `otlp:` settings.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OtlpConfig {
    pub translation_strategy: OtlpTranslationStrategy,
    /// Resource attributes added as labels to every series of their resource (they are
    /// in `target_info` in any case), e.g. `[k8s.namespace.name, cloud.region]`.
    pub promote_resource_attributes: Vec<String>,
    /// Where OTLP/gRPC (`MetricsService/Export`) is served, with the gateway's TLS and
    /// auth; 4317 by convention. Unset: no gRPC listener.
    pub grpc_listen: Option<SocketAddr>,
}

/// Prometheus' names for the two translations the data contract allows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum OtlpTranslationStrategy {
    /// Characters outside `[a-zA-Z0-9_:]` become `_`; unit and `_total`/`_ratio`
    /// suffixes are added (Prometheus' default).
    #[default]
    UnderscoreEscapingWithSuffixes,
    /// The same escaping, no suffixes.
    UnderscoreEscapingWithoutSuffixes,
}

/// Bearer API keys, each mapped to a tenant that is added to every series as a label.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    pub enabled: bool,
    /// The label that carries the tenant; any value the client sent for it is replaced.
    pub tenant_label: String,
    pub keys: Vec<ApiKey>,
    /// A YAML file `keys: [{tenant, sha256}]` read beside `keys`, and read again on
    /// SIGHUP and when it changes: keys are added and retired without a restart.
    pub keys_file: Option<PathBuf>,
    /// How often `keys_file` is checked for a change.
    #[serde(with = "humantime_serde")]
    pub keys_reload_interval: Duration,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            tenant_label: "tenant".into(),
            keys: Vec::new(),
            keys_file: None,
            keys_reload_interval: Duration::from_secs(2),
        }
    }
}

/// One API key of a tenant (a tenant may have several, e.g. while rotating). Give the
/// key's SHA-256 (`weir keys hash` prints it), or the key itself, which is hashed at
/// load and not kept.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKey {
    pub tenant: String,
    /// The key, or `env:VAR` / `file:PATH`.
    #[serde(default)]
    pub key: Option<String>,
    /// Hex SHA-256 of the key, optionally prefixed `sha256:`.
    #[serde(default)]
    pub sha256: Option<String>,
    /// A note for the people who read the file (who holds the key, since when); weir
    /// does not use it.
    #[serde(default)]
    pub name: Option<String>,
}

/// The keys file: `keys:` as in `gateway.auth.keys`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeysFile {
    pub keys: Vec<ApiKey>,
}

impl ApiKey {
    /// Checks one key: a tenant, and exactly one of `key` (resolvable, 16+ characters)
    /// and `sha256` (64 hex digits).
    pub fn check(&self) -> Result<(), (String, String)> {
        if self.tenant.is_empty() {
            return Err(("tenant".into(), "must not be empty".into()));
        }
        match (&self.key, &self.sha256) {
            (Some(k), None) => {
                let key = super::resolve_secret(k).map_err(|m| ("key".to_string(), m))?;
                if key.len() < 16 {
                    return Err(("key".into(), "must be at least 16 characters".into()));
                }
            }
            (None, Some(h)) => {
                let hex = h.strip_prefix("sha256:").unwrap_or(h);
                if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err((
                        "sha256".into(),
                        "must be 64 hex digits (the output of `weir keys hash`)".into(),
                    ));
                }
            }
            _ => return Err(("key".into(), "give exactly one of key and sha256".into())),
        }
        Ok(())
    }
}

/// Limits per tenant (the tenant of the API key or client certificate; without auth
/// every request is the tenant `default`). They hold per gateway replica: with N
/// replicas behind a balancer, a tenant gets up to N times these.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TenantsConfig {
    pub defaults: TenantLimits,
    pub overrides: BTreeMap<String, TenantLimitOverrides>,
    /// A series not written for this long no longer counts as active.
    #[serde(with = "humantime_serde")]
    pub active_series_idle: Duration,
}

impl Default for TenantsConfig {
    fn default() -> Self {
        Self {
            defaults: TenantLimits::default(),
            overrides: BTreeMap::new(),
            active_series_idle: Duration::from_secs(15 * 60),
        }
    }
}

/// 0 means no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TenantLimits {
    /// Sustained samples per second (a token bucket refilled at this rate).
    pub samples_per_second: f64,
    /// Samples the bucket holds: how far above the rate a tenant may burst. 0: one
    /// second of `samples_per_second`.
    pub burst: u64,
    /// Distinct series written within `active_series_idle`.
    pub max_active_series: u64,
}

#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TenantLimitOverrides {
    pub samples_per_second: Option<f64>,
    pub burst: Option<u64>,
    pub max_active_series: Option<u64>,
}

impl TenantsConfig {
    /// The limits of `tenant`: its overrides over the defaults.
    pub fn limits_of(&self, tenant: &str) -> TenantLimits {
        let d = self.defaults;
        let l = match self.overrides.get(tenant) {
            Some(o) => TenantLimits {
                samples_per_second: o.samples_per_second.unwrap_or(d.samples_per_second),
                burst: o.burst.unwrap_or(d.burst),
                max_active_series: o.max_active_series.unwrap_or(d.max_active_series),
            },
            None => d,
        };
        TenantLimits {
            burst: if l.burst == 0 {
                l.samples_per_second.ceil() as u64
            } else {
                l.burst
            },
            ..l
        }
    }

    fn validate(&self) -> Result<(), (String, String)> {
        let check = |at: String, rate: Option<f64>| match rate {
            Some(r) if !(r.is_finite() && r >= 0.0) => {
                Err((at, "must be a non-negative number".to_string()))
            }
            _ => Ok(()),
        };
        check(
            "tenants.defaults.samples_per_second".into(),
            Some(self.defaults.samples_per_second),
        )?;
        for (t, o) in &self.overrides {
            check(
                format!("tenants.overrides.{t}.samples_per_second"),
                o.samples_per_second,
            )?;
        }
        if self.active_series_idle < Duration::from_secs(60) {
            return Err((
                "tenants.active_series_idle".into(),
                "must be at least 1m".into(),
            ));
        }
        Ok(())
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
        if self.auth.enabled && self.auth.keys.is_empty() && self.auth.keys_file.is_none() {
            return Err((
                "auth.keys".into(),
                "auth is enabled but no key and no keys_file is configured".into(),
            ));
        }
        for (i, k) in self.auth.keys.iter().enumerate() {
            k.check()
                .map_err(|(f, m)| (format!("auth.keys[{i}].{f}"), m))?;
        }
        if self.auth.keys_reload_interval.is_zero() {
            return Err((
                "auth.keys_reload_interval".into(),
                "must be above zero".into(),
            ));
        }
        if let Some(t) = &self.tls {
            t.validate().map_err(|(f, m)| (format!("tls.{f}"), m))?;
        }
        if let Some(ca) = self.tls.as_ref().and_then(|t| t.client_auth.as_ref()) {
            if !self.auth.enabled && !ca.tenants.is_empty() {
                return Err((
                    "tls.client_auth.tenants".into(),
                    "maps certificates to tenants, but auth.enabled is false: tenants are only set with auth on".into(),
                ));
            }
        }
        if self.ops_listen == Some(self.listen) {
            return Err((
                "ops_listen".into(),
                "must differ from listen (leave it out to serve the ops routes on listen)".into(),
            ));
        }
        self.tenants.validate()?;
        if self.auth.tenant_label.is_empty() {
            return Err(("auth.tenant_label".into(), "must not be empty".into()));
        }
        Ok(())
    }
}
