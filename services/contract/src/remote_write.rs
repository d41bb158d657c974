//! Prometheus remote write 1.0: the message types generated from
//! `schemas/proto/remote.proto`, and a direct encoder of `TimeSeries` entries for hot
//! paths that already hold borrowed strings.
#[allow(clippy::all, missing_docs)]
mod generated {
    include!(concat!(env!("OUT_DIR"), "/prometheus.rs"));
}
pub use generated::*;

/// Prometheus remote write 2.0 (`io.prometheus.write.v2.Request`), generated from
/// `schemas/proto/remote_v2.proto`.
#[allow(clippy::all, missing_docs)]
pub mod v2 {
    include!(concat!(env!("OUT_DIR"), "/io.prometheus.write.v2.rs"));
}

use crate::model::Sample as ModelSample;

fn varint_len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn label_len(name: &str, value: &str) -> usize {
    let inner = 1
        + varint_len(name.len() as u64)
        + name.len()
        + 1
        + varint_len(value.len() as u64)
        + value.len();
    1 + varint_len(inner as u64) + inner
}

fn sample_len(s: &ModelSample) -> usize {
    let inner = 9 + 1 + varint_len(s.timestamp_ms as u64);
    1 + varint_len(inner as u64) + inner
}

fn put_label(out: &mut Vec<u8>, name: &str, value: &str) {
    let inner = 1
        + varint_len(name.len() as u64)
        + name.len()
        + 1
        + varint_len(value.len() as u64)
        + value.len();
    out.push(0x0a); // TimeSeries.labels
    put_varint(out, inner as u64);
    out.push(0x0a); // Label.name
    put_varint(out, name.len() as u64);
    out.extend_from_slice(name.as_bytes());
    out.push(0x12); // Label.value
    put_varint(out, value.len() as u64);
    out.extend_from_slice(value.as_bytes());
}

/// Appends one `WriteRequest.timeseries` entry to `out`: `__name__` = `name` placed in
/// sorted order among `labels` (which must be sorted by name), then the samples. A
/// `WriteRequest` body is just such entries one after another, so batches are built by
/// appending and split by byte ranges. Checked against the prost types in the tests.
pub fn push_timeseries(
    out: &mut Vec<u8>,
    name: &str,
    labels: &[(&str, &str)],
    samples: &[ModelSample],
) {
    let at = labels.partition_point(|(n, _)| *n < "__name__");
    let body: usize = labels.iter().map(|(n, v)| label_len(n, v)).sum::<usize>()
        + label_len("__name__", name)
        + samples.iter().map(sample_len).sum::<usize>();
    out.reserve(1 + varint_len(body as u64) + body);
    out.push(0x0a); // WriteRequest.timeseries
    put_varint(out, body as u64);
    for (n, v) in &labels[..at] {
        put_label(out, n, v);
    }
    put_label(out, "__name__", name);
    for (n, v) in &labels[at..] {
        put_label(out, n, v);
    }
    for s in samples {
        let inner = 9 + 1 + varint_len(s.timestamp_ms as u64);
        out.push(0x12); // TimeSeries.samples
        put_varint(out, inner as u64);
        out.push(0x09); // Sample.value, fixed64
        out.extend_from_slice(&s.value.to_le_bytes());
        out.push(0x10); // Sample.timestamp, varint (int64: negatives take 10 bytes)
        put_varint(out, s.timestamp_ms as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Sample;
    use prost::Message;

    #[test]
    fn encodes_what_prost_decodes() {
        let mut out = Vec::new();
        let long = "x".repeat(300);
        push_timeseries(
            &mut out,
            "m",
            &[("Zone", "z"), ("a", "1"), ("big", &long)],
            &[
                Sample::new(1_700_000_000_000, 1.5),
                Sample::new(-1, f64::from_bits(0x7ff0_0000_0000_0002)),
            ],
        );
        push_timeseries(&mut out, "up", &[], &[Sample::new(0, 0.0)]);
        let req = WriteRequest::decode(&out[..]).expect("valid protobuf");
        assert_eq!(req.timeseries.len(), 2);
        let names: Vec<(&str, &str)> = req.timeseries[0]
            .labels
            .iter()
            .map(|l| (l.name.as_str(), l.value.as_str()))
            .collect();
        assert_eq!(
            names,
            vec![
                ("Zone", "z"),
                ("__name__", "m"),
                ("a", "1"),
                ("big", long.as_str())
            ]
        );
        assert_eq!(req.timeseries[0].samples[0].timestamp, 1_700_000_000_000);
        assert_eq!(req.timeseries[0].samples[1].timestamp, -1);
        assert_eq!(
            req.timeseries[0].samples[1].value.to_bits(),
            0x7ff0_0000_0000_0002
        );
        assert_eq!(req.timeseries[1].labels[0].value, "up");
        // Byte for byte what prost writes, but for zero values, which prost leaves out
        // as proto3 defaults and this encoder writes (both decode the same).
        let mut first = Vec::new();
        push_timeseries(
            &mut first,
            "m",
            &[("Zone", "z"), ("a", "1"), ("big", &long)],
            &[Sample::new(1_700_000_000_000, 1.5)],
        );
        let again = WriteRequest::decode(&first[..]).unwrap();
        assert_eq!(first, again.encode_to_vec());
    }

    #[test]
    fn varint_lengths() {
        for v in [0u64, 1, 127, 128, 16383, 16384, u64::MAX] {
            let mut b = Vec::new();
            put_varint(&mut b, v);
            assert_eq!(b.len(), varint_len(v), "{v}");
        }
    }
}
