use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

/// `weir rollup` settings. What it reads comes from its consumer group; the group's sink
/// is the ClickHouse the tiers are written to.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RollupConfig {
    /// A key of `consumer_groups` with `role: rollup`.
    pub group: String,
    /// `/metrics`, `/healthz`, `/readyz`.
    pub listen: SocketAddr,
    /// Timely workers in this process; each is a member of the consumer group.
    pub workers: usize,
    /// How far behind the newest sample of a partition a sample may arrive and still be
    /// on time.
    #[serde(with = "humantime_serde")]
    pub out_of_orderness: Duration,
    /// How long after a window closed a sample may still correct it (the row is written
    /// again); later samples go to `late_topic`.
    #[serde(with = "humantime_serde")]
    pub allowed_lateness: Duration,
    /// A partition without records this long stops holding the watermark back.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Samples dated later than the consumer's clock plus this are cut from their record
    /// before they reach the windows (they would move the watermark into the future) and
    /// go to the dead-letter topic; so do samples before the Unix epoch.
    #[serde(with = "humantime_serde")]
    pub max_sample_future: Duration,
    /// Whether each series is checked against the partition its key hashes to (a series
    /// elsewhere is dead-lettered, kind `wrong_partition`). Turn off only to replay a log
    /// written before partitions were added to its topic.
    pub check_partition: bool,
    pub dead_letter_topic: String,
    pub late_topic: String,
    /// Each tier is built from the one before it (the first from raw samples).
    pub tiers: Vec<TierConfig>,
    /// Rows buffered for the sinks beyond which reading pauses.
    pub max_pending_rows: usize,
    #[serde(with = "humantime_serde")]
    pub retry_max: Duration,
    /// How often old ClickHouse partitions are dropped.
    #[serde(with = "humantime_serde")]
    pub retention_interval: Duration,
}

/// One rollup tier: a tumbling window size, the topic `metrics.rollup.<name>` and the
/// ClickHouse table `rollup_<name>`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierConfig {
    pub name: String,
    #[serde(with = "humantime_serde")]
    pub size: Duration,
    /// How long rows are kept in ClickHouse.
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
    /// The Kafka topic of the tier's rows; `metrics.rollup.<name>` when not given.
    #[serde(default, rename = "topic")]
    pub topic_override: Option<String>,
}

impl TierConfig {
    pub fn topic(&self) -> String {
        self.topic_override
            .clone()
            .unwrap_or_else(|| format!("metrics.rollup.{}", self.name))
    }

    pub fn table(&self) -> String {
        format!("rollup_{}", self.name)
    }
}

fn tier(name: &str, size_s: u64, retention_days: u64) -> TierConfig {
    TierConfig {
        name: name.into(),
        size: Duration::from_secs(size_s),
        retention: Duration::from_secs(retention_days * 86_400),
        topic_override: None,
    }
}

impl Default for RollupConfig {
    fn default() -> Self {
        Self {
            group: "rollup-aggregators".into(),
            listen: SocketAddr::from(([127, 0, 0, 1], 9302)),
            workers: 2,
            out_of_orderness: Duration::from_secs(10),
            allowed_lateness: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(30),
            max_sample_future: Duration::from_secs(600),
            check_partition: true,
            dead_letter_topic: "metrics.dlq".into(),
            late_topic: "metrics.late".into(),
            tiers: vec![
                tier("1m", 60, 7),
                tier("5m", 300, 30),
                tier("1h", 3600, 365),
            ],
            max_pending_rows: 500_000,
            retry_max: Duration::from_secs(10),
            retention_interval: Duration::from_secs(3600),
        }
    }
}

impl RollupConfig {
    pub(super) fn validate(&self) -> Result<(), (String, String)> {
        if self.workers == 0 {
            return Err(("workers".into(), "must be at least 1".into()));
        }
        if self.tiers.is_empty() {
            return Err(("tiers".into(), "at least one tier is needed".into()));
        }
        for (i, t) in self.tiers.iter().enumerate() {
            let ms = t.size.as_millis();
            if ms == 0 {
                return Err((format!("tiers[{i}].size"), "must be positive".into()));
            }
            if t.name.is_empty()
                || !t
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_')
            {
                return Err((
                    format!("tiers[{i}].name"),
                    format!(
                        "{:?}: letters, digits and _ only (it names a table)",
                        t.name
                    ),
                ));
            }
            if i > 0 {
                let prev = self.tiers[i - 1].size.as_millis();
                if ms <= prev || ms % prev != 0 {
                    return Err((
                        format!("tiers[{i}].size"),
                        format!(
                            "{} is built from tier {:?} and must be a larger multiple of its size",
                            t.name,
                            self.tiers[i - 1].name
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}
