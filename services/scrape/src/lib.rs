//! `weir scrape`: pull collection as Prometheus does it, into `metrics.raw` through the
//! same ingest path as the gateway (validation, tenant, batching by partition,
//! acknowledged by Kafka).
//!
//! - [`config`]: Prometheus' own `scrape_configs:`, refused option by option where weir
//!   does not follow them;
//! - [`discovery`]: static, file and HTTP service discovery;
//! - [`target`]: discovered addresses to targets (`relabel_configs`, the URL);
//! - [`exposition`]: the text 0.0.4 and OpenMetrics 1.0 parsers;
//! - [`scrape_loop`]: one target's scrapes, report series and staleness markers;
//! - [`shard`]: which replica scrapes which target (a consumer group, or vmagent-style
//!   static members);
//! - [`manager`]: targets to loops, following discovery, shards and reloads;
//! - [`service`]: the role's wiring, `/api/v1/targets` and SIGHUP.
pub mod config;
pub mod discovery;
pub mod exposition;
pub mod manager;
pub mod scrape_loop;
pub mod service;
pub mod shard;
pub mod target;

pub use service::{run, Options};
