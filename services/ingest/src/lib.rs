//! The write path into `metrics.raw` that every role taking metrics from outside shares
//! (`weir gateway` for pushes, `weir scrape` for pulls): validate → tenant → key →
//! partition → encode → produce → wait for acknowledgements.
//!
//! - [`Ingest`]: admission against an in-flight budget, then a [`BatchBuilder`] that
//!   validates, keys and encodes series straight from borrowed parts into one Avro record
//!   per partition, and [`Ingest::write`], which answers only after Kafka acknowledged;
//! - [`validate`]: the checks on names, labels and samples;
//! - [`error`]: what a refused write says, with its retry class;
//! - [`kafka`]: the producer fitted to the limits, and the metadata watcher.
pub mod error;
mod ingest;
pub mod kafka;
pub mod validate;

pub use error::ApiError;
pub use ingest::*;
