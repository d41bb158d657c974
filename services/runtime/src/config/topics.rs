use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

/// A topic as the deployment wants it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicSpec {
    pub partitions: u32,
    #[serde(default = "one")]
    pub replication_factor: i16,
    /// How long records are kept; absent means the broker's default (or forever when
    /// compacted).
    #[serde(default, with = "humantime_serde")]
    pub retention: Option<Duration>,
    #[serde(default)]
    pub compression: Compression,
    #[serde(default)]
    pub cleanup_policy: CleanupPolicy,
    /// Any other topic config, passed as is (e.g. `segment.ms`).
    #[serde(default)]
    pub config: BTreeMap<String, String>,
    #[serde(default)]
    pub description: Option<String>,
}

fn one() -> i16 {
    1
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    #[default]
    Producer,
    Uncompressed,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Compression {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Producer => "producer",
            Self::Uncompressed => "uncompressed",
            Self::Gzip => "gzip",
            Self::Snappy => "snappy",
            Self::Lz4 => "lz4",
            Self::Zstd => "zstd",
        }
    }

    /// The producer-side `compression.type` to use when writing this topic.
    pub fn producer_codec(self) -> &'static str {
        match self {
            // librdkafka's bundled build has lz4 built in; it is cheap and compresses
            // repetitive label strings well.
            Self::Producer => "lz4",
            Self::Uncompressed => "none",
            other => other.as_str(),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CleanupPolicy {
    #[default]
    Delete,
    Compact,
    #[serde(rename = "compact,delete")]
    CompactDelete,
}

impl CleanupPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Delete => "delete",
            Self::Compact => "compact",
            Self::CompactDelete => "compact,delete",
        }
    }
}

impl TopicSpec {
    /// The topic configs to create it with (and to compare for drift).
    pub fn configs(&self) -> BTreeMap<String, String> {
        let mut c = self.config.clone();
        c.insert("cleanup.policy".into(), self.cleanup_policy.as_str().into());
        c.insert("compression.type".into(), self.compression.as_str().into());
        if let Some(r) = self.retention {
            c.insert("retention.ms".into(), r.as_millis().to_string());
        }
        c
    }

    pub(super) fn validate(&self) -> Result<(), (String, String)> {
        if self.partitions == 0 || self.partitions > 100_000 {
            return Err((
                "partitions".into(),
                format!("{} is out of range 1..=100000", self.partitions),
            ));
        }
        if self.replication_factor < 1 {
            return Err(("replication_factor".into(), "must be at least 1".into()));
        }
        if self.retention == Some(Duration::ZERO) {
            return Err(("retention".into(), "must be longer than zero".into()));
        }
        for k in ["cleanup.policy", "compression.type", "retention.ms"] {
            if self.config.contains_key(k) {
                return Err((
                    format!("config.{k}"),
                    "set it with the typed field instead".into(),
                ));
            }
        }
        Ok(())
    }
}
