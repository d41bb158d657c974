use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use bytesize::ByteSize;
use serde::Deserialize;

use super::ValidationConfig;

/// `weir scrape` settings. The scrape jobs themselves are Prometheus' own
/// `scrape_configs:` (read by the scrape role), from `config_file` or inline under
/// `prometheus`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScrapeRoleConfig {
    /// `/metrics`, `/healthz`, `/readyz` and `/api/v1/targets`.
    pub listen: SocketAddr,
    /// Where scraped samples go, through the same ingest path as the gateway's.
    pub topic: String,
    /// A Prometheus configuration file (`global:`, `scrape_configs:`); relative to the
    /// working directory. SIGHUP reloads it.
    pub config_file: Option<PathBuf>,
    /// The same YAML inline, when there is no `config_file`.
    pub prometheus: Option<serde_yaml::Value>,
    /// Set on every scraped series (replacing the target's own), as the gateway sets an
    /// authenticated tenant.
    pub tenant: Option<String>,
    pub tenant_label: String,
    pub sharding: ShardingConfig,
    pub validation: ValidationConfig,
    pub limits: ScrapeLimits,
    /// How long a write waits for Kafka's acknowledgement.
    #[serde(with = "humantime_serde")]
    pub delivery_timeout: Duration,
}

impl Default for ScrapeRoleConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 9304)),
            topic: "metrics.raw".into(),
            config_file: None,
            prometheus: None,
            tenant: None,
            tenant_label: "tenant".into(),
            sharding: ShardingConfig::default(),
            validation: ValidationConfig::default(),
            limits: ScrapeLimits::default(),
            delivery_timeout: Duration::from_secs(30),
        }
    }
}

/// What one process holds whatever its targets send.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScrapeLimits {
    /// A scrape body (decompressed) larger than this fails the scrape, also for jobs
    /// without a `body_size_limit` of their own (Prometheus' default is none).
    pub max_body_bytes: ByteSize,
    /// Bodies, and the records they become, held at once by all scrapes.
    pub max_inflight_bytes: ByteSize,
    /// The largest Kafka record built.
    pub max_record_bytes: ByteSize,
    /// Scrapes running at once (a new one waits for a slot).
    pub max_concurrent_scrapes: usize,
}

impl Default for ScrapeLimits {
    fn default() -> Self {
        Self {
            max_body_bytes: ByteSize::mib(64),
            max_inflight_bytes: ByteSize::mib(512),
            max_record_bytes: ByteSize::kib(900),
            max_concurrent_scrapes: 256,
        }
    }
}

/// How scrape replicas split the targets. Each target hashes to one of the partitions
/// of `topic` (its shard); with `group`, the replicas are members of that consumer group
/// on `topic` and each scrapes the shards Kafka assigned it, so a lost replica's shards
/// move to the others when its session times out. `members_count` > 1 instead splits
/// them statically, as vmagent's `-promscrape.cluster.*` does.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShardingConfig {
    /// The consumer group whose membership assigns shards; none scrapes every target.
    pub group: Option<String>,
    /// The topic whose partitions are the shards (nothing is written to it).
    pub topic: String,
    /// How long a replica may be silent before its shards move.
    #[serde(with = "humantime_serde")]
    pub session_timeout: Duration,
    /// Static sharding: replicas in all, this one's number (from 0), and how many
    /// replicas scrape each target (VictoriaMetrics' deduplication keeps one sample).
    pub members_count: u32,
    pub member_num: u32,
    pub replication_factor: u32,
}

impl Default for ShardingConfig {
    fn default() -> Self {
        Self {
            group: None,
            topic: "metrics.scrape.shards".into(),
            session_timeout: Duration::from_secs(10),
            members_count: 1,
            member_num: 0,
            replication_factor: 1,
        }
    }
}

impl ScrapeRoleConfig {
    pub(super) fn validate(&self) -> Result<(), (String, String)> {
        let s = &self.sharding;
        if s.members_count == 0 {
            return Err(("sharding.members_count".into(), "must be at least 1".into()));
        }
        if s.member_num >= s.members_count {
            return Err((
                "sharding.member_num".into(),
                format!("must be below members_count ({})", s.members_count),
            ));
        }
        if s.replication_factor == 0 || s.replication_factor > s.members_count {
            return Err((
                "sharding.replication_factor".into(),
                format!("must be from 1 to members_count ({})", s.members_count),
            ));
        }
        if s.group.is_some() && s.members_count > 1 {
            return Err((
                "sharding".into(),
                "either a group or members_count, not both".into(),
            ));
        }
        if self.config_file.is_some() && self.prometheus.is_some() {
            return Err((
                "prometheus".into(),
                "either config_file or an inline prometheus configuration, not both".into(),
            ));
        }
        if self.limits.max_concurrent_scrapes == 0 {
            return Err((
                "limits.max_concurrent_scrapes".into(),
                "must be at least 1".into(),
            ));
        }
        Ok(())
    }
}
