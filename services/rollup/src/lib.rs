//! `weir rollup`: reads `metrics.raw` as consumer group `rollup-aggregators`, rolls every
//! series up into tumbling tiers (1m, then 5m from 1m and 1h from 5m), and writes the rows
//! to ClickHouse and to `metrics.rollup.<tier>`.
pub mod aggregate;
pub mod dataflow;
pub mod inprocess;
pub mod replay;
pub mod service;
pub mod sink;
pub mod sketch;
pub mod testkit;
pub mod tiers;

pub use service::run;
