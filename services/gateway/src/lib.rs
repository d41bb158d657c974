//! `weir gateway`: accepts pushed metrics over HTTP and writes them to `metrics.raw`.
//!
//! One thin handler per protocol ([`protocols`]) turns a request into series; the shared
//! [`weir_ingest::Ingest`] (also `weir scrape`'s) validates them, adds the tenant, groups them by partition (murmur2
//! of the series key), encodes one Avro record per partition and answers only after
//! Kafka acknowledged every record (acks=all, idempotent producer).
pub mod auth;
pub mod body;
pub mod error;
pub mod http;
pub mod protocols;
pub mod server;
pub mod tenants;

pub use server::run;
