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
