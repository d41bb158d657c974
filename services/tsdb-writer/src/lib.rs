//! `weir tsdb-writer`: consumer group `tsdb-writers` on `metrics.raw`, writing Prometheus
//! remote write to any receiver (VictoriaMetrics, Prometheus, Mimir, Thanos Receive, M3).
//!
//! - [`sink`]: the remote-write client and what its answers mean (retry or reject);
//! - [`pipeline`]: per-partition lanes — batching by size and time, at most one request
//!   in flight per partition (so every series' samples stay in order), offsets stored
//!   only once the receiver acknowledged everything before them, pause while the sink
//!   is down, dead letters for what can never be written;
//! - [`tenancy`]: each tenant's series to its own sink, URL path or headers.
pub mod pipeline;
pub mod replay;
pub mod sink;
pub mod tenancy;

pub use pipeline::run;
