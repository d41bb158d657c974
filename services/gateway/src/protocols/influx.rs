//! `POST /write` (InfluxDB 1.x) and `POST /api/v2/write` (2.x): line protocol.
//!
//! Mapping, as Telegraf's and VictoriaMetrics' Prometheus conversions do: each field of
//! a line becomes a series named `<measurement>_<field>` (just `<measurement>` for a
//! field called `value`), tags become labels. Influx names allow characters Prometheus
//! names do not (`.`, `-`), so names are sanitised to `_` rather than refused. Integer,
//! float and boolean fields are samples; string fields carry no number and are skipped
//! (counted in `weir_gateway_influx_string_fields_total`).
//!
//! Lines are parsed one at a time and fed straight to the batch builder: a line's tags
//! are checked once and shared by all its fields, never copied per field, and a line
//! with more than `max_fields_per_line` fields refuses the request (413) before any of
//! its fields is encoded.
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use influxdb_line_protocol::{parse_lines, EscapedStr, FieldValue, ParsedLine, TagSet};
use weir_contract::names::{sanitize_label_name, sanitize_metric_name};
use weir_contract::{MetricType, Sample};

use super::{content_type, no_content, serve, Call, Protocol};
use crate::error::{Answer, ApiError, ErrorStyle};
use crate::server::Gateway;
use weir_ingest::validate::LabelRef;
use weir_ingest::{BatchBuilder, Reservation};

pub const PROTOCOL: Protocol = Protocol {
    name: "influx",
    errors: ErrorStyle::Json,
    partial_success: false,
};

/// Timestamp precision of the request (`precision` query parameter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    Nanos,
    Micros,
    Millis,
    Seconds,
    Minutes,
    Hours,
}

impl Precision {
    pub fn parse(p: Option<&str>) -> Result<Self, ApiError> {
        Ok(match p.unwrap_or("ns") {
            "ns" | "n" => Self::Nanos,
            "us" | "u" | "µs" => Self::Micros,
            "ms" => Self::Millis,
            "s" => Self::Seconds,
            "m" => Self::Minutes,
            "h" => Self::Hours,
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown precision {other:?}: use ns, us, ms, s, m or h"
                )))
            }
        })
    }

    pub fn to_millis(self, t: i64) -> i64 {
        match self {
            Self::Nanos => t.div_euclid(1_000_000),
            Self::Micros => t.div_euclid(1_000),
            Self::Millis => t,
            Self::Seconds => t.saturating_mul(1_000),
            Self::Minutes => t.saturating_mul(60_000),
            Self::Hours => t.saturating_mul(3_600_000),
        }
    }
}

pub async fn handler(
    State(gw): State<Arc<Gateway>>,
    Query(q): Query<HashMap<String, String>>,
    call: Call,
) -> Response {
    let precision = match Precision::parse(q.get("precision").map(String::as_str)) {
        Ok(p) => p,
        Err(e) => return e.into_response_with(PROTOCOL.errors),
    };
    let max_fields = gw.max_fields_per_line;
    serve(
        gw,
        &PROTOCOL,
        call,
        decode,
        |b, batch| parse(b, precision, now_ms(), max_fields, batch),
        no_content,
    )
    .await
}

fn decode(
    raw: Bytes,
    headers: &HeaderMap,
    max: usize,
    reservation: &mut Reservation,
) -> Result<Bytes, ApiError> {
    if let Some(t) = content_type(headers) {
        if t == "application/json" || t == "application/x-protobuf" {
            return Err(ApiError {
                status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
                message: format!("line protocol is text; got Content-Type {t} (JSON goes to /api/v1/push, protobuf to /api/v1/write)"),
                retry_after: None,
            });
        }
    }
    crate::body::decode_content(raw, headers, max, reservation)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Parses line protocol into `batch`. Lines that do not parse are rejected (one sample
/// each) and named; the others are written.
///
/// Consecutive lines of one series (same measurement and tags, fields in the same order)
/// are one run: their samples are written as one series per field, the way a client
/// backfilling a series sends it, so such a request counts one series per field against
/// `max_series_per_request`, and a long series is split across records of its partition.
pub fn parse(
    body: &[u8],
    precision: Precision,
    now_ms: i64,
    max_fields: usize,
    batch: &mut BatchBuilder<'_>,
) -> Result<(), ApiError> {
    let text = std::str::from_utf8(body)
        .map_err(|e| ApiError::bad_request(format!("line protocol body is not UTF-8: {e}")))?;
    let mut string_fields = 0u64;
    let mut run: Option<Run<'_>> = None;
    for (i, line) in parse_lines(text).enumerate() {
        let line = match line {
            Ok(l) => l,
            Err(e) => {
                batch.reject(1, || format!("line protocol entry {}: {e}", i + 1));
                continue;
            }
        };
        if line.field_set.len() > max_fields {
            return Err(ApiError::too_large(format!(
                "line protocol entry {} has {} fields, over the limit of {max_fields} (gateway.limits.max_fields_per_line)",
                i + 1,
                line.field_set.len()
            )));
        }
        let ts = line
            .timestamp
            .map(|t| precision.to_millis(t))
            .unwrap_or(now_ms);
        if let Some(r) = run.as_mut() {
            if r.extend(&line, ts, &mut string_fields) {
                // Buffered samples are held until the run ends.
                batch.charge(line.field_set.len() * std::mem::size_of::<Sample>())?;
                continue;
            }
        }
        if let Some(r) = run.take() {
            r.write(batch)?;
        }
        run = Some(Run::start(line, ts, &mut string_fields));
    }
    if let Some(r) = run.take() {
        r.write(batch)?;
    }
    if string_fields > 0 {
        metrics::counter!("weir_gateway_influx_string_fields_total").increment(string_fields);
    }
    Ok(())
}

/// Lines of one series in a row: the first line's measurement and tags, and per numeric
/// field its samples.
struct Run<'t> {
    measurement: EscapedStr<'t>,
    tags: Option<TagSet<'t>>,
    fields: Vec<(EscapedStr<'t>, Vec<Sample>)>,
}

fn number(v: &FieldValue<'_>) -> Option<f64> {
    match v {
        FieldValue::F64(f) => Some(*f),
        FieldValue::I64(n) => Some(*n as f64),
        FieldValue::U64(n) => Some(*n as f64),
        FieldValue::Boolean(b) => Some(f64::from(u8::from(*b))),
        FieldValue::String(_) => None,
    }
}

impl<'t> Run<'t> {
    fn start(line: ParsedLine<'t>, ts: i64, strings: &mut u64) -> Self {
        let mut fields = Vec::with_capacity(line.field_set.len());
        for (k, v) in line.field_set {
            match number(&v) {
                Some(x) => fields.push((k, vec![Sample::new(ts, x)])),
                None => *strings += 1,
            }
        }
        Self {
            measurement: line.series.measurement,
            tags: line.series.tag_set,
            fields,
        }
    }

    /// Appends `line` if it continues the run: same series, same numeric fields in the
    /// same order. Checks before it changes anything.
    fn extend(&mut self, line: &ParsedLine<'t>, ts: i64, strings: &mut u64) -> bool {
        if line.series.measurement != self.measurement || line.series.tag_set != self.tags {
            return false;
        }
        let numeric = line.field_set.iter().filter(|(_, v)| number(v).is_some());
        if numeric.clone().count() != self.fields.len()
            || !numeric.zip(&self.fields).all(|((k, _), (f, _))| k == f)
        {
            return false;
        }
        let mut fields = self.fields.iter_mut();
        for (_, v) in &line.field_set {
            match number(v) {
                Some(x) => {
                    if let Some((_, samples)) = fields.next() {
                        samples.push(Sample::new(ts, x));
                    }
                }
                None => *strings += 1,
            }
        }
        true
    }

    /// Writes the run: its tags checked once and shared by all its fields.
    fn write(self, batch: &mut BatchBuilder<'_>) -> Result<(), ApiError> {
        let measurement = self.measurement.as_str();
        let tag_names: Vec<String> = self
            .tags
            .iter()
            .flatten()
            .map(|(k, _)| sanitize_label_name(k.as_str()))
            .collect();
        let labels: Vec<LabelRef<'_>> = self
            .tags
            .iter()
            .flatten()
            .zip(&tag_names)
            .map(|((_, v), k)| (k.as_str(), v.as_str()))
            .collect();
        let set = batch.label_set(labels);
        for (field, samples) in &self.fields {
            let name = if field.as_str() == "value" {
                sanitize_metric_name(measurement)
            } else {
                sanitize_metric_name(&format!("{measurement}_{}", field.as_str()))
            };
            batch.add_to_set(&name, &set, samples, MetricType::Unknown, None)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_ingest::testing::{run, run_with, Limits};

    fn parse_all(body: &[u8], p: Precision, now: i64) -> weir_ingest::testing::Outcome {
        run(|b| parse(body, p, now, 1_000, b)).unwrap()
    }

    #[test]
    fn fields_become_series_and_precision_is_honoured() {
        let body = b"cpu,host=a,region=eu usage=0.5,idle=12i 1700000000\nmem value=3u 1700000001\n";
        let p = parse_all(body, Precision::Seconds, 0);
        assert_eq!(
            p.keys(),
            vec![
                r#"cpu_usage{host="a",region="eu"}"#,
                r#"cpu_idle{host="a",region="eu"}"#,
                "mem"
            ]
        );
        assert_eq!(
            p.series[0].samples,
            vec![Sample::new(1_700_000_000_000, 0.5)]
        );
        assert_eq!(
            p.series[2].samples,
            vec![Sample::new(1_700_000_001_000, 3.0)]
        );
    }

    #[test]
    fn default_precision_is_nanoseconds_and_missing_timestamp_is_now() {
        let p = parse_all(
            b"m v=1 1700000000123456789\nm v=2",
            Precision::parse(None).unwrap(),
            42,
        );
        // One series, two lines in a row: one run.
        let times: Vec<i64> = p.series[0].samples.iter().map(|s| s.timestamp_ms).collect();
        assert_eq!(times, vec![1_700_000_000_123, 42]);
    }

    #[test]
    fn names_are_sanitised_and_strings_skipped() {
        let p = parse_all(
            b"disk.io,dev-name=sda read-bytes=5,state=\"ok\",up=true 1",
            Precision::Millis,
            0,
        );
        assert_eq!(
            p.keys(),
            vec![
                r#"disk_io_read_bytes{dev_name="sda"}"#,
                r#"disk_io_up{dev_name="sda"}"#
            ]
        );
        assert_eq!(p.series[1].samples[0].value, 1.0);
    }

    #[test]
    fn bad_lines_are_rejected_and_named_but_good_lines_kept() {
        let p = parse_all(
            b"good v=1 1\nbad line here\ngood v=2 2",
            Precision::Millis,
            0,
        );
        let samples: usize = p.series.iter().map(|s| s.samples.len()).sum();
        assert_eq!(samples, 2);
        assert_eq!(p.rejected.samples, 1);
        assert!(p.rejected.first.unwrap().contains("entry 2"));
    }

    #[test]
    fn runs_end_where_the_series_or_its_fields_change() {
        let p = parse_all(
            b"m,h=a x=1,y=2 1\nm,h=a x=3,y=4 2\nm,h=b x=5 3\nm,h=b y=6 4\nm,h=b y=7 5\n",
            Precision::Millis,
            0,
        );
        let got: Vec<(String, usize)> = p
            .series
            .iter()
            .map(|s| (s.key(), s.samples.len()))
            .collect();
        assert_eq!(
            got,
            vec![
                (r#"m_x{h="a"}"#.to_string(), 2),
                (r#"m_y{h="a"}"#.to_string(), 2),
                (r#"m_x{h="b"}"#.to_string(), 1),
                (r#"m_y{h="b"}"#.to_string(), 2),
            ]
        );
    }

    #[test]
    fn unknown_precision_is_refused() {
        assert!(Precision::parse(Some("fortnight")).is_err());
    }

    #[test]
    fn too_many_fields_on_a_line_is_413_naming_the_limit() {
        let fields: Vec<String> = (0..1_001).map(|i| format!("f{i}=1")).collect();
        let body = format!("m,host=a {} 1", fields.join(","));
        let err = run(|b| parse(body.as_bytes(), Precision::Millis, 0, 1_000, b))
            .err()
            .expect("refused");
        assert_eq!(err.status, StatusCode::PAYLOAD_TOO_LARGE);
        assert!(
            err.message.contains("max_fields_per_line"),
            "{}",
            err.message
        );
    }

    /// The issue's shape: one 64 KiB tag and 20,000 fields. The tag is over the label
    /// value limit, so every field is refused, with one short message and no copies.
    #[test]
    fn a_huge_tag_shared_by_many_fields_is_refused_once() {
        let fields: Vec<String> = (0..20_000).map(|i| format!("f{i}=1")).collect();
        let body = format!("m,host={} {} 1", "x".repeat(64 << 10), fields.join(","));
        let p = run(|b| parse(body.as_bytes(), Precision::Millis, 0, 20_000, b)).unwrap();
        assert!(p.records.is_empty());
        assert_eq!(p.rejected.samples, 20_000);
        assert!(p.rejected.first.unwrap().len() < 1_000);
    }

    #[test]
    fn one_series_with_100k_samples_fits_in_records() {
        let body: String = (0..100_000)
            .map(|i| format!("m,host=a v={i} {i}\n"))
            .collect();
        let p = run_with(
            Limits {
                partitions: 8,
                ..Limits::default()
            },
            |b| parse(body.as_bytes(), Precision::Millis, 0, 1_000, b),
        )
        .unwrap();
        assert!(p.records.len() > 1);
        assert!(p.records.iter().all(|(_, r)| r.len() <= 900 << 10));
        let n: usize = p.series.iter().map(|s| s.samples.len()).sum();
        assert_eq!(n, 100_000);
    }
}
