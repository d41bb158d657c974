//! Realistic series for load: node_exporter-like names and label sets.
use rand::{Rng, SeedableRng};
use weir_contract::remote_write::{Label, Sample, TimeSeries, WriteRequest};

const METRICS: [&str; 12] = [
    "node_cpu_seconds_total",
    "node_memory_MemAvailable_bytes",
    "node_network_receive_bytes_total",
    "node_network_transmit_bytes_total",
    "node_filesystem_avail_bytes",
    "node_disk_io_time_seconds_total",
    "node_load1",
    "node_context_switches_total",
    "process_resident_memory_bytes",
    "http_requests_total",
    "http_request_duration_seconds_bucket",
    "temperature_celsius",
];

/// The labels of series `i` out of a fleet: 7 labels plus the name, as a scrape target
/// usually carries (instance, job, region, zone, env, plus two series-specific ones).
pub fn series_labels(i: usize) -> Vec<Label> {
    let host = i / METRICS.len();
    let l = |n: &str, v: String| Label {
        name: n.into(),
        value: v,
    };
    vec![
        l("__name__", METRICS[i % METRICS.len()].into()),
        l("cpu", format!("{}", i % 16)),
        l("env", "prod".into()),
        l("instance", format!("host-{host:06}.example.internal:9100")),
        l("job", "node".into()),
        l("mode", ["user", "system", "idle", "iowait"][i % 4].into()),
        l(
            "region",
            ["eu-west-1", "us-east-1", "ap-south-1"][host % 3].into(),
        ),
        l("zone", format!("z{}", host % 4)),
    ]
}

/// How a workload is put on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    /// Remote write 1.0, snappy.
    Rw1,
    /// Remote write 2.0, snappy: one symbol table per request.
    Rw2,
    /// OTLP/HTTP protobuf, gzip (an OpenTelemetry Collector's default): one resource,
    /// a gauge per series, the labels as attributes.
    Otlp,
}

impl Wire {
    pub fn name(self) -> &'static str {
        match self {
            Wire::Rw1 => "remote write 1.0",
            Wire::Rw2 => "remote write 2.0",
            Wire::Otlp => "OTLP/HTTP protobuf + gzip",
        }
    }

    /// Path, content type and content encoding of a request.
    pub fn request(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Wire::Rw1 => ("/api/v1/write", "application/x-protobuf", "snappy"),
            Wire::Rw2 => (
                "/api/v1/write",
                "application/x-protobuf;proto=io.prometheus.write.v2.Request",
                "snappy",
            ),
            Wire::Otlp => ("/v1/metrics", "application/x-protobuf", "gzip"),
        }
    }
}

/// The same workload as [`remote_write_bodies`], encoded for `wire`.
pub fn bodies(
    wire: Wire,
    requests: usize,
    series: usize,
    samples: usize,
    fleet: usize,
    now_ms: i64,
) -> Vec<(Vec<u8>, usize)> {
    let rw1 = remote_write_bodies(requests, series, samples, fleet, now_ms);
    if wire == Wire::Rw1 {
        return rw1;
    }
    rw1.into_iter()
        .map(|(body, n)| {
            let plain = snap::raw::Decoder::new()
                .decompress_vec(&body)
                .expect("our own snappy");
            let req: WriteRequest = prost::Message::decode(plain.as_slice()).expect("our own");
            let body = match wire {
                Wire::Rw2 => snap::raw::Encoder::new()
                    .compress_vec(&rw2(&req))
                    .expect("snappy"),
                _ => gzip(&otlp(&req)),
            };
            (body, n)
        })
        .collect()
}

fn rw2(req: &WriteRequest) -> Vec<u8> {
    use weir_contract::remote_write::v2;
    let mut symbols: Vec<String> = vec![String::new()];
    let mut index: std::collections::HashMap<String, u32> = Default::default();
    let mut r = |s: &str| -> u32 {
        if let Some(i) = index.get(s) {
            return *i;
        }
        symbols.push(s.to_string());
        let i = symbols.len() as u32 - 1;
        index.insert(s.to_string(), i);
        i
    };
    let timeseries = req
        .timeseries
        .iter()
        .map(|ts| v2::TimeSeries {
            labels_refs: ts
                .labels
                .iter()
                .flat_map(|l| [r(&l.name), r(&l.value)])
                .collect(),
            samples: ts
                .samples
                .iter()
                .map(|s| v2::Sample {
                    value: s.value,
                    timestamp: s.timestamp,
                })
                .collect(),
            metadata: Some(v2::Metadata {
                r#type: v2::metadata::MetricType::Gauge as i32,
                help_ref: 0,
                unit_ref: 0,
            }),
            ..Default::default()
        })
        .collect();
    prost::Message::encode_to_vec(&v2::Request {
        symbols,
        timeseries,
    })
}

fn otlp(req: &WriteRequest) -> Vec<u8> {
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
    use opentelemetry_proto::tonic::metrics::v1::{
        metric, number_data_point, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics,
    };
    use opentelemetry_proto::tonic::resource::v1::Resource;
    let kv = |k: &str, v: &str| KeyValue {
        key: k.to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.to_string())),
        }),
        ..Default::default()
    };
    let metrics = req
        .timeseries
        .iter()
        .map(|ts| {
            let name = ts
                .labels
                .iter()
                .find(|l| l.name == "__name__")
                .map_or("", |l| l.value.as_str());
            let attrs: Vec<KeyValue> = ts
                .labels
                .iter()
                .filter(|l| l.name != "__name__")
                .map(|l| kv(&l.name, &l.value))
                .collect();
            Metric {
                name: name.to_string(),
                data: Some(metric::Data::Gauge(Gauge {
                    data_points: ts
                        .samples
                        .iter()
                        .map(|s| NumberDataPoint {
                            attributes: attrs.clone(),
                            time_unix_nano: s.timestamp as u64 * 1_000_000,
                            value: Some(number_data_point::Value::AsDouble(s.value)),
                            ..Default::default()
                        })
                        .collect(),
                })),
                ..Default::default()
            }
        })
        .collect();
    prost::Message::encode_to_vec(&ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: vec![kv("service.name", "node")],
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                metrics,
                ..Default::default()
            }],
            ..Default::default()
        }],
    })
}

fn gzip(b: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(b).expect("gzip to memory");
    e.finish().expect("gzip to memory")
}

/// `requests` remote-write bodies (snappy protobuf), each with `series` series of
/// `samples` samples, walking over a fleet of `fleet` distinct series.
pub fn remote_write_bodies(
    requests: usize,
    series: usize,
    samples: usize,
    fleet: usize,
    now_ms: i64,
) -> Vec<(Vec<u8>, usize)> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    let mut next = 0usize;
    (0..requests)
        .map(|_| {
            let ts: Vec<TimeSeries> = (0..series)
                .map(|_| {
                    let i = next % fleet;
                    next += 1;
                    TimeSeries {
                        labels: series_labels(i),
                        samples: (0..samples)
                            .map(|j| Sample {
                                value: rng.random_range(0.0..1e6_f64).round(),
                                timestamp: now_ms - 15_000 * (samples - 1 - j) as i64,
                            })
                            .collect(),
                        histograms: vec![],
                    }
                })
                .collect();
            let body = prost::Message::encode_to_vec(&WriteRequest {
                timeseries: ts,
                metadata: vec![],
            });
            (
                snap::raw::Encoder::new()
                    .compress_vec(&body)
                    .expect("snappy"),
                series * samples,
            )
        })
        .collect()
}
