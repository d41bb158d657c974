//! weir's alerter: Prometheus alerting rules evaluated on event time.
//!
//! - [`rules`]: rule files in Prometheus' format, checked at load;
//! - [`plan`]: the streaming subset of PromQL, compiled from `promql-parser`'s AST;
//! - [`functions`]: range functions as Prometheus 2.42 computes them;
//! - [`evaluate`]: per-step evaluation in two stages (per series, then merged across
//!   partitions);
//! - [`alerting`]: the pending/firing/resolved state machine of an alerting rule;
//! - [`template`]: label and annotation templates;
//! - [`promtool`]: promtool's rule unit tests, run through the same engine;
//! - [`ruleset`], [`service`]: `weir alerter`, both stages on Kafka (see [`service`]);
//! - [`notify`], [`alertmanager`]: what is sent to Alertmanager and when (firing alerts
//!   re-sent so they never expire, resolves announced), and its v2 API client.
pub mod alerting;
pub mod alertmanager;
pub mod backtest;
pub mod engine;
pub mod evaluate;
pub mod functions;
pub mod labels;
pub mod notify;
pub mod plan;
pub mod promtool;
pub mod rules;
pub mod ruleset;
pub mod service;
pub mod template;
