//! The data contract of `metrics.raw`, shared by every weir role and by direct producers.
//!
//! - [`model`]: a batch of series with their samples, as carried in one Kafka record.
//! - [`series_key`]: the canonical series key (`name{a="x",b="y"}`), the record key.
//! - [`partitioner`]: Kafka's Java-compatible murmur2 partitioner over the key bytes.
//! - [`avro`]: the Avro schemas embedded from `schemas/avro`, the encoder (single-object
//!   encoding) and the decoder (single-object and Confluent wire format).
//! - [`remote_write`]: Prometheus remote-write 1.0 types generated from `schemas/proto`.
pub mod avro;
pub mod model;
pub mod names;
pub mod partitioner;
pub mod remote_write;
pub mod series_key;

pub use model::{Label, MetricType, MetricsBatch, Sample, Series};
pub use partitioner::{murmur2, partition_for_key};
pub use series_key::SeriesKey;
