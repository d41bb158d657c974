//! `POST /api/v1/push`: JSON from edge devices — one label set for the device and a
//! list of metric values:
//!
//! ```json
//! {"labels": {"device": "d-17", "site": "ams"},
//!  "metrics": [{"name": "temperature_celsius", "value": 41.5, "timestamp": 1700000000000}]}
//! ```
//!
//! `timestamp` is milliseconds since the epoch and optional (the gateway's clock then).
//! A metric may add `"type"` (`gauge`, `counter`, ...) and `"unit"`. The body may also be
//! an array of such objects. Unknown fields are refused, so a typo is an error rather
//! than silently lost data.
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Deserialize;
use weir_contract::{Label, MetricType, Sample, Series};

use super::{content_type, serve, Parsed, Protocol};
use crate::error::{ApiError, ErrorStyle};
use crate::ingest::Written;
use crate::server::Gateway;
use crate::validate::Rejections;

pub const PROTOCOL: Protocol = Protocol {
    name: "json",
    errors: ErrorStyle::Json,
};

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Body_ {
    One(Push),
    Many(Vec<Push>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Push {
    #[serde(default)]
    labels: BTreeMap<String, String>,
    metrics: Vec<Metric>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Metric {
    name: String,
    value: f64,
    #[serde(default)]
    timestamp: Option<i64>,
    #[serde(default, rename = "type")]
    metric_type: Option<MetricType>,
    #[serde(default)]
    unit: Option<String>,
}

pub async fn handler(State(gw): State<Arc<Gateway>>, headers: HeaderMap, body: Body) -> Response {
    serve(
        gw,
        &PROTOCOL,
        headers,
        body,
        decode,
        |b, batch| parse(b, now_ms())?.into_batch(batch),
        accepted,
    )
    .await
}

fn accepted(w: &Written) -> Response {
    (
        StatusCode::OK,
        axum::Json(serde_json::json!({"series": w.series, "samples": w.samples})),
    )
        .into_response()
}

fn decode(raw: Bytes, headers: &HeaderMap, max: usize) -> Result<Bytes, ApiError> {
    match content_type(headers).as_deref() {
        Some("application/json") => crate::body::decode_content(raw, headers, max),
        other => Err(ApiError::unsupported_media(format!(
            "JSON push needs Content-Type: application/json, got {}",
            other.unwrap_or("none")
        ))),
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub fn parse(body: &[u8], now_ms: i64) -> Result<Parsed, ApiError> {
    let parsed: Body_ = parse_json(body)?;
    let pushes = match parsed {
        Body_::One(p) => vec![p],
        Body_::Many(v) => v,
    };
    let mut series = Vec::new();
    for p in pushes {
        let labels: Vec<Label> = p
            .labels
            .into_iter()
            .map(|(k, v)| Label::new(k, v))
            .collect();
        for m in p.metrics {
            series.push(Series {
                name: m.name,
                labels: labels.clone(),
                samples: vec![Sample::new(m.timestamp.unwrap_or(now_ms), m.value)],
                metric_type: m.metric_type.unwrap_or_default(),
                unit: m.unit,
                tenant: None,
            });
        }
    }
    Ok(Parsed {
        series,
        rejected: Rejections::default(),
    })
}

/// Parses strictly first, for a precise message; the untagged enum alone would only say
/// "did not match any variant".
fn parse_json(body: &[u8]) -> Result<Body_, ApiError> {
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("body is not valid JSON: {e}")))?;
    let result = if value.is_array() {
        serde_json::from_value::<Vec<Push>>(value).map(Body_::Many)
    } else {
        serde_json::from_value::<Push>(value).map(Body_::One)
    };
    result.map_err(|e| {
        ApiError::bad_request(format!(
            "JSON push must be {{\"labels\":{{...}},\"metrics\":[{{\"name\":..,\"value\":..,\"timestamp\":..}}]}}: {e}"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_labels_apply_to_every_metric() {
        let body = br#"{"labels":{"device":"d1","site":"ams"},"metrics":[
            {"name":"temperature_celsius","value":41.5,"timestamp":1700000000000,"type":"GAUGE"},
            {"name":"uptime_seconds","value":12}]}"#;
        let p = parse(body, 7).unwrap();
        assert_eq!(p.series.len(), 2);
        assert_eq!(
            p.series[0].key(),
            r#"temperature_celsius{device="d1",site="ams"}"#
        );
        assert_eq!(p.series[0].metric_type, MetricType::Gauge);
        assert_eq!(p.series[1].samples, vec![Sample::new(7, 12.0)]);
    }

    #[test]
    fn arrays_of_devices_are_accepted() {
        let body = br#"[{"labels":{"d":"1"},"metrics":[{"name":"m","value":1}]},{"metrics":[{"name":"m","value":2}]}]"#;
        assert_eq!(parse(body, 0).unwrap().series.len(), 2);
    }

    #[test]
    fn typos_and_bad_json_are_named() {
        let e = parse(br#"{"metrics":[{"name":"m","value":1,"timestmp":5}]}"#, 0).unwrap_err();
        assert!(e.message.contains("timestmp"), "{}", e.message);
        let e = parse(b"{not json", 0).unwrap_err();
        assert!(e.message.contains("not valid JSON"), "{}", e.message);
        let e = parse(br#"{"metrics":[{"name":"m","value":"hot"}]}"#, 0).unwrap_err();
        assert!(e.message.contains("invalid type"), "{}", e.message);
    }
}
