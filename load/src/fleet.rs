//! The demo fleet: simulated edge devices pushing their readings to a gateway, a third
//! each over JSON push, Influx line protocol and Prometheus remote write. Optional
//! incidents (`--overheat`, `--silent`) give the demo alert rules (rules/fleet.rules.yml)
//! something to fire on.
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Args;
use rand::{Rng, SeedableRng};
use weir_contract::remote_write::{Label, Sample, TimeSeries, WriteRequest};

#[derive(Debug, Args)]
pub struct FleetArgs {
    /// Gateway base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    gateway: String,
    /// Number of simulated devices.
    #[arg(long, default_value_t = 300)]
    devices: usize,
    /// How often each device reports.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    interval: Duration,
    /// How long to run.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Devices per request.
    #[arg(long, default_value_t = 50)]
    batch: usize,
    /// Bearer API key, when the gateway has auth on.
    #[arg(long, env = "WEIR_API_KEY")]
    api_key: Option<String>,
    /// Device whose temperature climbs above 80 °C during the incident (repeatable).
    #[arg(long, value_name = "DEVICE")]
    overheat: Vec<String>,
    /// Device that stops sending anything from the incident on (repeatable).
    #[arg(long, value_name = "DEVICE")]
    silent: Vec<String>,
    /// When the incidents start, counted from the fleet's start.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    incident_after: Duration,
    /// How long an overheating device stays hot before it returns to normal.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    overheat_for: Duration,
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// One simulated device and its slowly drifting state.
struct Device {
    id: String,
    site: &'static str,
    model: &'static str,
    temperature: f64,
    cpu: f64,
    packets: f64,
    boot_ms: i64,
    /// Named by --overheat.
    overheats: bool,
    /// Named by --silent.
    silent: bool,
}

const SITES: [&str; 4] = ["ams", "fra", "lhr", "waw"];
const MODELS: [&str; 3] = ["edge-a1", "edge-b2", "gw-x9"];

impl Device {
    /// `overheat_now`: the --overheat incident is under way.
    fn tick(&mut self, rng: &mut impl Rng, overheat_now: bool) {
        if self.overheats && overheat_now {
            // Well above the demo rules' 80 °C threshold, with noise that never dips
            // below it: one cool sample would reset DeviceOverheating's `for`.
            let base = if self.temperature < 86.0 {
                rng.random_range(86.0..90.0)
            } else {
                self.temperature
            };
            self.temperature = (base + rng.random_range(-0.5..0.5)).clamp(86.0, 90.0);
        } else if self.overheats && self.temperature > 75.0 {
            // The incident is over: back to the normal range in one step, so the alert
            // resolves at the next evaluation instead of after a slow cool-down.
            self.temperature = rng.random_range(45.0..55.0);
        } else {
            self.temperature = (self.temperature + rng.random_range(-0.5..0.5)).clamp(20.0, 75.0);
        }
        self.cpu = (self.cpu + rng.random_range(-0.05..0.05)).clamp(0.01, 0.99);
        self.packets += rng.random_range(100.0..5000.0_f64).round();
    }

    fn readings(&self, now: i64) -> [(&'static str, f64); 4] {
        [
            (
                "temperature_celsius",
                (self.temperature * 100.0).round() / 100.0,
            ),
            ("cpu_usage_ratio", (self.cpu * 1000.0).round() / 1000.0),
            ("packets_sent_total", self.packets),
            ("uptime_seconds", ((now - self.boot_ms) / 1000) as f64),
        ]
    }
}

pub async fn run(a: FleetArgs) -> anyhow::Result<()> {
    let overheat: BTreeSet<&str> = a.overheat.iter().map(String::as_str).collect();
    let silent: BTreeSet<&str> = a.silent.iter().map(String::as_str).collect();
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let start = now_ms();
    let mut devices: Vec<Device> = (0..a.devices)
        .map(|i| {
            let id = format!("dev-{i:05}");
            Device {
                site: SITES[i % SITES.len()],
                model: MODELS[i % MODELS.len()],
                temperature: rng.random_range(30.0..55.0),
                cpu: rng.random_range(0.05..0.6),
                packets: 0.0,
                boot_ms: start - rng.random_range(60_000..86_400_000),
                overheats: overheat.contains(id.as_str()),
                silent: silent.contains(id.as_str()),
                id,
            }
        })
        .collect();
    // A misspelt or out-of-range name would otherwise run a demo in which nothing fires.
    for (flag, names) in [("--overheat", &overheat), ("--silent", &silent)] {
        for name in names.iter() {
            if !devices.iter().any(|d| d.id == *name) {
                anyhow::bail!(
                    "{flag} {name}: no such device (the fleet has dev-00000 to dev-{:05})",
                    a.devices.saturating_sub(1)
                );
            }
        }
    }
    // Saturating: an absurdly long --incident-after or --overheat-for just means the
    // overheating never ends within the run, not a panic.
    let overheat_end = a.incident_after.saturating_add(a.overheat_for);
    let http = reqwest::Client::new();
    let began = Instant::now();
    let mut statuses: BTreeMap<String, u64> = BTreeMap::new();
    let mut samples_ok: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut requests = 0u64;
    println!(
        "fleet: {} devices, 4 metrics each, every {:?}, for {:?} -> {}",
        a.devices, a.interval, a.duration, a.gateway
    );
    let incidents: Vec<String> = overheat
        .iter()
        .map(|d| {
            format!(
                "{d} overheats from +{:?} for {:?}",
                a.incident_after, a.overheat_for
            )
        })
        .chain(
            silent
                .iter()
                .map(|d| format!("{d} goes silent from +{:?}", a.incident_after)),
        )
        .collect();
    if !incidents.is_empty() {
        println!("fleet: {}", incidents.join("; "));
    }
    while began.elapsed() < a.duration {
        let tick = Instant::now();
        let now = now_ms();
        let since = tick.duration_since(began);
        let incident = since >= a.incident_after;
        let overheat_now = incident && since < overheat_end;
        for d in devices.iter_mut() {
            d.tick(&mut rng, overheat_now);
        }
        // Chunk the whole fleet and drop silent devices within each chunk, so that every
        // other device keeps its chunk and therefore its protocol for the whole run.
        for (chunk_no, chunk) in devices.chunks(a.batch).enumerate() {
            let chunk: Vec<&Device> = chunk.iter().filter(|d| !(incident && d.silent)).collect();
            if chunk.is_empty() {
                continue;
            }
            let (protocol, req) = match chunk_no % 3 {
                0 => ("json", json_request(&http, &a.gateway, &chunk, now)),
                1 => ("influx", influx_request(&http, &a.gateway, &chunk, now)),
                _ => (
                    "remote_write",
                    remote_write_request(&http, &a.gateway, &chunk, now),
                ),
            };
            let req = match &a.api_key {
                Some(k) => req.bearer_auth(k),
                None => req,
            };
            requests += 1;
            let n = chunk.len() as u64 * 4;
            match req.send().await {
                Ok(r) => {
                    let s = r.status();
                    *statuses.entry(s.as_u16().to_string()).or_default() += 1;
                    if s.is_success() {
                        *samples_ok.entry(protocol).or_default() += n;
                    } else {
                        eprintln!("{protocol}: {s}: {}", r.text().await.unwrap_or_default());
                    }
                }
                Err(e) => {
                    *statuses.entry("error".into()).or_default() += 1;
                    eprintln!("{protocol}: {e}");
                }
            }
        }
        let spent = tick.elapsed();
        if spent < a.interval {
            tokio::time::sleep(a.interval - spent).await;
        }
    }
    let total: u64 = samples_ok.values().sum();
    println!(
        "fleet done: {requests} requests in {:.1} s; answers {statuses:?}",
        began.elapsed().as_secs_f64()
    );
    println!("samples accepted by the gateway: {total} {samples_ok:?}");
    if total == 0 {
        anyhow::bail!("the gateway accepted nothing");
    }
    Ok(())
}

fn json_request(
    http: &reqwest::Client,
    base: &str,
    devices: &[&Device],
    now: i64,
) -> reqwest::RequestBuilder {
    let body: Vec<serde_json::Value> = devices
        .iter()
        .map(|d| {
            serde_json::json!({
                "labels": {"device": d.id, "site": d.site, "model": d.model},
                "metrics": d.readings(now).iter().map(|(n, v)| serde_json::json!({"name": n, "value": v, "timestamp": now})).collect::<Vec<_>>(),
            })
        })
        .collect();
    http.post(format!("{base}/api/v1/push")).json(&body)
}

fn influx_request(
    http: &reqwest::Client,
    base: &str,
    devices: &[&Device],
    now: i64,
) -> reqwest::RequestBuilder {
    let mut body = String::new();
    for d in devices {
        let r = d.readings(now);
        // One line per metric keeps the demo's series names identical across protocols.
        for (name, v) in r {
            body.push_str(&format!(
                "{name},device={},site={},model={} value={v} {now}\n",
                d.id, d.site, d.model
            ));
        }
    }
    http.post(format!("{base}/api/v2/write?precision=ms"))
        .body(body)
}

fn remote_write_request(
    http: &reqwest::Client,
    base: &str,
    devices: &[&Device],
    now: i64,
) -> reqwest::RequestBuilder {
    let l = |n: &str, v: &str| Label {
        name: n.into(),
        value: v.into(),
    };
    let mut ts = Vec::new();
    for d in devices {
        for (name, v) in d.readings(now) {
            ts.push(TimeSeries {
                labels: vec![
                    l("__name__", name),
                    l("device", &d.id),
                    l("model", d.model),
                    l("site", d.site),
                ],
                samples: vec![Sample {
                    value: v,
                    timestamp: now,
                }],
                histograms: vec![],
            });
        }
    }
    let body = prost::Message::encode_to_vec(&WriteRequest {
        timeseries: ts,
        metadata: vec![],
    });
    http.post(format!("{base}/api/v1/write"))
        .header("Content-Type", "application/x-protobuf")
        .header("Content-Encoding", "snappy")
        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
        .body(
            snap::raw::Encoder::new()
                .compress_vec(&body)
                .expect("snappy"),
        )
}
