//! A zero-copy reader for the remote-write 1.0 protobuf messages, borrowing strings
//! from the request buffer. Field numbers follow `schemas/proto/remote.proto`; unknown
//! fields are skipped as protobuf requires.
use weir_contract::Sample;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireError(pub String);

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

type Result<T> = std::result::Result<T, WireError>;

fn err<T>(what: impl Into<String>) -> Result<T> {
    Err(WireError(what.into()))
}

const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;
const FIXED32: u8 = 5;

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    fn done(&self) -> bool {
        self.pos >= self.buf.len()
    }

    fn varint(&mut self) -> Result<u64> {
        let mut v: u64 = 0;
        for i in 0..10 {
            let Some(&b) = self.buf.get(self.pos) else {
                return err(format!("truncated varint at byte {}", self.pos));
            };
            self.pos += 1;
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        err(format!("varint longer than 10 bytes at byte {}", self.pos))
    }

    fn key(&mut self) -> Result<(u64, u8)> {
        let k = self.varint()?;
        Ok((k >> 3, (k & 7) as u8))
    }

    fn bytes(&mut self) -> Result<&'a [u8]> {
        let n = self.varint()? as usize;
        let end = self.pos.checked_add(n).filter(|e| *e <= self.buf.len());
        let Some(end) = end else {
            return err(format!("length {n} at byte {} runs past the end", self.pos));
        };
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn str(&mut self, what: &str) -> Result<&'a str> {
        let at = self.pos;
        std::str::from_utf8(self.bytes()?)
            .or_else(|_| err(format!("{what} at byte {at} is not UTF-8")))
    }

    fn fixed64(&mut self) -> Result<u64> {
        let end = self.pos + 8;
        if end > self.buf.len() {
            return err(format!("truncated fixed64 at byte {}", self.pos));
        }
        let v = u64::from_le_bytes(self.buf[self.pos..end].try_into().expect("8 bytes"));
        self.pos = end;
        Ok(v)
    }

    fn skip(&mut self, wire_type: u8) -> Result<()> {
        match wire_type {
            VARINT => self.varint().map(|_| ()),
            FIXED64 => self.fixed64().map(|_| ()),
            LEN => self.bytes().map(|_| ()),
            FIXED32 => {
                if self.pos + 4 > self.buf.len() {
                    return err("truncated fixed32");
                }
                self.pos += 4;
                Ok(())
            }
            t => err(format!("unsupported wire type {t} at byte {}", self.pos)),
        }
    }

    /// Reads a field of the expected wire type, or says which field was malformed.
    fn expect(&self, field: &str, got: u8, want: u8) -> Result<()> {
        if got == want {
            Ok(())
        } else {
            err(format!("{field} has wire type {got}, expected {want}"))
        }
    }
}

/// What a `TimeSeries` carried besides its labels and samples.
#[derive(Debug, Default, Clone, Copy)]
pub struct SeriesInfo<'a> {
    /// The `__name__` label's value.
    pub name: Option<&'a str>,
    pub duplicate_name: bool,
    /// Native histograms (field 4), which weir does not accept.
    pub histograms: usize,
}

/// Calls `visit` for every `TimeSeries` with its labels (without `__name__`) and
/// samples, in buffers reused from one series to the next.
pub fn for_each_series<'a>(
    body: &'a [u8],
    labels: &mut Vec<(&'a str, &'a str)>,
    samples: &mut Vec<Sample>,
    mut visit: impl FnMut(SeriesInfo<'a>, &mut Vec<(&'a str, &'a str)>, &[Sample]),
) -> Result<()> {
    let mut r = Reader::new(body);
    while !r.done() {
        let (field, wt) = r.key()?;
        if field != 1 {
            r.skip(wt)?;
            continue;
        }
        r.expect("WriteRequest.timeseries", wt, LEN)?;
        let ts = r.bytes()?;
        labels.clear();
        samples.clear();
        let info = time_series(ts, labels, samples)?;
        visit(info, labels, samples);
    }
    Ok(())
}

fn time_series<'a>(
    buf: &'a [u8],
    labels: &mut Vec<(&'a str, &'a str)>,
    samples: &mut Vec<Sample>,
) -> Result<SeriesInfo<'a>> {
    let mut info = SeriesInfo::default();
    let mut r = Reader::new(buf);
    while !r.done() {
        let (field, wt) = r.key()?;
        match field {
            1 => {
                r.expect("TimeSeries.labels", wt, LEN)?;
                let (n, v) = label(r.bytes()?)?;
                if n == "__name__" {
                    info.duplicate_name |= info.name.is_some();
                    info.name = Some(v);
                } else {
                    labels.push((n, v));
                }
            }
            2 => {
                r.expect("TimeSeries.samples", wt, LEN)?;
                samples.push(sample(r.bytes()?)?);
            }
            4 => {
                r.skip(wt)?;
                info.histograms += 1;
            }
            _ => r.skip(wt)?,
        }
    }
    Ok(info)
}

fn label(buf: &[u8]) -> Result<(&str, &str)> {
    let (mut name, mut value) = ("", "");
    let mut r = Reader::new(buf);
    while !r.done() {
        let (field, wt) = r.key()?;
        match field {
            1 => {
                r.expect("Label.name", wt, LEN)?;
                name = r.str("label name")?;
            }
            2 => {
                r.expect("Label.value", wt, LEN)?;
                value = r.str("label value")?;
            }
            _ => r.skip(wt)?,
        }
    }
    Ok((name, value))
}

fn sample(buf: &[u8]) -> Result<Sample> {
    let mut s = Sample::new(0, 0.0);
    let mut r = Reader::new(buf);
    while !r.done() {
        let (field, wt) = r.key()?;
        match field {
            1 => {
                r.expect("Sample.value", wt, FIXED64)?;
                s.value = f64::from_bits(r.fixed64()?);
            }
            2 => {
                r.expect("Sample.timestamp", wt, VARINT)?;
                s.timestamp_ms = r.varint()? as i64;
            }
            _ => r.skip(wt)?,
        }
    }
    Ok(s)
}

/// One `MetricMetadata`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metadata<'a> {
    pub metric_type: u64,
    pub family: &'a str,
    pub unit: &'a str,
}

pub fn for_each_metadata<'a>(body: &'a [u8], mut visit: impl FnMut(Metadata<'a>)) -> Result<()> {
    let mut r = Reader::new(body);
    while !r.done() {
        let (field, wt) = r.key()?;
        if field != 3 {
            r.skip(wt)?;
            continue;
        }
        r.expect("WriteRequest.metadata", wt, LEN)?;
        let mut m = Metadata {
            metric_type: 0,
            family: "",
            unit: "",
        };
        let mut mr = Reader::new(r.bytes()?);
        while !mr.done() {
            let (f, w) = mr.key()?;
            match (f, w) {
                (1, VARINT) => m.metric_type = mr.varint()?,
                (2, LEN) => m.family = mr.str("metric family name")?,
                (5, LEN) => m.unit = mr.str("unit")?,
                (_, w) => mr.skip(w)?,
            }
        }
        visit(m);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;
    use weir_contract::remote_write as pb;

    fn lbl(n: &str, v: &str) -> pb::Label {
        pb::Label {
            name: n.into(),
            value: v.into(),
        }
    }

    /// Everything prost decodes, this reader decodes the same way.
    #[test]
    fn agrees_with_the_prost_reference() {
        let req = pb::WriteRequest {
            timeseries: vec![
                pb::TimeSeries {
                    labels: vec![lbl("__name__", "up"), lbl("job", "x"), lbl("ünï", "cödé")],
                    samples: vec![
                        pb::Sample {
                            value: 1.5,
                            timestamp: 1_700_000_000_000,
                        },
                        pb::Sample {
                            value: f64::from_bits(0x7ff0_0000_0000_0002),
                            timestamp: -3,
                        },
                    ],
                    histograms: vec![vec![1, 2, 3]],
                },
                pb::TimeSeries {
                    labels: vec![lbl("job", "no-name")],
                    samples: vec![],
                    histograms: vec![],
                },
            ],
            metadata: vec![pb::MetricMetadata {
                r#type: 1,
                metric_family_name: "http_requests".into(),
                help: "help".into(),
                unit: "requests".into(),
            }],
        };
        let body = req.encode_to_vec();
        let (mut labels, mut samples) = (Vec::new(), Vec::new());
        let mut seen = Vec::new();
        for_each_series(&body, &mut labels, &mut samples, |info, l, s| {
            seen.push((
                info.name.map(str::to_string),
                info.histograms,
                l.clone(),
                s.to_vec(),
            ));
        })
        .unwrap();
        assert_eq!(seen.len(), 2);
        for ((name, hist, labels, samples), ts) in seen.iter().zip(&req.timeseries) {
            let want_name = ts
                .labels
                .iter()
                .find(|l| l.name == "__name__")
                .map(|l| l.value.clone());
            assert_eq!(name, &want_name);
            assert_eq!(*hist, ts.histograms.len());
            let want: Vec<(&str, &str)> = ts
                .labels
                .iter()
                .filter(|l| l.name != "__name__")
                .map(|l| (l.name.as_str(), l.value.as_str()))
                .collect();
            assert_eq!(labels, &want);
            assert_eq!(samples.len(), ts.samples.len());
            for (a, b) in samples.iter().zip(&ts.samples) {
                assert_eq!(a.timestamp_ms, b.timestamp);
                assert_eq!(a.value.to_bits(), b.value.to_bits());
            }
        }
        let mut md = Vec::new();
        for_each_metadata(&body, |m| md.push(m)).unwrap();
        assert_eq!(
            md,
            vec![Metadata {
                metric_type: 1,
                family: "http_requests",
                unit: "requests"
            }]
        );
    }

    #[test]
    fn unknown_fields_are_skipped() {
        // Exemplars (TimeSeries field 3) and a made-up top-level field 9 of each wire type.
        let mut body = pb::WriteRequest {
            timeseries: vec![pb::TimeSeries {
                labels: vec![lbl("__name__", "m")],
                samples: vec![pb::Sample {
                    value: 2.0,
                    timestamp: 5,
                }],
                histograms: vec![],
            }],
            metadata: vec![],
        }
        .encode_to_vec();
        body.extend_from_slice(&[
            0x48, 0x01, 0x49, 0, 0, 0, 0, 0, 0, 0, 0, 0x4a, 0x01, 0xff, 0x4d, 0, 0, 0, 0,
        ]);
        let (mut labels, mut samples) = (Vec::new(), Vec::new());
        let mut n = 0;
        for_each_series(&body, &mut labels, &mut samples, |info, _, s| {
            assert_eq!(info.name, Some("m"));
            assert_eq!(s, &[Sample::new(5, 2.0)]);
            n += 1;
        })
        .unwrap();
        assert_eq!(n, 1);
    }

    #[test]
    fn every_truncation_and_garbage_is_an_error_not_a_panic() {
        let body = pb::WriteRequest {
            timeseries: vec![pb::TimeSeries {
                labels: vec![lbl("__name__", "m"), lbl("a", "b")],
                samples: vec![pb::Sample {
                    value: 2.0,
                    timestamp: 5,
                }],
                histograms: vec![],
            }],
            metadata: vec![],
        }
        .encode_to_vec();
        let (mut labels, mut samples) = (Vec::new(), Vec::new());
        for n in 1..body.len() {
            // A cut inside a nested message must fail; a cut exactly between top-level
            // fields cannot be told from a shorter request.
            let r = for_each_series(&body[..n], &mut labels, &mut samples, |_, _, _| {});
            assert!(r.is_err(), "prefix {n} parsed");
        }
        for garbage in [
            &b"\xff\xff\xff\xff"[..],
            b"\x0a\xff\xff\xff\xff\x0f",
            b"\x0b",
            b"\x0a\x02\x0a\x05",
        ] {
            assert!(for_each_series(garbage, &mut labels, &mut samples, |_, _, _| {}).is_err());
        }
        let bad_utf8 = [0x0a, 0x06, 0x0a, 0x04, 0x0a, 0x02, 0xff, 0xfe];
        let e = for_each_series(&bad_utf8, &mut labels, &mut samples, |_, _, _| {}).unwrap_err();
        assert!(e.0.contains("UTF-8"), "{e}");
    }
}
