//! OTLP metrics to series, as Prometheus' OTLP receiver writes them.
//!
//! - gauge → one series per point; sum, monotonic and cumulative → a counter (`_total`);
//!   sum, not monotonic, cumulative → a gauge;
//! - histogram (cumulative) → `_bucket{le}` with cumulative counts, `+Inf` the point's
//!   count, then `_sum` (when the point has one) and `_count`; min and max are not
//!   written (Prometheus has no series for them);
//! - summary → `{quantile}` per quantile, `_sum`, `_count`;
//! - refused, each point counted in the partial success with the reason: delta (and
//!   unspecified) temporality — turning deltas into cumulative counters needs state
//!   across requests, which a stateless gateway replica does not have — exponential
//!   histograms, and points without a timestamp;
//! - points flagged "no recorded value" are skipped (Prometheus writes a staleness
//!   marker for them; the contract has none);
//! - resource: `service.namespace/service.name` → `job`, `service.instance.id` →
//!   `instance`; the other resource attributes go to one `target_info` gauge (value 1, at
//!   the resource's latest point) with `job` and `instance`; attributes listed in
//!   `promote_resource_attributes` are also added to every series of the resource;
//! - a point's attributes are its labels (names per [`names::label_name`]; keys that
//!   map to one name have their values joined with `;` in key order); `job` and
//!   `instance` from the resource replace attributes of those names;
//! - start times (created timestamps) and exemplars are not written;
//! - the contract's `type` is the metric's kind; its `unit` the OTLP unit as sent (UCUM);
//! - `rejected_data_points` in the answer counts samples: a refused point is one, a
//!   series the data contract refuses counts its samples.
use std::collections::BTreeMap;

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    metric::Data, number_data_point, AggregationTemporality, Metric, NumberDataPoint,
};
use weir_contract::{MetricType, Sample};

use super::names::{label_name, metric_name, Kind, Strategy};
use crate::error::ApiError;
use weir_ingest::validate::LabelRef;
use weir_ingest::BatchBuilder;

const FLAG_NO_RECORDED_VALUE: u32 = 1;

/// Settings of the translation (`gateway.otlp`).
#[derive(Debug, Clone)]
pub struct Translation {
    pub strategy: Strategy,
    /// Resource attributes added to every series of their resource.
    pub promote: Vec<String>,
}

impl Default for Translation {
    fn default() -> Self {
        Self {
            strategy: Strategy::WithSuffixes,
            promote: Vec::new(),
        }
    }
}

impl Translation {
    pub fn of_config(c: &weir_runtime::config::OtlpConfig) -> Self {
        use weir_runtime::config::OtlpTranslationStrategy as S;
        Self {
            strategy: match c.translation_strategy {
                S::UnderscoreEscapingWithSuffixes => Strategy::WithSuffixes,
                S::UnderscoreEscapingWithoutSuffixes => Strategy::WithoutSuffixes,
            },
            promote: c.promote_resource_attributes.clone(),
        }
    }
}

/// Where series go: the gateway's batch in production, a list in tests.
pub trait Sink {
    fn series(
        &mut self,
        name: &str,
        labels: &[(String, String)],
        samples: &[Sample],
        kind: MetricType,
        unit: Option<&str>,
    ) -> Result<(), ApiError>;
    /// `points` data points refused, and why.
    fn refuse(&mut self, points: usize, why: String);
}

impl Sink for BatchBuilder<'_> {
    fn series(
        &mut self,
        name: &str,
        labels: &[(String, String)],
        samples: &[Sample],
        kind: MetricType,
        unit: Option<&str>,
    ) -> Result<(), ApiError> {
        let mut refs: Vec<LabelRef<'_>> = labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        self.add(name, &mut refs, samples, kind, unit)
    }

    fn refuse(&mut self, samples: usize, why: String) {
        self.reject(samples, || why);
    }
}

/// Feeds every data point of `req` to `sink`.
pub fn translate(
    req: &ExportMetricsServiceRequest,
    t: &Translation,
    sink: &mut impl Sink,
) -> Result<(), ApiError> {
    for rm in &req.resource_metrics {
        let attrs: &[KeyValue] = rm
            .resource
            .as_ref()
            .map_or(&[][..], |r| r.attributes.as_slice());
        let resource = ResourceLabels::of(attrs, &t.promote);
        let mut latest: Option<i64> = None;
        for sm in &rm.scope_metrics {
            for m in &sm.metrics {
                if let Some(ts) = metric(m, &resource, t, sink)? {
                    latest = Some(latest.map_or(ts, |l| l.max(ts)));
                }
            }
        }
        if let (Some(ts), false) = (latest, resource.info.is_empty()) {
            let mut labels = resource.info.clone();
            labels.extend(resource.identity.iter().cloned());
            sink.series(
                "target_info",
                &labels,
                &[Sample::new(ts, 1.0)],
                MetricType::Gauge,
                None,
            )?;
        }
    }
    Ok(())
}

/// The labels a resource gives its series.
struct ResourceLabels {
    /// `job` and `instance`.
    identity: Vec<(String, String)>,
    /// Promoted attributes, on every series.
    promoted: Vec<(String, String)>,
    /// The other attributes, for `target_info`.
    info: Vec<(String, String)>,
}

impl ResourceLabels {
    fn of(attrs: &[KeyValue], promote: &[String]) -> Self {
        let get = |k: &str| {
            attrs
                .iter()
                .find(|a| a.key == k)
                .map(|a| value_string(a.value.as_ref()))
        };
        let mut identity = Vec::new();
        if let Some(name) = get("service.name") {
            let job = match get("service.namespace") {
                Some(ns) if !ns.is_empty() => format!("{ns}/{name}"),
                _ => name,
            };
            identity.push(("job".to_string(), job));
        }
        if let Some(i) = get("service.instance.id") {
            identity.push(("instance".to_string(), i));
        }
        let identifying = ["service.name", "service.namespace", "service.instance.id"];
        let rest: Vec<&KeyValue> = attrs
            .iter()
            .filter(|a| !identifying.contains(&a.key.as_str()))
            .collect();
        let promoted = labels_of(rest.iter().copied().filter(|a| promote.contains(&a.key)));
        let info = labels_of(rest.iter().copied());
        Self {
            identity,
            promoted,
            info,
        }
    }
}

/// Attributes as labels: names translated, values of keys that map to one name joined
/// with `;` in key order; sorted by name.
fn labels_of<'a>(attrs: impl Iterator<Item = &'a KeyValue>) -> Vec<(String, String)> {
    let mut by_name: BTreeMap<String, Vec<(&str, String)>> = BTreeMap::new();
    for a in attrs {
        if let Some(n) = label_name(&a.key) {
            by_name
                .entry(n)
                .or_default()
                .push((a.key.as_str(), value_string(a.value.as_ref())));
        }
    }
    by_name
        .into_iter()
        .map(|(n, mut vs)| {
            vs.sort();
            let v = vs.into_iter().map(|(_, v)| v).collect::<Vec<_>>().join(";");
            (n, v)
        })
        .collect()
}

/// An attribute value as a label value.
fn value_string(v: Option<&AnyValue>) -> String {
    match v.and_then(|v| v.value.as_ref()) {
        None => String::new(),
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::DoubleValue(d)) => float_string(*d),
        Some(any_value::Value::BytesValue(b)) => {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.encode(b)
        }
        Some(other) => json_of(other).to_string(),
    }
}

fn json_of(v: &any_value::Value) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        any_value::Value::StringValue(s) => J::from(s.as_str()),
        any_value::Value::BoolValue(b) => J::from(*b),
        any_value::Value::IntValue(i) => J::from(*i),
        any_value::Value::DoubleValue(d) => J::from(*d),
        any_value::Value::BytesValue(b) => {
            use base64::Engine;
            J::from(base64::engine::general_purpose::STANDARD.encode(b))
        }
        // An index into a profiles dictionary: metrics have none.
        any_value::Value::StringValueStrindex(_) => J::Null,
        any_value::Value::ArrayValue(a) => J::Array(
            a.values
                .iter()
                .map(|x| x.value.as_ref().map_or(J::Null, json_of))
                .collect(),
        ),
        any_value::Value::KvlistValue(kv) => J::Object(
            kv.values
                .iter()
                .map(|x| {
                    (
                        x.key.clone(),
                        x.value
                            .as_ref()
                            .and_then(|v| v.value.as_ref())
                            .map_or(J::Null, json_of),
                    )
                })
                .collect(),
        ),
    }
}

/// A bound or value as Prometheus prints it in `le` and `quantile` (Go's shortest
/// round-trip form, `+Inf`).
fn float_string(f: f64) -> String {
    if f == f64::INFINITY {
        "+Inf".into()
    } else if f == f64::NEG_INFINITY {
        "-Inf".into()
    } else if f.is_nan() {
        "NaN".into()
    } else {
        // Rust's Display is the shortest round-trip decimal, as Go's 'f' with -1.
        format!("{f}")
    }
}

fn ms(time_unix_nano: u64) -> Option<i64> {
    (time_unix_nano > 0).then(|| (time_unix_nano / 1_000_000).min(i64::MAX as u64) as i64)
}

/// The labels of one point: its attributes, the promoted resource attributes it does
/// not have, then `job` and `instance`.
fn point_labels(attrs: &[KeyValue], r: &ResourceLabels) -> Vec<(String, String)> {
    let mut labels = labels_of(attrs.iter());
    for (k, v) in &r.promoted {
        if !labels.iter().any(|(n, _)| n == k) {
            labels.push((k.clone(), v.clone()));
        }
    }
    for (k, v) in &r.identity {
        labels.retain(|(n, _)| n != k);
        labels.push((k.clone(), v.clone()));
    }
    labels
}

/// One metric's points; returns the latest timestamp written.
fn metric(
    m: &Metric,
    r: &ResourceLabels,
    t: &Translation,
    sink: &mut impl Sink,
) -> Result<Option<i64>, ApiError> {
    let Some(data) = &m.data else {
        return Ok(None);
    };
    let unit = (!m.unit.is_empty()).then_some(m.unit.as_str());
    let mut latest = None;
    let mut seen = |ts: i64| latest = Some(latest.map_or(ts, |l: i64| l.max(ts)));
    match data {
        Data::Gauge(g) => {
            let name = metric_name(&m.name, &m.unit, Kind::Gauge, t.strategy);
            for p in &g.data_points {
                if let Some(ts) = number(&name, p, r, MetricType::Gauge, unit, sink)? {
                    seen(ts);
                }
            }
        }
        Data::Sum(s) => {
            if !cumulative(
                sink,
                &m.name,
                "sums",
                s.aggregation_temporality,
                s.data_points.len(),
            ) {
                return Ok(None);
            }
            let (kind, mt) = if s.is_monotonic {
                (Kind::Counter, MetricType::Counter)
            } else {
                (Kind::Gauge, MetricType::Gauge)
            };
            let name = metric_name(&m.name, &m.unit, kind, t.strategy);
            for p in &s.data_points {
                if let Some(ts) = number(&name, p, r, mt, unit, sink)? {
                    seen(ts);
                }
            }
        }
        Data::Histogram(h) => {
            if !cumulative(
                sink,
                &m.name,
                "histograms",
                h.aggregation_temporality,
                h.data_points.len(),
            ) {
                return Ok(None);
            }
            let base = metric_name(&m.name, &m.unit, Kind::Histogram, t.strategy);
            let (bucket, sum, count) = (
                format!("{base}_bucket"),
                format!("{base}_sum"),
                format!("{base}_count"),
            );
            for p in &h.data_points {
                if p.flags & FLAG_NO_RECORDED_VALUE != 0 {
                    continue;
                }
                let Some(ts) = ms(p.time_unix_nano) else {
                    sink.refuse(
                        1,
                        format!("histogram {:?}: a point without time_unix_nano", m.name),
                    );
                    continue;
                };
                let mut labels = point_labels(&p.attributes, r);
                // As Prometheus: a bucket per bound that has a count, `+Inf` the point's
                // count (so counts and bounds of unequal length still give the buckets
                // both describe). One label list, its last entry the bucket's `le`.
                labels.push(("le".into(), String::new()));
                let mut cumulative = 0u64;
                let buckets = p.explicit_bounds.iter().zip(&p.bucket_counts);
                for (le, v) in buckets
                    .map(|(bound, c)| {
                        cumulative = cumulative.saturating_add(*c);
                        (float_string(*bound), cumulative as f64)
                    })
                    .chain([("+Inf".to_string(), p.count as f64)])
                {
                    if let Some(last) = labels.last_mut() {
                        last.1 = le;
                    }
                    point(sink, &bucket, &labels, ts, v, MetricType::Histogram, unit)?;
                }
                labels.pop();
                if let Some(s) = p.sum {
                    point(sink, &sum, &labels, ts, s, MetricType::Histogram, unit)?;
                }
                point(
                    sink,
                    &count,
                    &labels,
                    ts,
                    p.count as f64,
                    MetricType::Histogram,
                    unit,
                )?;
                seen(ts);
            }
        }
        Data::Summary(s) => {
            let base = metric_name(&m.name, &m.unit, Kind::Summary, t.strategy);
            let (sum, count) = (format!("{base}_sum"), format!("{base}_count"));
            for p in &s.data_points {
                if p.flags & FLAG_NO_RECORDED_VALUE != 0 {
                    continue;
                }
                let Some(ts) = ms(p.time_unix_nano) else {
                    sink.refuse(
                        1,
                        format!("summary {:?}: a point without time_unix_nano", m.name),
                    );
                    continue;
                };
                let mut labels = point_labels(&p.attributes, r);
                labels.push(("quantile".into(), String::new()));
                for q in &p.quantile_values {
                    if let Some(last) = labels.last_mut() {
                        last.1 = float_string(q.quantile);
                    }
                    point(sink, &base, &labels, ts, q.value, MetricType::Summary, unit)?;
                }
                labels.pop();
                point(sink, &sum, &labels, ts, p.sum, MetricType::Summary, unit)?;
                point(
                    sink,
                    &count,
                    &labels,
                    ts,
                    p.count as f64,
                    MetricType::Summary,
                    unit,
                )?;
                seen(ts);
            }
        }
        Data::ExponentialHistogram(e) => {
            refuse_points(
                sink,
                e.data_points.len(),
                format!(
                    "exponential histogram {:?}: not supported; use explicit-bucket histograms (the SDK's default aggregation)",
                    m.name
                ),
            );
        }
    }
    Ok(latest)
}

/// One sample of one series.
fn point(
    sink: &mut impl Sink,
    name: &str,
    labels: &[(String, String)],
    ts: i64,
    v: f64,
    kind: MetricType,
    unit: Option<&str>,
) -> Result<(), ApiError> {
    sink.series(name, labels, &[Sample::new(ts, v)], kind, unit)
}

/// Whether a sum's or histogram's points are cumulative; when not, all `points` are
/// refused with the reason.
fn cumulative(sink: &mut impl Sink, name: &str, what: &str, t: i32, points: usize) -> bool {
    if t == AggregationTemporality::Cumulative as i32 {
        return true;
    }
    refuse_points(
        sink,
        points,
        format!(
            "metric {name:?}: {} temporality is not supported; export cumulative {what} (the SDK's temporality preference)",
            temporality(t)
        ),
    );
    false
}

/// Refuses a metric's `n` points, if it has any.
fn refuse_points(sink: &mut impl Sink, n: usize, why: String) {
    if n > 0 {
        sink.refuse(n, why)
    }
}

fn temporality(t: i32) -> &'static str {
    match AggregationTemporality::try_from(t) {
        Ok(AggregationTemporality::Delta) => "delta",
        Ok(AggregationTemporality::Cumulative) => "cumulative",
        _ => "unspecified",
    }
}

/// One gauge or sum point; its timestamp when written.
fn number(
    name: &str,
    p: &NumberDataPoint,
    r: &ResourceLabels,
    mt: MetricType,
    unit: Option<&str>,
    sink: &mut impl Sink,
) -> Result<Option<i64>, ApiError> {
    if p.flags & FLAG_NO_RECORDED_VALUE != 0 {
        return Ok(None);
    }
    let Some(ts) = ms(p.time_unix_nano) else {
        sink.refuse(
            1,
            format!("metric {name:?}: a point without time_unix_nano"),
        );
        return Ok(None);
    };
    let v = match p.value {
        Some(number_data_point::Value::AsDouble(d)) => d,
        Some(number_data_point::Value::AsInt(i)) => i as f64,
        None => {
            sink.refuse(1, format!("metric {name:?}: a point without a value"));
            return Ok(None);
        }
    };
    let labels = point_labels(&p.attributes, r);
    sink.series(name, &labels, &[Sample::new(ts, v)], mt, unit)?;
    Ok(Some(ts))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocols::otlp::decode_request;
    use opentelemetry_proto::tonic::metrics::v1::{
        metric, Gauge, Histogram, HistogramDataPoint, ResourceMetrics, ScopeMetrics, Sum,
    };
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use prost::Message;

    /// Series as the sink got them: name, labels sorted, (ts, value), type, unit.
    type Got = Vec<(
        String,
        Vec<(String, String)>,
        Vec<(i64, f64)>,
        MetricType,
        Option<String>,
    )>;

    #[derive(Default)]
    struct Collect {
        series: Got,
        refused: Vec<(usize, String)>,
    }

    impl Sink for Collect {
        fn series(
            &mut self,
            name: &str,
            labels: &[(String, String)],
            samples: &[Sample],
            kind: MetricType,
            unit: Option<&str>,
        ) -> Result<(), ApiError> {
            let mut labels = labels.to_vec();
            labels.sort();
            self.series.push((
                name.into(),
                labels,
                samples.iter().map(|s| (s.timestamp_ms, s.value)).collect(),
                kind,
                unit.map(str::to_string),
            ));
            Ok(())
        }
        fn refuse(&mut self, points: usize, why: String) {
            self.refused.push((points, why));
        }
    }

    /// In the style of the specification's `examples/metrics.json`: nanoseconds as
    /// numbers or strings, enums as numbers, 64-bit integers as strings.
    const JSON: &str = r#"{"resourceMetrics":[{"resource":{"attributes":[
      {"key":"service.name","value":{"stringValue":"checkout"}},
      {"key":"service.namespace","value":{"stringValue":"shop"}},
      {"key":"service.instance.id","value":{"stringValue":"pod-7"}},
      {"key":"host.name","value":{"stringValue":"node-3"}},
      {"key":"k8s.namespace.name","value":{"stringValue":"prod"}}]},
     "scopeMetrics":[{"scope":{"name":"app","version":"1.2"},"metrics":[
      {"name":"http.server.requests","unit":"{request}","description":"requests","sum":{"aggregationTemporality":2,"isMonotonic":true,
        "dataPoints":[{"asInt":"42","startTimeUnixNano":"1699999990000000000","timeUnixNano":"1700000000000000000",
          "attributes":[{"key":"http.method","value":{"stringValue":"GET"}}]}]}},
      {"name":"queue.depth","sum":{"aggregationTemporality":2,"isMonotonic":false,
        "dataPoints":[{"asInt":"7","timeUnixNano":1700000000000000000}]}},
      {"name":"cpu.utilization","unit":"1","gauge":{"dataPoints":[{"asDouble":0.25,"timeUnixNano":1700000000000000000}]}},
      {"name":"http.server.duration","unit":"ms","histogram":{"aggregationTemporality":2,"dataPoints":[
        {"timeUnixNano":1700000000000000000,"count":"4","sum":30.5,"bucketCounts":["1","2","1"],"explicitBounds":[5,10]}]}},
      {"name":"bytes.sent","unit":"By","sum":{"aggregationTemporality":1,"isMonotonic":true,
        "dataPoints":[{"asInt":"5","timeUnixNano":1700000000000000000}]}}
     ]}]}]}"#;

    fn kv(k: &str, v: &str) -> KeyValue {
        KeyValue {
            key: k.into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(v.into())),
            }),
            ..Default::default()
        }
    }

    /// The same request, built as protobuf messages.
    fn request() -> ExportMetricsServiceRequest {
        const T: u64 = 1_700_000_000_000_000_000;
        let num = |v: number_data_point::Value, attrs: Vec<KeyValue>| NumberDataPoint {
            value: Some(v),
            time_unix_nano: T,
            attributes: attrs,
            ..Default::default()
        };
        let m = |name: &str, unit: &str, data: metric::Data| Metric {
            name: name.into(),
            unit: unit.into(),
            data: Some(data),
            ..Default::default()
        };
        let cumulative = AggregationTemporality::Cumulative as i32;
        ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(Resource {
                    attributes: vec![
                        kv("service.name", "checkout"),
                        kv("service.namespace", "shop"),
                        kv("service.instance.id", "pod-7"),
                        kv("host.name", "node-3"),
                        kv("k8s.namespace.name", "prod"),
                    ],
                    ..Default::default()
                }),
                scope_metrics: vec![ScopeMetrics {
                    metrics: vec![
                        m(
                            "http.server.requests",
                            "{request}",
                            metric::Data::Sum(Sum {
                                data_points: vec![NumberDataPoint {
                                    start_time_unix_nano: T - 10_000_000_000,
                                    ..num(
                                        number_data_point::Value::AsInt(42),
                                        vec![kv("http.method", "GET")],
                                    )
                                }],
                                aggregation_temporality: cumulative,
                                is_monotonic: true,
                            }),
                        ),
                        m(
                            "queue.depth",
                            "",
                            metric::Data::Sum(Sum {
                                data_points: vec![num(number_data_point::Value::AsInt(7), vec![])],
                                aggregation_temporality: cumulative,
                                is_monotonic: false,
                            }),
                        ),
                        m(
                            "cpu.utilization",
                            "1",
                            metric::Data::Gauge(Gauge {
                                data_points: vec![num(
                                    number_data_point::Value::AsDouble(0.25),
                                    vec![],
                                )],
                            }),
                        ),
                        m(
                            "http.server.duration",
                            "ms",
                            metric::Data::Histogram(Histogram {
                                data_points: vec![HistogramDataPoint {
                                    time_unix_nano: T,
                                    count: 4,
                                    sum: Some(30.5),
                                    bucket_counts: vec![1, 2, 1],
                                    explicit_bounds: vec![5.0, 10.0],
                                    ..Default::default()
                                }],
                                aggregation_temporality: cumulative,
                            }),
                        ),
                        m(
                            "bytes.sent",
                            "By",
                            metric::Data::Sum(Sum {
                                data_points: vec![num(number_data_point::Value::AsInt(5), vec![])],
                                aggregation_temporality: AggregationTemporality::Delta as i32,
                                is_monotonic: true,
                            }),
                        ),
                    ],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    fn run(req: &ExportMetricsServiceRequest, t: &Translation) -> Collect {
        let mut c = Collect::default();
        translate(req, t, &mut c).unwrap();
        c
    }

    fn labels(extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut l: Vec<(String, String)> = [("instance", "pod-7"), ("job", "shop/checkout")]
            .iter()
            .chain(extra)
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        l.sort();
        l
    }

    #[test]
    fn each_kind_becomes_the_series_prometheus_writes() {
        const MS: i64 = 1_700_000_000_000;
        let got = run(&request(), &Translation::default());
        let s = |name: &str, extra: &[(&str, &str)], v: f64, t: MetricType, unit: Option<&str>| {
            (
                name.to_string(),
                labels(extra),
                vec![(MS, v)],
                t,
                unit.map(str::to_string),
            )
        };
        let h = |name: &str, extra: &[(&str, &str)], v: f64| {
            s(name, extra, v, MetricType::Histogram, Some("ms"))
        };
        let want: Got = vec![
            // Monotonic cumulative sum: a counter, `_total`; `{request}` adds no unit.
            s(
                "http_server_requests_total",
                &[("http_method", "GET")],
                42.0,
                MetricType::Counter,
                Some("{request}"),
            ),
            // Non-monotonic cumulative sum: a gauge, no suffix.
            s("queue_depth", &[], 7.0, MetricType::Gauge, None),
            // A gauge of unit `1`: `_ratio`.
            s(
                "cpu_utilization_ratio",
                &[],
                0.25,
                MetricType::Gauge,
                Some("1"),
            ),
            // Histogram: the unit's word, cumulative buckets, `+Inf` = count, sum, count.
            h(
                "http_server_duration_milliseconds_bucket",
                &[("le", "5")],
                1.0,
            ),
            h(
                "http_server_duration_milliseconds_bucket",
                &[("le", "10")],
                3.0,
            ),
            h(
                "http_server_duration_milliseconds_bucket",
                &[("le", "+Inf")],
                4.0,
            ),
            h("http_server_duration_milliseconds_sum", &[], 30.5),
            h("http_server_duration_milliseconds_count", &[], 4.0),
            // The resource's other attributes, once, at its latest point.
            s(
                "target_info",
                &[("host_name", "node-3"), ("k8s_namespace_name", "prod")],
                1.0,
                MetricType::Gauge,
                None,
            ),
        ];
        assert_eq!(got.series, want);
        // Delta temporality is refused, point by point, with the reason.
        assert_eq!(got.refused.len(), 1);
        assert_eq!(got.refused[0].0, 1);
        assert!(got.refused[0].1.contains("delta"), "{}", got.refused[0].1);
    }

    #[test]
    fn otlp_json_decodes_to_the_same_series_as_protobuf() {
        let t = Translation::default();
        let from_json = decode_request(JSON.as_bytes(), true).unwrap();
        let from_pb = decode_request(&request().encode_to_vec(), false).unwrap();
        let (a, b) = (run(&from_json, &t), run(&from_pb, &t));
        assert_eq!(a.series, b.series);
        assert_eq!(a.refused, b.refused);
        assert_eq!(a.series.len(), 9);
    }

    #[test]
    fn promoted_resource_attributes_are_on_every_series() {
        let t = Translation {
            promote: vec!["k8s.namespace.name".into()],
            ..Default::default()
        };
        let got = run(&request(), &t);
        assert!(got
            .series
            .iter()
            .all(|(_, l, ..)| l.contains(&("k8s_namespace_name".into(), "prod".into()))));
    }

    #[test]
    fn a_summary_becomes_quantile_sum_and_count_series() {
        use opentelemetry_proto::tonic::metrics::v1::{
            summary_data_point::ValueAtQuantile, Summary, SummaryDataPoint,
        };
        let req = ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                scope_metrics: vec![ScopeMetrics {
                    metrics: vec![Metric {
                        name: "rpc.duration".into(),
                        unit: "s".into(),
                        data: Some(metric::Data::Summary(Summary {
                            data_points: vec![SummaryDataPoint {
                                time_unix_nano: 1_700_000_000_000_000_000,
                                count: 10,
                                sum: 2.5,
                                quantile_values: vec![
                                    ValueAtQuantile {
                                        quantile: 0.5,
                                        value: 0.2,
                                    },
                                    ValueAtQuantile {
                                        quantile: 0.99,
                                        value: 0.9,
                                    },
                                ],
                                attributes: vec![kv("rpc.method", "Get")],
                                ..Default::default()
                            }],
                        })),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let got = run(&req, &Translation::default());
        type Row = (String, Vec<(String, String)>, f64);
        let names: Vec<Row> = got
            .series
            .iter()
            .map(|(n, l, s, t, _)| {
                assert_eq!(*t, MetricType::Summary);
                (n.clone(), l.clone(), s[0].1)
            })
            .collect();
        let l = |extra: Option<&str>| {
            let mut v = vec![("rpc_method".to_string(), "Get".to_string())];
            if let Some(q) = extra {
                v.push(("quantile".to_string(), q.to_string()));
            }
            v.sort();
            v
        };
        // No resource: no job, instance or target_info.
        assert_eq!(
            names,
            vec![
                ("rpc_duration_seconds".to_string(), l(Some("0.5")), 0.2),
                ("rpc_duration_seconds".to_string(), l(Some("0.99")), 0.9),
                ("rpc_duration_seconds_sum".to_string(), l(None), 2.5),
                ("rpc_duration_seconds_count".to_string(), l(None), 10.0),
            ]
        );
    }

    #[test]
    fn attributes_that_map_to_one_label_are_joined_in_key_order() {
        let l = labels_of([kv("a.b", "dot"), kv("a_b", "underscore")].iter());
        assert_eq!(l, vec![("a_b".to_string(), "dot;underscore".to_string())]);
    }

    #[test]
    fn exponential_histograms_and_points_without_time_are_refused() {
        use opentelemetry_proto::tonic::metrics::v1::{
            ExponentialHistogram, ExponentialHistogramDataPoint,
        };
        let mut req = request();
        let metrics = &mut req.resource_metrics[0].scope_metrics[0].metrics;
        metrics.push(Metric {
            name: "latency".into(),
            data: Some(metric::Data::ExponentialHistogram(ExponentialHistogram {
                data_points: vec![ExponentialHistogramDataPoint::default(); 2],
                aggregation_temporality: AggregationTemporality::Cumulative as i32,
            })),
            ..Default::default()
        });
        metrics.push(Metric {
            name: "untimed".into(),
            data: Some(metric::Data::Gauge(Gauge {
                data_points: vec![NumberDataPoint {
                    value: Some(number_data_point::Value::AsDouble(1.0)),
                    ..Default::default()
                }],
            })),
            ..Default::default()
        });
        let got = run(&req, &Translation::default());
        assert_eq!(got.refused.len(), 3);
        assert_eq!(got.refused[1].0, 2);
        assert!(got.refused[1].1.contains("exponential histogram"));
        assert!(got.refused[2].1.contains("time_unix_nano"));
    }
}
