//! Remote write 2.0: `Content-Type: application/x-protobuf;proto=io.prometheus.write.v2.Request`,
//! snappy. Labels and metadata are indices into the request's symbol table; metadata
//! (type, unit) travels with every series and goes to the contract's `type` and `unit`
//! (help has no place in the contract and is not kept). Created timestamps and
//! exemplars are not written; native histograms are refused per series with the
//! reason. Decoded with the prost types of `schemas/proto/remote_v2.proto`: symbols are
//! strings once per request, not per series, so the allocation that made remote write
//! 1.0 worth a reader of its own is small here.
//!
//! The answer carries `X-Prometheus-Remote-Write-Samples-Written` (and the histogram and
//! exemplar counts, 0), also on a 400 for a partly refused request, as the specification
//! asks, so a sender knows what landed.
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use prost::Message;
use weir_contract::remote_write::v2::{metadata::MetricType as V2Type, Request};
use weir_contract::{MetricType, Sample};

use crate::error::{ApiError, ErrorStyle};
use crate::protocols::Protocol;
use weir_ingest::validate::{describe, LabelRef};
use weir_ingest::{BatchBuilder, Written};

pub const PROTOCOL: Protocol = Protocol {
    name: "remote_write_v2",
    errors: ErrorStyle::Text,
    partial_success: true,
};

/// Feeds every series of a decoded (decompressed) v2 `Request` to `batch`.
pub fn parse(plain: &[u8], batch: &mut BatchBuilder<'_>) -> Result<(), ApiError> {
    let req = Request::decode(plain).map_err(|e| {
        ApiError::bad_request(format!(
            "body is not a valid remote-write 2.0 io.prometheus.write.v2.Request protobuf: {e}"
        ))
    })?;
    if req.symbols.is_empty() && req.timeseries.is_empty() && !plain.is_empty() {
        // Fields 1-3 are reserved for exactly this: a 1.0 WriteRequest reads as nothing.
        return Err(ApiError::bad_request(
            "body holds no io.prometheus.write.v2.Request fields (a remote write 1.0 WriteRequest?); send it with Content-Type: application/x-protobuf",
        ));
    }
    if req.symbols.first().is_some_and(|s| !s.is_empty()) {
        return Err(ApiError::bad_request(
            "symbols[0] must be the empty string (remote write 2.0 specification)",
        ));
    }
    let symbol = |i: u32| req.symbols.get(i as usize).map(String::as_str);
    let mut labels: Vec<LabelRef<'_>> = Vec::with_capacity(16);
    let mut samples: Vec<Sample> = Vec::with_capacity(4);
    for ts in &req.timeseries {
        labels.clear();
        let mut name = None;
        let mut bad_ref = None;
        if ts.labels_refs.len() % 2 != 0 {
            bad_ref = Some(format!(
                "{} label refs (not name/value pairs)",
                ts.labels_refs.len()
            ));
        }
        for pair in ts.labels_refs.chunks_exact(2) {
            match (symbol(pair[0]), symbol(pair[1])) {
                (Some("__name__"), Some(v)) if name.is_none() => name = Some(v),
                (Some("__name__"), Some(_)) => {
                    bad_ref = Some("__name__ given twice".into());
                }
                (Some(n), Some(v)) => labels.push((n, v)),
                _ => {
                    bad_ref = Some(format!(
                        "label ref ({}, {}) outside the {} symbols",
                        pair[0],
                        pair[1],
                        req.symbols.len()
                    ))
                }
            }
        }
        let shown = describe(name.unwrap_or(""), &labels);
        if !ts.histograms.is_empty() {
            batch.reject(ts.histograms.len(), || {
                format!("series {shown}: native histograms are not supported")
            });
        }
        if ts.samples.is_empty() {
            continue;
        }
        if let Some(why) = bad_ref {
            batch.reject(ts.samples.len(), || format!("series {shown}: {why}"));
            continue;
        }
        let Some(name) = name else {
            batch.reject(ts.samples.len(), || {
                format!("series {shown}: no __name__ label")
            });
            continue;
        };
        let (kind, unit) = match &ts.metadata {
            Some(m) => (
                map_type(m.r#type),
                symbol(m.unit_ref).filter(|u| !u.is_empty()),
            ),
            None => (MetricType::Unknown, None),
        };
        samples.clear();
        samples.extend(ts.samples.iter().map(|s| Sample::new(s.timestamp, s.value)));
        batch.add(name, &mut labels, &samples, kind, unit)?;
    }
    Ok(())
}

fn map_type(t: i32) -> MetricType {
    match V2Type::try_from(t) {
        Ok(V2Type::Counter) => MetricType::Counter,
        Ok(V2Type::Gauge) => MetricType::Gauge,
        Ok(V2Type::Histogram | V2Type::Gaugehistogram) => MetricType::Histogram,
        Ok(V2Type::Summary) => MetricType::Summary,
        _ => MetricType::Unknown,
    }
}

/// 204, or 400 naming the first refusal; both with the written counts.
pub fn respond(w: &Written) -> Response {
    let mut resp = match w.refusal() {
        None => StatusCode::NO_CONTENT.into_response(),
        Some(why) => (StatusCode::BAD_REQUEST, format!("{why}\n")).into_response(),
    };
    let h = resp.headers_mut();
    h.insert(
        "x-prometheus-remote-write-samples-written",
        HeaderValue::from(w.samples),
    );
    h.insert(
        "x-prometheus-remote-write-histograms-written",
        HeaderValue::from_static("0"),
    );
    h.insert(
        "x-prometheus-remote-write-exemplars-written",
        HeaderValue::from_static("0"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_contract::remote_write::v2 as pb;
    use weir_ingest::testing::run;

    fn request() -> pb::Request {
        let symbols: Vec<String> = [
            "",
            "__name__",
            "http_requests_total",
            "job",
            "api",
            "requests",
            "temp_celsius",
            "celsius",
            "zone",
            "a",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        pb::Request {
            symbols,
            timeseries: vec![
                pb::TimeSeries {
                    labels_refs: vec![1, 2, 3, 4],
                    samples: vec![pb::Sample {
                        value: 5.0,
                        timestamp: 1_700_000_000_000,
                    }],
                    metadata: Some(pb::Metadata {
                        r#type: pb::metadata::MetricType::Counter as i32,
                        help_ref: 5,
                        unit_ref: 0,
                    }),
                    created_timestamp: 1_699_999_000_000,
                    ..Default::default()
                },
                pb::TimeSeries {
                    labels_refs: vec![1, 6, 8, 9],
                    samples: vec![pb::Sample {
                        value: 21.5,
                        timestamp: 1_700_000_000_000,
                    }],
                    metadata: Some(pb::Metadata {
                        r#type: pb::metadata::MetricType::Gauge as i32,
                        help_ref: 0,
                        unit_ref: 7,
                    }),
                    ..Default::default()
                },
                // A native histogram: refused alone.
                pb::TimeSeries {
                    labels_refs: vec![1, 6, 8, 4],
                    histograms: vec![vec![8, 1]],
                    ..Default::default()
                },
                // A label ref outside the symbols: refused alone.
                pb::TimeSeries {
                    labels_refs: vec![1, 2, 3, 99],
                    samples: vec![pb::Sample {
                        value: 1.0,
                        timestamp: 1_700_000_000_000,
                    }],
                    ..Default::default()
                },
            ],
        }
    }

    #[test]
    fn symbols_labels_and_metadata_become_series() {
        let body = request().encode_to_vec();
        let out = run(|b| parse(&body, b)).unwrap();
        assert_eq!(
            out.keys(),
            vec![
                "http_requests_total{job=\"api\"}".to_string(),
                "temp_celsius{zone=\"a\"}".to_string()
            ]
        );
        assert_eq!(out.series[0].metric_type, MetricType::Counter);
        assert_eq!(
            out.series[0].samples,
            vec![Sample::new(1_700_000_000_000, 5.0)]
        );
        assert_eq!(out.series[1].metric_type, MetricType::Gauge);
        assert_eq!(out.series[1].unit.as_deref(), Some("celsius"));
        assert_eq!(out.rejected.samples, 2);
        let first = out.rejected.first.unwrap();
        assert!(first.contains("native histograms"), "{first}");
    }

    #[test]
    fn a_body_of_the_other_version_is_refused_by_name() {
        // A remote write 1.0 WriteRequest read as 2.0: reserved fields, nothing else.
        let v1 = weir_contract::remote_write::WriteRequest {
            timeseries: vec![weir_contract::remote_write::TimeSeries {
                labels: vec![weir_contract::remote_write::Label {
                    name: "__name__".into(),
                    value: "up".into(),
                }],
                samples: vec![weir_contract::remote_write::Sample {
                    value: 1.0,
                    timestamp: 1,
                }],
                ..Default::default()
            }],
            metadata: vec![],
        }
        .encode_to_vec();
        let e = run(|b| parse(&v1, b)).err().unwrap();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert!(e.message.contains("remote write 1.0"), "{}", e.message);
        // And a 2.0 Request read as 1.0.
        let v2 = request().encode_to_vec();
        let e = run(|b| super::super::parse(&v2, b)).err().unwrap();
        assert!(
            e.message.contains("io.prometheus.write.v2.Request"),
            "{}",
            e.message
        );
    }
}
