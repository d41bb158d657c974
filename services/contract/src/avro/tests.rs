use apache_avro::types::Value;

use super::*;
use crate::model::{Label, MetricType, MetricsBatch, Sample, Series};

/// Prometheus' staleness marker: a NaN with a specific payload, kept bit for bit.
const STALE_NAN: u64 = 0x7ff0_0000_0000_0002;

fn sample_batch() -> MetricsBatch {
    let mut a = Series::new(
        "cpu_usage",
        vec![Label::new("region", "eu"), Label::new("host", "a\"b\\c")],
        vec![
            Sample::new(1_700_000_000_000, 0.25),
            Sample::new(-5, -1.5e300),
            Sample::new(i64::MAX, f64::from_bits(STALE_NAN)),
        ],
    );
    a.metric_type = MetricType::Gauge;
    a.unit = Some("ratio".into());
    a.tenant = Some("acme".into());
    let b = Series::new("up", vec![], vec![Sample::new(0, 1.0)]);
    let c = Series::new("ünïcode_lbl", vec![Label::new("k", "värde ✓")], vec![]);
    MetricsBatch {
        series: vec![a, b, c],
    }
}

fn to_value(batch: &MetricsBatch) -> Value {
    let opt = |s: &Option<String>| match s {
        None => Value::Union(0, Box::new(Value::Null)),
        Some(s) => Value::Union(1, Box::new(Value::String(s.clone()))),
    };
    Value::Record(vec![(
        "series".into(),
        Value::Array(
            batch
                .series
                .iter()
                .map(|s| {
                    Value::Record(vec![
                        ("name".into(), Value::String(s.name.clone())),
                        (
                            "labels".into(),
                            Value::Array(
                                s.labels
                                    .iter()
                                    .map(|l| {
                                        Value::Record(vec![
                                            ("name".into(), Value::String(l.name.clone())),
                                            ("value".into(), Value::String(l.value.clone())),
                                        ])
                                    })
                                    .collect(),
                            ),
                        ),
                        (
                            "samples".into(),
                            Value::Array(
                                s.samples
                                    .iter()
                                    .map(|x| {
                                        Value::Record(vec![
                                            (
                                                "timestamp".into(),
                                                Value::TimestampMillis(x.timestamp_ms),
                                            ),
                                            ("value".into(), Value::Double(x.value)),
                                        ])
                                    })
                                    .collect(),
                            ),
                        ),
                        (
                            "type".into(),
                            Value::Enum(
                                s.metric_type.index() as u32,
                                MetricType::SYMBOLS[s.metric_type.index()].into(),
                            ),
                        ),
                        ("unit".into(), opt(&s.unit)),
                        ("tenant".into(), opt(&s.tenant)),
                    ])
                })
                .collect(),
        ),
    )])
}

fn assert_same(a: &MetricsBatch, b: &MetricsBatch) {
    assert_eq!(a.series.len(), b.series.len());
    for (x, y) in a.series.iter().zip(&b.series) {
        assert_eq!(x.name, y.name);
        assert_eq!(x.labels, y.labels);
        assert_eq!(x.metric_type, y.metric_type);
        assert_eq!(x.unit, y.unit);
        assert_eq!(x.tenant, y.tenant);
        assert_eq!(x.samples.len(), y.samples.len());
        for (p, q) in x.samples.iter().zip(&y.samples) {
            assert!(p.bit_eq(q), "{p:?} != {q:?}");
        }
    }
}

#[test]
fn round_trips_through_the_fast_codec() {
    let batch = sample_batch();
    let bytes = BatchEncoder::encode(&batch);
    let back = Decoder::new().decode(&bytes).expect("decodes");
    assert_same(&batch, &back);
}

#[test]
fn fast_encoder_writes_what_apache_avro_writes() {
    let batch = sample_batch();
    let ours = BatchEncoder::encode(&batch);
    let theirs = apache_avro::to_avro_datum(&current().schema, to_value(&batch)).expect("encodes");
    assert_eq!(&ours[10..], &theirs[..]);
    assert_eq!(&ours[..10], &single_object_header(current().fingerprint));
}

#[test]
fn fingerprint_is_the_specs_not_apache_avros() {
    // The value fastavro (and Java) compute (fastavro prints its bytes: e748a6ba40a92a30) for schemas/avro/metrics_batch.v1.avsc; if the
    // schema file changes, this must change with it — in a new version file.
    assert_eq!(current().fingerprint, 0x302a_a940_baa6_48e7);
    assert_ne!(current().fingerprint, current().apache_avro_fingerprint);
}

#[test]
fn reads_single_object_records_from_apache_avros_writer() {
    let mut w = apache_avro::GenericSingleObjectWriter::new_with_capacity(&current().schema, 1024)
        .expect("writer");
    let mut out = Vec::new();
    w.write_value(to_value(&sample_batch()), &mut out)
        .expect("writes");
    assert_same(
        &sample_batch(),
        &Decoder::new().decode(&out).expect("decodes"),
    );
}

#[test]
fn apache_avro_reads_what_the_fast_encoder_writes() {
    let batch = sample_batch();
    let bytes = BatchEncoder::encode(&batch);
    let back = decode_with_apache_avro(&current().schema, &bytes[10..]).expect("decodes");
    assert_same(&batch, &back);
}

#[test]
fn reads_confluent_wire_format_with_a_mapped_id() {
    let batch = sample_batch();
    let datum = &BatchEncoder::encode(&batch)[10..];
    let mut framed = vec![0u8, 0, 0, 0, 42];
    framed.extend_from_slice(datum);
    let d = Decoder::new().with_confluent_id(42, current());
    assert_same(&batch, &d.decode(&framed).expect("decodes"));
    assert_eq!(
        Decoder::new().decode(&framed),
        Err(DecodeError::UnknownSchemaId(42))
    );
}

#[test]
fn reads_multi_block_and_sized_blocks() {
    // Writers may split arrays into blocks and give a negative count plus the block size.
    let mut datum = Vec::new();
    // series: block of -1 items with size, then a block of 1, then end.
    let one = &BatchEncoder::encode(&MetricsBatch {
        series: vec![Series::new("a", vec![], vec![Sample::new(1, 2.0)])],
    })[10..];
    let series_bytes = &one[1..one.len() - 1]; // strip count 1 and terminating 0
    datum.push(0x01); // zigzag(-1)
    datum.push((series_bytes.len() as u8) << 1);
    datum.extend_from_slice(series_bytes);
    datum.push(0x02); // zigzag(1)
    datum.extend_from_slice(series_bytes);
    datum.push(0);
    let batch = decode_current(&datum).expect("decodes");
    assert_eq!(batch.series.len(), 2);
    assert_eq!(batch.series[1].samples, vec![Sample::new(1, 2.0)]);
}

#[test]
fn every_truncation_is_an_error_not_a_panic() {
    let bytes = BatchEncoder::encode(&sample_batch());
    for n in 0..bytes.len() {
        assert!(
            Decoder::new().decode(&bytes[..n]).is_err(),
            "prefix {n} decoded"
        );
    }
}

#[test]
fn corrupt_records_are_named() {
    let d = Decoder::new();
    assert_eq!(d.decode(b""), Err(DecodeError::Empty));
    assert_eq!(
        d.decode(b"{\"json\":1}"),
        Err(DecodeError::UnknownMagic(b'{'))
    );
    let mut bad_fp = BatchEncoder::encode(&sample_batch());
    bad_fp[2] ^= 0xff;
    assert!(matches!(
        d.decode(&bad_fp),
        Err(DecodeError::UnknownFingerprint(_))
    ));
    let mut trailing = BatchEncoder::encode(&sample_batch());
    trailing.push(7);
    assert!(matches!(
        d.decode(&trailing),
        Err(DecodeError::Corrupt { .. })
    ));
    // A huge array count must not allocate: it is checked against the bytes left.
    let mut huge = single_object_header(current().fingerprint).to_vec();
    huge.extend_from_slice(&[0xfe, 0xff, 0xff, 0xff, 0x0f]);
    assert!(matches!(d.decode(&huge), Err(DecodeError::Corrupt { .. })));
}

#[test]
fn versions_are_found_by_name() {
    assert_eq!(
        version_by_name("metrics_batch.v1").map(|v| v.version),
        Some(1)
    );
    assert_eq!(version_by_name("v1").map(|v| v.version), Some(1));
    assert!(version_by_name("v9").is_none());
}

#[test]
fn visiting_sees_what_decoding_sees() {
    let batch = sample_batch();
    let bytes = BatchEncoder::encode(&batch);
    let mut seen = Vec::new();
    let n = Decoder::new()
        .visit(&bytes, |s| {
            seen.push(Series {
                name: s.name.into(),
                labels: s.labels.iter().map(|(n, v)| Label::new(*n, *v)).collect(),
                samples: s.samples.to_vec(),
                metric_type: s.metric_type,
                unit: s.unit.map(Into::into),
                tenant: s.tenant.map(Into::into),
            })
        })
        .expect("visits");
    assert_eq!(n, 3);
    assert_same(&batch, &MetricsBatch { series: seen });
    for cut in 0..bytes.len() {
        assert!(
            Decoder::new().visit(&bytes[..cut], |_| {}).is_err(),
            "prefix {cut}"
        );
    }
}
