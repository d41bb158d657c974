//! Avro on `metrics.rollup.<tier>`: one record per series and window, in schema
//! `schemas/avro/rollup.v1.avsc`, single-object encoded.
use std::sync::OnceLock;

use super::canonical::{parsing_canonical_form, rabin};
use super::codec::{put_double, put_long, put_str};
use super::framing::single_object_header;

pub const ROLLUP_V1_AVSC: &str = include_str!("../../../../schemas/avro/rollup.v1.avsc");

/// A row of a rollup tier.
#[derive(Debug, Clone, PartialEq)]
pub struct RollupRecord<'a> {
    pub series: &'a str,
    pub tier: &'a str,
    pub window_start: i64,
    pub window_end: i64,
    pub count: i64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
    pub first: f64,
    pub first_ts: i64,
    pub last: f64,
    pub last_ts: i64,
    pub increase: f64,
    pub p50: f64,
    pub p90: f64,
    pub p95: f64,
    pub p99: f64,
}

/// The schema's CRC-64-AVRO fingerprint.
pub fn rollup_fingerprint() -> u64 {
    static F: OnceLock<u64> = OnceLock::new();
    *F.get_or_init(|| {
        let pcf = parsing_canonical_form(ROLLUP_V1_AVSC)
            .expect("schemas/avro/rollup.v1.avsc is part of the build and valid");
        rabin(pcf.as_bytes())
    })
}

/// Single-object encoding of one record.
pub fn encode_rollup(r: &RollupRecord<'_>) -> Vec<u8> {
    let mut b = Vec::with_capacity(96 + r.series.len());
    b.extend_from_slice(&single_object_header(rollup_fingerprint()));
    put_str(&mut b, r.series);
    put_str(&mut b, r.tier);
    put_long(&mut b, r.window_start);
    put_long(&mut b, r.window_end);
    put_long(&mut b, r.count);
    for v in [r.sum, r.min, r.max, r.first] {
        put_double(&mut b, v);
    }
    put_long(&mut b, r.first_ts);
    put_double(&mut b, r.last);
    put_long(&mut b, r.last_ts);
    for v in [r.increase, r.p50, r.p90, r.p95, r.p99] {
        put_double(&mut b, v);
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;
    use apache_avro::types::Value;

    #[test]
    fn apache_avro_reads_what_is_written() {
        let r = RollupRecord {
            series: "cpu{host=\"a\"}",
            tier: "1m",
            window_start: 1_700_000_040_000,
            window_end: 1_700_000_100_000,
            count: 6,
            sum: 12.5,
            min: 1.0,
            max: 4.0,
            first: 1.0,
            first_ts: 1_700_000_041_000,
            last: 2.0,
            last_ts: 1_700_000_091_000,
            increase: 3.0,
            p50: 2.0,
            p90: 3.9,
            p95: 4.0,
            p99: 4.0,
        };
        let bytes = encode_rollup(&r);
        assert_eq!(&bytes[..2], &[0xC3, 0x01]);
        assert_eq!(&bytes[2..10], &rollup_fingerprint().to_le_bytes());
        let schema = apache_avro::Schema::parse_str(ROLLUP_V1_AVSC).unwrap();
        let v = apache_avro::from_avro_datum(&schema, &mut &bytes[10..], None).unwrap();
        let Value::Record(fields) = v else { panic!() };
        let get = |n: &str| fields.iter().find(|f| f.0 == n).unwrap().1.clone();
        assert_eq!(get("series"), Value::String(r.series.into()));
        assert_eq!(get("window_start"), Value::TimestampMillis(r.window_start));
        assert_eq!(get("count"), Value::Long(6));
        assert_eq!(get("last_ts"), Value::TimestampMillis(r.last_ts));
        assert_eq!(get("p99"), Value::Double(4.0));
    }
}
