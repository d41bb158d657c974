//! `POST /api/v1/write`: Prometheus remote write 1.0 — a snappy-compressed protobuf
//! `WriteRequest` (`Content-Type: application/x-protobuf`, `Content-Encoding: snappy`).
use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::Response;
use bytes::Bytes;
use prost::Message;
use weir_contract::remote_write::{metric_metadata::MetricType as PromType, WriteRequest};
use weir_contract::{Label, MetricType, Sample, Series};

use super::{content_type, no_content, serve, Protocol};
use crate::error::{ApiError, ErrorStyle};
use crate::ingest::Parsed;
use crate::server::Gateway;
use crate::validate::Rejections;

pub const PROTOCOL: Protocol = Protocol {
    name: "remote_write",
    errors: ErrorStyle::Text,
};

pub async fn handler(State(gw): State<Arc<Gateway>>, headers: HeaderMap, body: Body) -> Response {
    serve(gw, &PROTOCOL, headers, body, decode, parse, no_content).await
}

fn decode(raw: Bytes, headers: &HeaderMap, max: usize) -> Result<Bytes, ApiError> {
    let full_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    match content_type(headers).as_deref() {
        Some("application/x-protobuf") => {}
        other => {
            return Err(ApiError::unsupported_media(format!(
                "remote write needs Content-Type: application/x-protobuf, got {}",
                other.unwrap_or("none")
            )))
        }
    }
    if full_type.contains("io.prometheus.write.v2") {
        return Err(ApiError::unsupported_media(
            "remote write 2.0 is not supported; send remote write 1.0 (prometheus.WriteRequest)",
        ));
    }
    let enc = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !enc.eq_ignore_ascii_case("snappy") {
        return Err(ApiError::unsupported_media(format!(
            "remote write needs Content-Encoding: snappy, got {}",
            if enc.is_empty() { "none" } else { enc }
        )));
    }
    crate::body::snappy(&raw, max).map(Bytes::from)
}

/// Turns a decoded `WriteRequest` body into series. Public for the benchmark.
pub fn parse(plain: &[u8]) -> Result<Parsed, ApiError> {
    let req = WriteRequest::decode(plain).map_err(|e| {
        ApiError::bad_request(format!(
            "body is not a valid remote-write WriteRequest protobuf: {e}"
        ))
    })?;
    let types: HashMap<&str, (MetricType, &str)> = req
        .metadata
        .iter()
        .map(|m| {
            (
                m.metric_family_name.as_str(),
                (map_type(m.r#type()), m.unit.as_str()),
            )
        })
        .collect();
    let mut rejected = Rejections::default();
    let mut series = Vec::with_capacity(req.timeseries.len());
    for ts in req.timeseries {
        if !ts.histograms.is_empty() {
            let n = ts.histograms.len();
            rejected.add(n, || {
                format!(
                    "series {}: native histograms are not supported",
                    describe(&ts.labels)
                )
            });
        }
        if ts.samples.is_empty() {
            continue;
        }
        let mut name = None;
        let mut labels = Vec::with_capacity(ts.labels.len().saturating_sub(1));
        for l in ts.labels {
            if l.name == "__name__" {
                if name.is_some() {
                    rejected.add(ts.samples.len(), || "series has __name__ twice".to_string());
                    name = None;
                    labels.clear();
                    break;
                }
                name = Some(l.value);
            } else {
                labels.push(Label {
                    name: l.name,
                    value: l.value,
                });
            }
        }
        let Some(name) = name else {
            if labels.is_empty() && ts.samples.is_empty() {
                continue;
            }
            let desc = describe_labels(&labels);
            rejected.add(ts.samples.len(), || {
                format!("series {desc}: no __name__ label")
            });
            continue;
        };
        let mut s = Series {
            name,
            labels,
            samples: ts
                .samples
                .iter()
                .map(|x| Sample::new(x.timestamp, x.value))
                .collect(),
            ..Default::default()
        };
        if let Some((t, unit)) = family(&types, &s.name) {
            s.metric_type = t;
            if !unit.is_empty() {
                s.unit = Some(unit.to_string());
            }
        }
        series.push(s);
    }
    Ok(Parsed {
        series,
        rejected,
        merge_duplicates: false,
    })
}

/// Metadata names families; samples carry `_total`, `_bucket`, `_sum`, `_count` suffixes.
fn family<'a>(
    types: &HashMap<&str, (MetricType, &'a str)>,
    name: &str,
) -> Option<(MetricType, &'a str)> {
    if types.is_empty() {
        return None;
    }
    if let Some(t) = types.get(name) {
        return Some(*t);
    }
    ["_total", "_bucket", "_sum", "_count"]
        .iter()
        .find_map(|sfx| name.strip_suffix(sfx).and_then(|f| types.get(f).copied()))
}

fn map_type(t: PromType) -> MetricType {
    match t {
        PromType::Counter => MetricType::Counter,
        PromType::Gauge => MetricType::Gauge,
        PromType::Histogram | PromType::Gaugehistogram => MetricType::Histogram,
        PromType::Summary => MetricType::Summary,
        _ => MetricType::Unknown,
    }
}

fn describe(labels: &[weir_contract::remote_write::Label]) -> String {
    let parts: Vec<String> = labels
        .iter()
        .map(|l| format!("{}={:?}", l.name, l.value))
        .collect();
    format!("{{{}}}", parts.join(","))
}

fn describe_labels(labels: &[Label]) -> String {
    let parts: Vec<String> = labels
        .iter()
        .map(|l| format!("{}={:?}", l.name, l.value))
        .collect();
    format!("{{{}}}", parts.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_contract::remote_write::{Label as PLabel, Sample as PSample, TimeSeries};

    fn req(ts: Vec<TimeSeries>) -> Vec<u8> {
        WriteRequest {
            timeseries: ts,
            metadata: vec![],
        }
        .encode_to_vec()
    }

    fn lbl(n: &str, v: &str) -> PLabel {
        PLabel {
            name: n.into(),
            value: v.into(),
        }
    }

    #[test]
    fn parses_series_and_moves_name_out_of_labels() {
        let body = req(vec![TimeSeries {
            labels: vec![lbl("__name__", "up"), lbl("job", "x")],
            samples: vec![PSample {
                value: 1.0,
                timestamp: 5,
            }],
            histograms: vec![],
        }]);
        let p = parse(&body).unwrap();
        assert_eq!(p.series.len(), 1);
        assert_eq!(p.series[0].key(), r#"up{job="x"}"#);
        assert_eq!(p.series[0].samples, vec![Sample::new(5, 1.0)]);
    }

    #[test]
    fn missing_name_and_histograms_are_rejected() {
        let body = req(vec![
            TimeSeries {
                labels: vec![lbl("job", "x")],
                samples: vec![PSample {
                    value: 1.0,
                    timestamp: 5,
                }],
                histograms: vec![],
            },
            TimeSeries {
                labels: vec![lbl("__name__", "h")],
                samples: vec![],
                histograms: vec![vec![1, 2, 3]],
            },
        ]);
        let p = parse(&body).unwrap();
        assert!(p.series.is_empty());
        assert_eq!(p.rejected.samples, 2);
    }

    #[test]
    fn garbage_is_a_bad_request() {
        let e = parse(b"\xff\xff\xff\xff").unwrap_err();
        assert_eq!(e.status, axum::http::StatusCode::BAD_REQUEST);
        assert!(e.message.contains("protobuf"));
    }
}
