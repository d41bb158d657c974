//! Hand-rolled Avro binary encoding of the *current* `MetricsBatch` schema.
//!
//! Why not `apache-avro` here: its generic path builds a `Value` tree per record, which
//! costs several times the whole gateway budget per sample. The layout below follows the
//! schema field for field; the tests check it byte for byte against `apache-avro` in both
//! directions, so the two cannot drift apart silently.
use super::{current, single_object_header, DecodeError};
use crate::model::{Label, MetricType, MetricsBatch, Sample, Series};

/// The most bytes one sample takes in a record: a zig-zag varint timestamp and a double.
pub const MAX_SAMPLE_LEN: usize = 18;

/// Bytes a record has besides its series: the single-object header, the block count
/// and the end of the array.
pub const RECORD_OVERHEAD: usize = 22;

/// Builds one record value (single-object framed) from series pushed one at a time.
#[derive(Debug, Default)]
pub struct BatchEncoder {
    body: Vec<u8>,
    series: usize,
    samples: usize,
}

impl BatchEncoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// An encoder whose buffer starts with room for about `bytes` bytes.
    pub fn with_capacity(bytes: usize) -> Self {
        Self {
            body: Vec::with_capacity(bytes),
            ..Self::default()
        }
    }

    pub fn push(&mut self, s: &Series) {
        self.push_parts(
            &s.name,
            s.labels.iter().map(|l| (l.name.as_str(), l.value.as_str())),
            &s.samples,
            s.metric_type,
            s.unit.as_deref(),
            s.tenant.as_deref(),
        );
    }

    /// Pushes a series given as borrowed parts (labels sorted by name), so hot paths can
    /// encode straight from a request buffer without building a [`Series`].
    pub fn push_parts<'a>(
        &mut self,
        name: &str,
        labels: impl ExactSizeIterator<Item = (&'a str, &'a str)>,
        samples: &[Sample],
        metric_type: MetricType,
        unit: Option<&str>,
        tenant: Option<&str>,
    ) {
        let b = &mut self.body;
        put_str(b, name);
        if labels.len() > 0 {
            put_long(b, labels.len() as i64);
            for (n, v) in labels {
                put_str(b, n);
                put_str(b, v);
            }
        }
        put_long(b, 0);
        if !samples.is_empty() {
            put_long(b, samples.len() as i64);
            for x in samples {
                put_long(b, x.timestamp_ms);
                b.extend_from_slice(&x.value.to_le_bytes());
            }
        }
        put_long(b, 0);
        put_long(b, metric_type.index() as i64);
        put_opt_str(b, unit);
        put_opt_str(b, tenant);
        self.series += 1;
        self.samples += samples.len();
    }

    pub fn series(&self) -> usize {
        self.series
    }

    /// An upper bound of the bytes [`push_parts`](Self::push_parts) adds for a series,
    /// without its samples; each sample adds at most [`MAX_SAMPLE_LEN`] more. Lets a
    /// caller split a series across records before it writes one too large.
    pub fn series_head_bound<'a>(
        name: &str,
        labels: impl ExactSizeIterator<Item = (&'a str, &'a str)>,
        unit: Option<&str>,
        tenant: Option<&str>,
    ) -> usize {
        // Every string is a varint length (at most 10 bytes) and its bytes; the label and
        // sample arrays, the type and the two optionals add a few varints more.
        let n = labels.len();
        let label_bytes: usize = labels.map(|(k, v)| k.len() + v.len()).sum();
        name.len()
            + label_bytes
            + unit.map_or(0, str::len)
            + tenant.map_or(0, str::len)
            + 10 * (2 * n + 10)
    }

    pub fn samples(&self) -> usize {
        self.samples
    }

    /// Bytes the finished record will have, about (the header and counts add a few).
    pub fn approx_len(&self) -> usize {
        self.body.len() + RECORD_OVERHEAD
    }

    pub fn is_empty(&self) -> bool {
        self.series == 0
    }

    /// Returns the framed record value and leaves the encoder empty for reuse.
    pub fn finish(&mut self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.body.len() + RECORD_OVERHEAD);
        out.extend_from_slice(&single_object_header(current().fingerprint));
        if self.series > 0 {
            put_long(&mut out, self.series as i64);
            out.extend_from_slice(&self.body);
        }
        put_long(&mut out, 0);
        // Keep the buffer's capacity: the next record of this partition reuses it.
        self.body.clear();
        self.series = 0;
        self.samples = 0;
        out
    }

    /// Encodes a whole batch in one call.
    pub fn encode(batch: &MetricsBatch) -> Vec<u8> {
        let mut e = Self::new();
        for s in &batch.series {
            e.push(s);
        }
        e.finish()
    }
}

pub(crate) fn put_long(b: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        b.push((z as u8) | 0x80);
        z >>= 7;
    }
    b.push(z as u8);
}

pub(crate) fn put_str(b: &mut Vec<u8>, s: &str) {
    put_long(b, s.len() as i64);
    b.extend_from_slice(s.as_bytes());
}

pub(crate) fn put_double(b: &mut Vec<u8>, v: f64) {
    b.extend_from_slice(&v.to_le_bytes());
}

fn put_opt_str(b: &mut Vec<u8>, s: Option<&str>) {
    match s {
        None => put_long(b, 0),
        Some(s) => {
            put_long(b, 1);
            put_str(b, s);
        }
    }
}

/// Decodes a datum (no framing) written with the current schema.
pub fn decode_current(datum: &[u8]) -> Result<MetricsBatch, DecodeError> {
    let mut r = Reader { buf: datum, pos: 0 };
    let mut series = Vec::new();
    r.array(&mut series, 4, |r| r.series())?;
    if r.pos != datum.len() {
        return Err(r.corrupt(format!(
            "{} trailing bytes after the batch",
            datum.len() - r.pos
        )));
    }
    Ok(MetricsBatch { series })
}

/// A series borrowed from a record's bytes, as [`visit_current`] hands it out. Labels
/// and samples live in buffers reused from one series to the next.
#[derive(Debug, Clone, Copy)]
pub struct SeriesRef<'s, 'a> {
    pub name: &'a str,
    pub labels: &'s [(&'a str, &'a str)],
    pub samples: &'s [Sample],
    pub metric_type: MetricType,
    pub unit: Option<&'a str>,
    pub tenant: Option<&'a str>,
}

/// Calls `f` for every series of a datum written with the current schema, without
/// allocating per series: strings are borrowed from `datum`.
pub fn visit_current<'a>(
    datum: &'a [u8],
    mut f: impl FnMut(SeriesRef<'_, 'a>),
) -> Result<usize, DecodeError> {
    let mut r = Reader { buf: datum, pos: 0 };
    let mut labels: Vec<(&'a str, &'a str)> = Vec::with_capacity(16);
    let mut samples: Vec<Sample> = Vec::with_capacity(16);
    let mut n = 0;
    r.blocks(4, |r, count| {
        for _ in 0..count {
            let name = r.str_ref()?;
            labels.clear();
            r.blocks(2, |r, c| {
                for _ in 0..c {
                    labels.push((r.str_ref()?, r.str_ref()?));
                }
                Ok(())
            })?;
            samples.clear();
            r.array(&mut samples, 9, |r| {
                Ok(Sample {
                    timestamp_ms: r.long()?,
                    value: r.double()?,
                })
            })?;
            let t = r.long()?;
            let metric_type = usize::try_from(t)
                .ok()
                .and_then(MetricType::from_index)
                .ok_or_else(|| r.corrupt(format!("metric type index {t} out of range")))?;
            let unit = r.opt_str_ref()?;
            let tenant = r.opt_str_ref()?;
            f(SeriesRef {
                name,
                labels: &labels,
                samples: &samples,
                metric_type,
                unit,
                tenant,
            });
            n += 1;
        }
        Ok(())
    })?;
    if r.pos != datum.len() {
        return Err(r.corrupt(format!(
            "{} trailing bytes after the batch",
            datum.len() - r.pos
        )));
    }
    Ok(n)
}

/// Reads Avro binary with every length checked against the bytes left, so no claimed
/// length allocates more than the record holds. Shared by the decoders of this module
/// and of `alert`.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// `Err` unless every byte was read.
    pub(crate) fn end(&self) -> Result<(), DecodeError> {
        if self.pos != self.buf.len() {
            return Err(self.corrupt(format!(
                "{} trailing bytes after the datum",
                self.buf.len() - self.pos
            )));
        }
        Ok(())
    }

    pub(crate) fn corrupt(&self, what: String) -> DecodeError {
        DecodeError::Corrupt { at: self.pos, what }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let rest = self.buf.len() - self.pos;
        if n > rest {
            return Err(DecodeError::Truncated {
                at: self.pos,
                needed: n - rest,
            });
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    pub(crate) fn long(&mut self) -> Result<i64, DecodeError> {
        let mut z: u64 = 0;
        for i in 0..10 {
            let b = *self.take(1)?.first().expect("one byte");
            z |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok((z >> 1) as i64 ^ -((z & 1) as i64));
            }
        }
        Err(self.corrupt("varint longer than 10 bytes".into()))
    }

    fn len(&mut self, what: &str) -> Result<usize, DecodeError> {
        let n = self.long()?;
        usize::try_from(n).map_err(|_| self.corrupt(format!("negative {what} length {n}")))
    }

    pub(crate) fn str_ref(&mut self) -> Result<&'a str, DecodeError> {
        let n = self.len("string")?;
        let at = self.pos;
        let bytes = self.take(n)?;
        std::str::from_utf8(bytes).map_err(|e| DecodeError::Corrupt {
            at,
            what: format!("string is not UTF-8: {e}"),
        })
    }

    pub(crate) fn string(&mut self) -> Result<String, DecodeError> {
        self.str_ref().map(str::to_owned)
    }

    fn opt_str_ref(&mut self) -> Result<Option<&'a str>, DecodeError> {
        match self.long()? {
            0 => Ok(None),
            1 => self.str_ref().map(Some),
            i => Err(self.corrupt(format!("union index {i} out of range for [null, string]"))),
        }
    }

    pub(crate) fn double(&mut self) -> Result<f64, DecodeError> {
        let b = self.take(8)?;
        Ok(f64::from_le_bytes(b.try_into().expect("8 bytes")))
    }

    fn opt_string(&mut self) -> Result<Option<String>, DecodeError> {
        self.opt_str_ref().map(|s| s.map(str::to_owned))
    }

    /// Reads Avro array blocks into `out`. `min_item` (bytes an item takes at the least)
    /// bounds what a corrupt count can make us allocate.
    fn array<T>(
        &mut self,
        out: &mut Vec<T>,
        min_item: usize,
        mut item: impl FnMut(&mut Self) -> Result<T, DecodeError>,
    ) -> Result<(), DecodeError> {
        self.blocks(min_item, |r, count| {
            out.reserve(count);
            for _ in 0..count {
                out.push(item(r)?);
            }
            Ok(())
        })
    }

    /// Walks Avro array blocks, handing each block's item count to `block`, which reads
    /// that many items.
    pub(crate) fn blocks(
        &mut self,
        min_item: usize,
        mut block: impl FnMut(&mut Self, usize) -> Result<(), DecodeError>,
    ) -> Result<(), DecodeError> {
        loop {
            let mut count = self.long()?;
            if count == 0 {
                return Ok(());
            }
            if count < 0 {
                // A negative count is followed by the block's size in bytes.
                count = count
                    .checked_neg()
                    .ok_or_else(|| self.corrupt("array block count overflows".into()))?;
                self.long()?;
            }
            let count = count as usize;
            let rest = self.buf.len() - self.pos;
            if count.saturating_mul(min_item) > rest {
                return Err(self.corrupt(format!(
                    "array block of {count} items cannot fit in the {rest} bytes left"
                )));
            }
            block(self, count)?;
        }
    }

    fn series(&mut self) -> Result<Series, DecodeError> {
        let name = self.string()?;
        let mut labels = Vec::new();
        self.array(&mut labels, 2, |r| {
            Ok(Label {
                name: r.string()?,
                value: r.string()?,
            })
        })?;
        let mut samples = Vec::new();
        self.array(&mut samples, 9, |r| {
            Ok(Sample {
                timestamp_ms: r.long()?,
                value: r.double()?,
            })
        })?;
        let t = self.long()?;
        let metric_type = usize::try_from(t)
            .ok()
            .and_then(MetricType::from_index)
            .ok_or_else(|| self.corrupt(format!("metric type index {t} out of range")))?;
        Ok(Series {
            name,
            labels,
            samples,
            metric_type,
            unit: self.opt_string()?,
            tenant: self.opt_string()?,
        })
    }
}
