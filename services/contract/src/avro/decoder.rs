//! Decoding a `metrics.raw` record value, whatever its framing and known writer version.
use std::collections::HashMap;

use super::{codec, current, generic, split_framing, versions, Framing, SchemaVersion};
use crate::model::MetricsBatch;

/// Why a record could not be decoded. Consumers send such records to the dead-letter
/// topic with [`DecodeError::kind`] and the message in headers.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeError {
    #[error("empty record value")]
    Empty,
    #[error("unknown framing: first byte 0x{0:02x} is neither C3 01 (Avro single-object) nor 00 (Confluent wire format)")]
    UnknownMagic(u8),
    #[error("truncated framing header: record has only {0} bytes")]
    TruncatedHeader(usize),
    #[error("unknown schema fingerprint {0:016x}: not one of the schemas/avro versions")]
    UnknownFingerprint(u64),
    #[error("unknown Confluent schema id {0}: map it to a schema version in the topology (schemas.confluent_ids)")]
    UnknownSchemaId(u32),
    #[error("truncated datum at byte {at}: needs {needed} more bytes")]
    Truncated { at: usize, needed: usize },
    #[error("corrupt datum at byte {at}: {what}")]
    Corrupt { at: usize, what: String },
    #[error("avro: {0}")]
    Avro(String),
}

impl DecodeError {
    /// A short stable name for metrics labels and dead-letter headers.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Empty => "empty",
            Self::UnknownMagic(_) => "unknown_magic",
            Self::TruncatedHeader(_) => "truncated_header",
            Self::UnknownFingerprint(_) => "unknown_fingerprint",
            Self::UnknownSchemaId(_) => "unknown_schema_id",
            Self::Truncated { .. } => "truncated",
            Self::Corrupt { .. } => "corrupt",
            Self::Avro(_) => "avro",
        }
    }
}

/// Decodes record values. Cheap to clone; build once per consumer.
#[derive(Debug, Clone, Default)]
pub struct Decoder {
    confluent_ids: HashMap<u32, &'static SchemaVersion>,
}

impl Decoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads Confluent-framed records with this schema id as the given known version.
    pub fn with_confluent_id(mut self, id: u32, version: &'static SchemaVersion) -> Self {
        self.confluent_ids.insert(id, version);
        self
    }

    pub fn decode(&self, payload: &[u8]) -> Result<MetricsBatch, DecodeError> {
        let (writer, datum) = self.writer_of(payload)?;
        if std::ptr::eq(writer, current()) {
            codec::decode_current(datum)
        } else {
            generic::decode_with_apache_avro(&writer.schema, datum)
        }
    }

    /// Calls `f` for every series of a record without building a [`MetricsBatch`] when
    /// the record is in the current schema (strings borrowed from `payload`); older
    /// versions are decoded first. Returns how many series there were. The record is
    /// validated as a whole only as it is walked: on `Err`, `f` may have seen some series.
    pub fn visit(
        &self,
        payload: &[u8],
        mut f: impl FnMut(codec::SeriesRef<'_, '_>),
    ) -> Result<usize, DecodeError> {
        let (writer, datum) = self.writer_of(payload)?;
        if std::ptr::eq(writer, current()) {
            return codec::visit_current(datum, f);
        }
        let batch = generic::decode_with_apache_avro(&writer.schema, datum)?;
        for s in &batch.series {
            let labels: Vec<(&str, &str)> = s
                .labels
                .iter()
                .map(|l| (l.name.as_str(), l.value.as_str()))
                .collect();
            f(codec::SeriesRef {
                name: &s.name,
                labels: &labels,
                samples: &s.samples,
                metric_type: s.metric_type,
                unit: s.unit.as_deref(),
                tenant: s.tenant.as_deref(),
            });
        }
        Ok(batch.series.len())
    }

    fn writer_of<'p>(
        &self,
        payload: &'p [u8],
    ) -> Result<(&'static SchemaVersion, &'p [u8]), DecodeError> {
        let (framing, datum) = split_framing(payload)?;
        let writer = match framing {
            Framing::SingleObject { fingerprint } => versions()
                .iter()
                .find(|v| v.matches(fingerprint))
                .ok_or(DecodeError::UnknownFingerprint(fingerprint))?,
            Framing::Confluent { schema_id } => *self
                .confluent_ids
                .get(&schema_id)
                .ok_or(DecodeError::UnknownSchemaId(schema_id))?,
        };
        Ok((writer, datum))
    }
}
