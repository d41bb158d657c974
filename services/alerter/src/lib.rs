//! weir's alerter: Prometheus alerting rules evaluated on event time.
//!
//! - [`rules`]: rule files in Prometheus' format, checked at load;
//! - [`plan`]: the streaming subset of PromQL, compiled from `promql-parser`'s AST;
//! - [`functions`]: range functions as Prometheus 2.42 computes them;
//! - [`evaluate`]: per-step evaluation in two stages (per series, then merged across
//!   partitions);
//! - [`alerting`]: the pending/firing/resolved state machine of an alerting rule;
//! - [`template`]: label and annotation templates;
//! - [`promtool`]: promtool's rule unit tests, run through the same engine.
pub mod alerting;
pub mod engine;
pub mod evaluate;
pub mod functions;
pub mod labels;
pub mod plan;
pub mod promtool;
pub mod rules;
pub mod template;
