//! Avro on `metrics.raw`: the schemas (embedded from `schemas/avro`, the only definition),
//! framing, a fast encoder/decoder for the current schema, and a generic decoder built on
//! `apache-avro` for other known writer versions.
//!
//! Written: single-object encoding (`C3 01`, the 8-byte little-endian CRC-64-AVRO
//! fingerprint, the datum). Read: single-object encoding and the Confluent wire format
//! (`00`, the 4-byte big-endian schema id, the datum), the id mapped to a known schema
//! version by config.
mod alert;
mod canonical;
mod codec;
mod decoder;
mod framing;
mod generic;
mod rollup;

use std::sync::OnceLock;

use apache_avro::rabin::Rabin;
use apache_avro::Schema;

pub use canonical::{parsing_canonical_form, rabin};

pub use alert::{
    alert_event_fingerprint, decode_alert_event, encode_alert_event, AlertDecodeError, AlertEvent,
    AlertStatus, DecodedAlertEvent, ALERT_EVENT_V1_AVSC,
};
pub use codec::{
    decode_current, visit_current, BatchEncoder, SeriesRef, MAX_SAMPLE_LEN, RECORD_OVERHEAD,
};
pub use decoder::{DecodeError, Decoder};
pub use framing::{single_object_header, split_framing, Framing};
pub use generic::decode_with_apache_avro;
pub use rollup::{encode_rollup, rollup_fingerprint, RollupRecord, ROLLUP_V1_AVSC};

/// Source of the current schema version, as committed under `schemas/avro`.
pub const METRICS_BATCH_V1_AVSC: &str =
    include_str!("../../../../schemas/avro/metrics_batch.v1.avsc");

/// One known version of the `MetricsBatch` schema.
#[derive(Debug)]
pub struct SchemaVersion {
    /// File stem under `schemas/avro`, e.g. `metrics_batch.v1`.
    pub name: &'static str,
    pub version: u32,
    pub source: &'static str,
    pub schema: Schema,
    /// CRC-64-AVRO (Rabin) of the Parsing Canonical Form, per the specification.
    pub fingerprint: u64,
    /// What `apache-avro` 0.21 computes instead (see [`canonical`]); read as an alias so
    /// single-object records from Rust producers using it are not dead-lettered.
    pub apache_avro_fingerprint: u64,
}

impl SchemaVersion {
    /// Whether a single-object header's fingerprint names this version.
    pub fn matches(&self, fingerprint: u64) -> bool {
        fingerprint == self.fingerprint || fingerprint == self.apache_avro_fingerprint
    }
}

/// Every known version, oldest first; the last is what weir writes.
pub fn versions() -> &'static [SchemaVersion] {
    static VERSIONS: OnceLock<Vec<SchemaVersion>> = OnceLock::new();
    VERSIONS.get_or_init(|| {
        [("metrics_batch.v1", 1, METRICS_BATCH_V1_AVSC)]
            .into_iter()
            .map(|(name, version, source)| {
                // The files are part of the build; a parse failure is a build defect.
                let schema = Schema::parse_str(source)
                    .unwrap_or_else(|e| panic!("schemas/avro/{name}.avsc does not parse: {e}"));
                let pcf = parsing_canonical_form(source)
                    .unwrap_or_else(|e| panic!("schemas/avro/{name}.avsc: {e}"));
                let theirs = schema.fingerprint::<Rabin>();
                let bytes: [u8; 8] = theirs.bytes[..8].try_into().expect("rabin is 8 bytes");
                SchemaVersion {
                    name,
                    version,
                    source,
                    schema,
                    fingerprint: rabin(pcf.as_bytes()),
                    apache_avro_fingerprint: u64::from_le_bytes(bytes),
                }
            })
            .collect()
    })
}

/// apache-avro allocates what a length prefix claims, up to a process-wide limit (512 MiB
/// unless set): a record of a few MiB with a corrupt prefix must fail, not allocate that.
/// Set once, before the first decode; later calls keep the first value.
pub(crate) fn limit_allocations() {
    apache_avro::util::max_allocation_bytes(MAX_AVRO_ALLOCATION);
}

/// The largest single allocation apache-avro makes while decoding (see
/// [`limit_allocations`]): far above any record weir reads.
pub const MAX_AVRO_ALLOCATION: usize = 64 << 20;

/// The version weir writes.
pub fn current() -> &'static SchemaVersion {
    versions().last().expect("at least one schema version")
}

/// Looks a version up by its file stem (`metrics_batch.v1`) or number (`1`, `v1`).
pub fn version_by_name(name: &str) -> Option<&'static SchemaVersion> {
    let n = name.trim_start_matches('v');
    versions()
        .iter()
        .find(|v| v.name == name || n.parse::<u32>().ok() == Some(v.version))
}

#[cfg(test)]
mod tests;
