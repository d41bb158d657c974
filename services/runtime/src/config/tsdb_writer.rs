use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use bytesize::ByteSize;
use serde::Deserialize;

/// `weir tsdb-writer` settings. What it reads and where it writes come from its consumer
/// group (`consumer_groups.<group>.topics` and `.sink`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TsdbWriterConfig {
    /// A key of `consumer_groups` with `role: tsdb-writer`.
    pub group: String,
    /// `/metrics`, `/healthz`, `/readyz`.
    pub listen: SocketAddr,
    pub dead_letter_topic: String,
    /// A partition's batch is sent when it holds this many samples...
    pub max_batch_samples: usize,
    /// ...or when its encoded size reaches this (bounds request size whatever the series
    /// look like)...
    pub max_batch_bytes: ByteSize,
    /// ...or when its oldest sample waited this long.
    #[serde(with = "humantime_serde")]
    pub max_batch_delay: Duration,
    /// Remote-write requests in flight at once (at most one per partition, which keeps
    /// every series' samples in order).
    pub max_in_flight: usize,
    /// Samples buffered per partition beyond which it is paused (bounded memory while
    /// the sink is slow or down).
    pub max_buffered_samples: usize,
    /// The same bound in bytes, for series with large label sets.
    pub max_buffered_bytes: ByteSize,
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub retry_initial: Duration,
    #[serde(with = "humantime_serde")]
    pub retry_max: Duration,
    /// Samples dated later than the writer's clock plus this, samples before the Unix
    /// epoch, and series that break the data contract go to the dead-letter topic
    /// instead of the TSDB (see `weir_runtime::input_checks`).
    #[serde(with = "humantime_serde")]
    pub max_sample_future: Duration,
    /// Whether each series is checked against the partition its key hashes to (a series
    /// elsewhere is dead-lettered, kind `wrong_partition`). Turn off only to replay a log
    /// written before partitions were added to its topic.
    pub check_partition: bool,
    /// Writing each tenant's series apart: to its own sink, or with its own URL path or
    /// headers (Mimir's `X-Scope-OrgID`, VictoriaMetrics cluster's `/insert/<id>/`).
    pub tenancy: TenancyConfig,
}

/// How the writer tells tenants apart downstream. A series' tenant is its contract
/// `tenant` field, else its `label` label, else `default_tenant`. With `enabled`, the
/// group's sink may hold `{tenant}` in its URL and header values; each request then
/// carries one tenant's series, with `{tenant}` replaced by the tenant's id.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TenancyConfig {
    pub enabled: bool,
    /// The label the gateway sets (`gateway.auth.tenant_label`).
    pub label: String,
    /// The tenant of series that carry none.
    pub default_tenant: String,
    /// What `{tenant}` becomes for a tenant, when not its name (VictoriaMetrics cluster
    /// wants `accountID[:projectID]`, e.g. `acme: "42:0"`).
    pub ids: BTreeMap<String, String>,
    /// Tenants written to another sink (a key of `sinks`) instead of the group's.
    pub sinks: BTreeMap<String, String>,
    /// Distinct tenants one writer keeps routes for; series of further tenants go to the
    /// dead-letter topic (kind `too_many_tenants`): a direct producer inventing tenants
    /// cannot grow the writer without bound.
    pub max_tenants: usize,
}

impl Default for TenancyConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            label: "tenant".into(),
            default_tenant: "default".into(),
            ids: BTreeMap::new(),
            sinks: BTreeMap::new(),
            max_tenants: 10_000,
        }
    }
}

impl TenancyConfig {
    pub(super) fn validate(&self) -> Result<(), (String, String)> {
        if !self.enabled {
            if !self.ids.is_empty() || !self.sinks.is_empty() {
                return Err((
                    "tenancy.enabled".into(),
                    "is false, but tenancy.ids or tenancy.sinks are set: turn it on or remove them"
                        .into(),
                ));
            }
            return Ok(());
        }
        if self.label.is_empty() {
            return Err(("tenancy.label".into(), "must not be empty".into()));
        }
        check_tenant_id(&self.default_tenant)
            .map_err(|m| ("tenancy.default_tenant".to_string(), m))?;
        for (t, id) in &self.ids {
            check_tenant_id(id).map_err(|m| (format!("tenancy.ids.{t}"), m))?;
        }
        if self.max_tenants == 0 {
            return Err(("tenancy.max_tenants".into(), "must be above zero".into()));
        }
        Ok(())
    }
}

/// Whether `id` may be put into a URL path or a header for `{tenant}`: 1 to 128 of
/// `A-Z a-z 0-9 _ - . :`, not `.` or `..` — so no tenant value can reach another path.
pub fn check_tenant_id(id: &str) -> Result<(), String> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id != "."
        && id != ".."
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "tenant {:?} cannot go into a URL or header: use 1-128 of A-Z a-z 0-9 _ - . :",
            id.chars().take(64).collect::<String>()
        ))
    }
}

impl Default for TsdbWriterConfig {
    fn default() -> Self {
        Self {
            group: "tsdb-writers".into(),
            listen: SocketAddr::from(([127, 0, 0, 1], 9301)),
            dead_letter_topic: "metrics.dlq".into(),
            max_batch_samples: 10_000,
            max_batch_delay: Duration::from_secs(1),
            max_in_flight: 8,
            max_buffered_samples: 200_000,
            max_batch_bytes: ByteSize::mib(4),
            max_buffered_bytes: ByteSize::mib(64),
            request_timeout: Duration::from_secs(10),
            retry_initial: Duration::from_millis(100),
            retry_max: Duration::from_secs(10),
            max_sample_future: Duration::from_secs(600),
            check_partition: true,
            tenancy: TenancyConfig::default(),
        }
    }
}

impl TsdbWriterConfig {
    pub(super) fn validate(&self) -> Result<(), (String, String)> {
        if self.max_batch_samples == 0 {
            return Err(("max_batch_samples".into(), "must be above zero".into()));
        }
        if self.max_buffered_samples < self.max_batch_samples {
            return Err((
                "max_buffered_samples".into(),
                "must be at least max_batch_samples".into(),
            ));
        }
        if self.max_batch_bytes.as_u64() < 64 * 1024 {
            return Err(("max_batch_bytes".into(), "must be at least 64KiB".into()));
        }
        if self.max_buffered_bytes < self.max_batch_bytes {
            return Err((
                "max_buffered_bytes".into(),
                "must be at least max_batch_bytes".into(),
            ));
        }
        if self.max_in_flight == 0 {
            return Err(("max_in_flight".into(), "must be above zero".into()));
        }
        if self.retry_max < self.retry_initial {
            return Err(("retry_max".into(), "must be at least retry_initial".into()));
        }
        self.tenancy.validate()
    }
}
