//! Plumbing every weir role shares, so no role writes it again:
//!
//! - [`alloc`]: allocator settings for the binaries;
//! - [`config`]: the topology file (`topologies/*.yaml`), loaded and validated with the
//!   path of any bad field;
//! - [`kafka`]: client configs, metadata, the producer every writer uses;
//! - [`consumer`]: consumer-group context: lag per partition, drain and commit on revoke;
//! - [`http`]: TLS, credentials and redacted URLs of HTTP sinks;
//! - [`dead_letter`]: the dead-letter topic, with the reason and origin in headers;
//! - [`input_checks`]: what consumers check on every decoded series (contract, event time);
//! - [`produce`]: batches produced so that a retry resends only what failed;
//! - [`relabel`]: Prometheus relabeling (every action), for scrape and ingest;
//! - [`backoff`]: the retry delay every retry loop uses;
//! - [`topics`]: `weir topics apply` — create what is missing, report drift;
//! - [`telemetry`]: structured `tracing` logs and the Prometheus metrics recorder;
//! - [`ops`]: `/metrics`, `/healthz`, `/readyz`;
//! - [`shutdown`]: SIGINT/SIGTERM as a cancellation token;
//! - [`tls`]: server certificates that reload, and what HTTPS clients verify.
pub mod alloc;
pub mod backoff;
pub mod config;
pub mod consumer;
pub mod dead_letter;
pub mod http;
pub mod import;
pub mod input_checks;
pub mod kafka;
pub mod ops;
pub mod produce;
pub mod relabel;
pub mod replay;
pub mod role;
pub mod selector;
pub mod shutdown;
pub mod telemetry;
pub mod tls;
pub mod topics;

pub use config::Topology;
