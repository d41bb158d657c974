//! In-memory form of a `metrics.raw` record: a batch of series, each with its samples.
use serde::{Deserialize, Serialize};

/// One label of a series. `__name__` is never a label here: it is [`Series::name`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Label {
    pub name: String,
    pub value: String,
}

impl Label {
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            value: value.into(),
        }
    }
}

/// Bits of Prometheus' staleness marker: a NaN that says "this series has ended".
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// One sample: milliseconds since the Unix epoch and a value.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    pub timestamp_ms: i64,
    pub value: f64,
}

impl Sample {
    pub fn new(timestamp_ms: i64, value: f64) -> Self {
        Self {
            timestamp_ms,
            value,
        }
    }

    /// Whether the value is a Prometheus staleness marker.
    pub fn is_stale_marker(&self) -> bool {
        self.value.to_bits() == STALE_NAN_BITS
    }

    /// Equality that also holds for NaN payloads (staleness markers), bit for bit.
    pub fn bit_eq(&self, other: &Sample) -> bool {
        self.timestamp_ms == other.timestamp_ms && self.value.to_bits() == other.value.to_bits()
    }
}

/// The metric type, when the source knows it. Symbols match the Avro enum.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MetricType {
    #[default]
    #[serde(alias = "unknown")]
    Unknown,
    #[serde(alias = "gauge")]
    Gauge,
    #[serde(alias = "counter")]
    Counter,
    #[serde(alias = "histogram")]
    Histogram,
    #[serde(alias = "summary")]
    Summary,
}

impl MetricType {
    /// Symbols in Avro enum order; the index is the wire value.
    pub const SYMBOLS: [&'static str; 5] = ["UNKNOWN", "GAUGE", "COUNTER", "HISTOGRAM", "SUMMARY"];

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn from_index(i: usize) -> Option<Self> {
        Some(match i {
            0 => Self::Unknown,
            1 => Self::Gauge,
            2 => Self::Counter,
            3 => Self::Histogram,
            4 => Self::Summary,
            _ => return None,
        })
    }

    pub fn from_symbol(s: &str) -> Option<Self> {
        Self::SYMBOLS
            .iter()
            .position(|x| *x == s)
            .and_then(Self::from_index)
    }
}

/// A series: metric name, labels sorted by name, and one or more samples.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Series {
    pub name: String,
    /// Sorted by name, names unique, never `__name__`.
    pub labels: Vec<Label>,
    pub samples: Vec<Sample>,
    #[serde(default)]
    pub metric_type: MetricType,
    #[serde(default)]
    pub unit: Option<String>,
    #[serde(default)]
    pub tenant: Option<String>,
}

impl Series {
    pub fn new(name: impl Into<String>, labels: Vec<Label>, samples: Vec<Sample>) -> Self {
        let mut s = Self {
            name: name.into(),
            labels,
            samples,
            ..Default::default()
        };
        s.sort_labels();
        s
    }

    /// Sorts labels by name; cheap when they already are (as Prometheus sends them).
    pub fn sort_labels(&mut self) {
        if !self.labels.windows(2).all(|w| w[0].name <= w[1].name) {
            self.labels.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        }
    }

    /// The canonical series key, as written to the record key and hashed for the partition.
    pub fn key(&self) -> String {
        let mut out = String::with_capacity(self.name.len() + 16 * self.labels.len());
        crate::series_key::write_key(&mut out, &self.name, &self.labels);
        out
    }

    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|l| l.name == name)
            .map(|l| l.value.as_str())
    }
}

/// The value of one `metrics.raw` record.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct MetricsBatch {
    pub series: Vec<Series>,
}

impl MetricsBatch {
    pub fn sample_count(&self) -> usize {
        self.series.iter().map(|s| s.samples.len()).sum()
    }
}
