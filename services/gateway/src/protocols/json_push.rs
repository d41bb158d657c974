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
//!
//! The body is parsed as a stream: each metric is handed to the batch builder as soon as
//! it is read, under its device's labels checked once, so neither a tree of the whole
//! document nor a copy of the labels per metric is ever built.
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use weir_contract::{MetricType, Sample};

use super::{content_type, serve, Call, Protocol};
use crate::error::{ApiError, ErrorStyle};
use crate::server::Gateway;
use weir_ingest::validate::LabelRef;
use weir_ingest::{BatchBuilder, LabelSet, Reservation, Written};

pub const PROTOCOL: Protocol = Protocol {
    name: "json",
    errors: ErrorStyle::Json,
    partial_success: false,
};

const SHAPE: &str = r#"JSON push must be {"labels":{...},"metrics":[{"name":..,"value":..,"timestamp":..}]} or an array of those"#;

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

pub async fn handler(State(gw): State<Arc<Gateway>>, call: Call) -> Response {
    serve(
        gw,
        &PROTOCOL,
        call,
        decode,
        |b, batch| parse(b, now_ms(), batch),
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

fn decode(
    raw: Bytes,
    headers: &HeaderMap,
    max: usize,
    reservation: &mut Reservation,
) -> Result<Bytes, ApiError> {
    match content_type(headers).as_deref() {
        Some("application/json") => crate::body::decode_content(raw, headers, max, reservation),
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

/// Parses a push body into `batch`.
pub fn parse(body: &[u8], now_ms: i64, batch: &mut BatchBuilder<'_>) -> Result<(), ApiError> {
    let ctx = Ctx {
        batch: RefCell::new(batch),
        now_ms,
        failed: RefCell::new(None),
    };
    let mut de = serde_json::Deserializer::from_slice(body);
    let result = de.deserialize_any(Top(&ctx)).and_then(|()| de.end());
    if let Some(e) = ctx.failed.into_inner() {
        return Err(e);
    }
    result.map_err(|e| match e.classify() {
        serde_json::error::Category::Data => ApiError::bad_request(format!("{SHAPE}: {e}")),
        _ => ApiError::bad_request(format!("body is not valid JSON: {e}")),
    })
}

/// What the visitors share: the batch, and the first error of the batch itself (a limit),
/// kept aside so the answer is that error and not serde's wrapping of it.
struct Ctx<'c, 'i> {
    batch: RefCell<&'c mut BatchBuilder<'i>>,
    now_ms: i64,
    failed: RefCell<Option<ApiError>>,
}

impl Ctx<'_, '_> {
    fn add<E: de::Error>(&self, set: &LabelSet<'_>, m: &Metric) -> Result<(), E> {
        let sample = Sample::new(m.timestamp.unwrap_or(self.now_ms), m.value);
        let r = self.batch.borrow_mut().add_to_set(
            &m.name,
            set,
            &[sample],
            m.metric_type.unwrap_or_default(),
            m.unit.as_deref(),
        );
        r.map_err(|e| {
            let msg = e.message.clone();
            *self.failed.borrow_mut() = Some(e);
            E::custom(msg)
        })
    }

    fn fail<E: de::Error>(&self, e: ApiError) -> E {
        let msg = e.message.clone();
        *self.failed.borrow_mut() = Some(e);
        E::custom(msg)
    }
}

/// The document: one push object, or an array of them.
struct Top<'a, 'c, 'i>(&'a Ctx<'c, 'i>);

impl<'de> Visitor<'de> for Top<'_, '_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a push object or an array of push objects")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        PushVisitor(self.0).visit_map(map)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(PushSeed(self.0))?.is_some() {}
        Ok(())
    }
}

struct PushSeed<'a, 'c, 'i>(&'a Ctx<'c, 'i>);

impl<'de> DeserializeSeed<'de> for PushSeed<'_, '_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(PushVisitor(self.0))
    }
}

/// One device: its labels, then its metrics, each added as it is read. Metrics that come
/// before the labels (JSON objects are unordered) are kept, charged to the request's
/// budget, until the labels are known.
struct PushVisitor<'a, 'c, 'i>(&'a Ctx<'c, 'i>);

impl<'de> Visitor<'de> for PushVisitor<'_, '_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(r#"a push object {"labels":{...},"metrics":[...]}"#)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let ctx = self.0;
        let mut labels: Option<BTreeMap<String, String>> = None;
        let mut early: Vec<Metric> = Vec::new();
        let mut seen_metrics = false;
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            match key.as_ref() {
                "labels" => {
                    if labels.is_some() {
                        return Err(de::Error::duplicate_field("labels"));
                    }
                    labels = Some(map.next_value()?);
                }
                "metrics" => {
                    if seen_metrics {
                        return Err(de::Error::duplicate_field("metrics"));
                    }
                    seen_metrics = true;
                    match &labels {
                        Some(l) => {
                            let set = label_set(ctx, l);
                            map.next_value_seed(Metrics {
                                ctx,
                                set: Some(&set),
                                early: &mut early,
                            })?;
                        }
                        None => map.next_value_seed(Metrics {
                            ctx,
                            set: None,
                            early: &mut early,
                        })?,
                    }
                }
                other => return Err(de::Error::unknown_field(other, &["labels", "metrics"])),
            }
        }
        if !seen_metrics {
            return Err(de::Error::missing_field("metrics"));
        }
        if !early.is_empty() {
            let empty = BTreeMap::new();
            let set = label_set(ctx, labels.as_ref().unwrap_or(&empty));
            for m in &early {
                ctx.add(&set, m)?;
            }
        }
        Ok(())
    }
}

fn label_set<'i: 'l, 'l>(ctx: &Ctx<'_, 'i>, labels: &'l BTreeMap<String, String>) -> LabelSet<'l> {
    let refs: Vec<LabelRef<'l>> = labels
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    ctx.batch.borrow().label_set(refs)
}

struct Metrics<'a, 'c, 'i, 's, 'e> {
    ctx: &'a Ctx<'c, 'i>,
    set: Option<&'s LabelSet<'s>>,
    early: &'e mut Vec<Metric>,
}

impl<'de> DeserializeSeed<'de> for Metrics<'_, '_, '_, '_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Metrics<'_, '_, '_, '_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of metrics")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(m) = seq.next_element::<Metric>()? {
            match self.set {
                Some(set) => self.ctx.add(set, &m)?,
                None => {
                    let size = std::mem::size_of::<Metric>()
                        + m.name.len()
                        + m.unit.as_ref().map_or(0, String::len);
                    self.ctx
                        .batch
                        .borrow_mut()
                        .charge(size)
                        .map_err(|e| self.ctx.fail(e))?;
                    self.early.push(m);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_ingest::testing::{run, run_with, Limits, Outcome};

    fn parse_ok(body: &[u8], now: i64) -> Outcome {
        run(|b| parse(body, now, b)).unwrap()
    }

    fn parse_err(body: &[u8]) -> ApiError {
        run(|b| parse(body, 0, b)).err().expect("refused")
    }

    #[test]
    fn device_labels_apply_to_every_metric() {
        let body = br#"{"labels":{"device":"d1","site":"ams"},"metrics":[
            {"name":"temperature_celsius","value":41.5,"timestamp":1700000000000,"type":"GAUGE"},
            {"name":"uptime_seconds","value":12}]}"#;
        let p = parse_ok(body, 7);
        assert_eq!(p.series.len(), 2);
        assert_eq!(
            p.series[0].key(),
            r#"temperature_celsius{device="d1",site="ams"}"#
        );
        assert_eq!(p.series[0].metric_type, MetricType::Gauge);
        assert_eq!(p.series[1].samples, vec![Sample::new(7, 12.0)]);
    }

    #[test]
    fn labels_after_metrics_still_apply() {
        let body = br#"{"metrics":[{"name":"m","value":1,"timestamp":5}],"labels":{"d":"1"}}"#;
        assert_eq!(parse_ok(body, 0).keys(), vec![r#"m{d="1"}"#]);
    }

    #[test]
    fn arrays_of_devices_are_accepted() {
        let body = br#"[{"labels":{"d":"1"},"metrics":[{"name":"m","value":1}]},{"metrics":[{"name":"m","value":2}]}]"#;
        assert_eq!(parse_ok(body, 0).series.len(), 2);
    }

    #[test]
    fn typos_and_bad_json_are_named() {
        let e = parse_err(br#"{"metrics":[{"name":"m","value":1,"timestmp":5}]}"#);
        assert!(e.message.contains("timestmp"), "{}", e.message);
        let e = parse_err(b"{not json");
        assert!(e.message.contains("not valid JSON"), "{}", e.message);
        let e = parse_err(br#"{"metrics":[{"name":"m","value":"hot"}]}"#);
        assert!(e.message.contains("invalid type"), "{}", e.message);
        let e = parse_err(br#"{"labels":{}}"#);
        assert!(
            e.message.contains("missing field `metrics`"),
            "{}",
            e.message
        );
        let e = parse_err(br#"42"#);
        assert!(e.message.contains("JSON push must be"), "{}", e.message);
        let e = parse_err(br#"{"metrics":[]} trailing"#);
        assert!(e.message.contains("not valid JSON"), "{}", e.message);
    }

    #[test]
    fn shared_device_labels_are_not_copied_past_the_expansion_limit() {
        let labels: Vec<String> = (0..30)
            .map(|i| format!("\"l{i:02}\":\"{}\"", "v".repeat(2000)))
            .collect();
        let metrics: Vec<String> = (0..20_000)
            .map(|i| format!("{{\"name\":\"m{i}\",\"value\":1}}"))
            .collect();
        let body = format!(
            "{{\"labels\":{{{}}},\"metrics\":[{}]}}",
            labels.join(","),
            metrics.join(",")
        );
        let err = run_with(
            Limits {
                max_expanded_bytes: 8 << 20,
                ..Limits::default()
            },
            |b| parse(body.as_bytes(), 0, b),
        )
        .err()
        .expect("refused");
        assert_eq!(err.status, StatusCode::PAYLOAD_TOO_LARGE);
        assert!(
            err.message.contains("max_expanded_bytes"),
            "{}",
            err.message
        );
    }
}
