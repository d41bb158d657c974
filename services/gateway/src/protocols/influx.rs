//! `POST /write` (InfluxDB 1.x) and `POST /api/v2/write` (2.x): line protocol.
//!
//! Mapping, as Telegraf's and VictoriaMetrics' Prometheus conversions do: each field of
//! a line becomes a series named `<measurement>_<field>` (just `<measurement>` for a
//! field called `value`), tags become labels. Influx names allow characters Prometheus
//! names do not (`.`, `-`), so names are sanitised to `_` rather than refused. Integer,
//! float and boolean fields are samples; string fields carry no number and are skipped
//! (counted in `weir_gateway_influx_string_fields_total`).
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use influxdb_line_protocol::{parse_lines, FieldValue};
use weir_contract::names::{sanitize_label_name, sanitize_metric_name};
use weir_contract::{Label, Sample, Series};

use super::{content_type, no_content, serve, Parsed, Protocol};
use crate::error::{ApiError, ErrorStyle};
use crate::server::Gateway;
use crate::validate::Rejections;

pub const PROTOCOL: Protocol = Protocol {
    name: "influx",
    errors: ErrorStyle::Json,
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
    headers: HeaderMap,
    body: Body,
) -> Response {
    let precision = match Precision::parse(q.get("precision").map(String::as_str)) {
        Ok(p) => p,
        Err(e) => return e.into_response_with(PROTOCOL.errors),
    };
    serve(
        gw,
        &PROTOCOL,
        headers,
        body,
        decode,
        |b, batch| parse(b, precision, now_ms())?.into_batch(batch),
        no_content,
    )
    .await
}

fn decode(raw: Bytes, headers: &HeaderMap, max: usize) -> Result<Bytes, ApiError> {
    if let Some(t) = content_type(headers) {
        if t == "application/json" || t == "application/x-protobuf" {
            return Err(ApiError {
                status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
                message: format!("line protocol is text; got Content-Type {t} (JSON goes to /api/v1/push, protobuf to /api/v1/write)"),
                retry_after: None,
            });
        }
    }
    crate::body::decode_content(raw, headers, max)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Parses line protocol. Lines that do not parse are rejected (one sample each) and
/// named; the others are written.
pub fn parse(body: &[u8], precision: Precision, now_ms: i64) -> Result<Parsed, ApiError> {
    let text = std::str::from_utf8(body)
        .map_err(|e| ApiError::bad_request(format!("line protocol body is not UTF-8: {e}")))?;
    let mut rejected = Rejections::default();
    let mut series = Vec::new();
    let mut string_fields = 0u64;
    for (i, line) in parse_lines(text).enumerate() {
        let line = match line {
            Ok(l) => l,
            Err(e) => {
                rejected.add(1, || format!("line protocol entry {}: {e}", i + 1));
                continue;
            }
        };
        let ts = line
            .timestamp
            .map(|t| precision.to_millis(t))
            .unwrap_or(now_ms);
        let measurement = line.series.measurement.as_str();
        let mut labels: Vec<Label> = line
            .series
            .tag_set
            .iter()
            .flatten()
            .map(|(k, v)| Label::new(sanitize_label_name(k.as_str()), v.as_str()))
            .collect();
        labels.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        for (field, value) in &line.field_set {
            let v = match value {
                FieldValue::F64(f) => *f,
                FieldValue::I64(n) => *n as f64,
                FieldValue::U64(n) => *n as f64,
                FieldValue::Boolean(b) => f64::from(u8::from(*b)),
                FieldValue::String(_) => {
                    string_fields += 1;
                    continue;
                }
            };
            let name = if field.as_str() == "value" {
                sanitize_metric_name(measurement)
            } else {
                sanitize_metric_name(&format!("{measurement}_{}", field.as_str()))
            };
            series.push(Series {
                name,
                labels: labels.clone(),
                samples: vec![Sample::new(ts, v)],
                ..Default::default()
            });
        }
    }
    if string_fields > 0 {
        metrics::counter!("weir_gateway_influx_string_fields_total").increment(string_fields);
    }
    Ok(Parsed { series, rejected })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_become_series_and_precision_is_honoured() {
        let body = b"cpu,host=a,region=eu usage=0.5,idle=12i 1700000000\nmem value=3u 1700000001\n";
        let p = parse(body, Precision::Seconds, 0).unwrap();
        let keys: Vec<String> = p.series.iter().map(|s| s.key()).collect();
        assert_eq!(
            keys,
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
        let p = parse(
            b"m v=1 1700000000123456789\nm v=2",
            Precision::parse(None).unwrap(),
            42,
        )
        .unwrap();
        assert_eq!(p.series[0].samples[0].timestamp_ms, 1_700_000_000_123);
        assert_eq!(p.series[1].samples[0].timestamp_ms, 42);
    }

    #[test]
    fn names_are_sanitised_and_strings_skipped() {
        let p = parse(
            b"disk.io,dev-name=sda read-bytes=5,state=\"ok\",up=true 1",
            Precision::Millis,
            0,
        )
        .unwrap();
        let keys: Vec<String> = p.series.iter().map(|s| s.key()).collect();
        assert_eq!(
            keys,
            vec![
                r#"disk_io_read_bytes{dev_name="sda"}"#,
                r#"disk_io_up{dev_name="sda"}"#
            ]
        );
        assert_eq!(p.series[1].samples[0].value, 1.0);
    }

    #[test]
    fn bad_lines_are_rejected_and_named_but_good_lines_kept() {
        let p = parse(
            b"good v=1 1\nbad line here\ngood v=2 2",
            Precision::Millis,
            0,
        )
        .unwrap();
        assert_eq!(p.series.len(), 2);
        assert_eq!(p.rejected.samples, 1);
        assert!(p.rejected.first.unwrap().contains("entry 2"));
    }

    #[test]
    fn unknown_precision_is_refused() {
        assert!(Precision::parse(Some("fortnight")).is_err());
    }
}
