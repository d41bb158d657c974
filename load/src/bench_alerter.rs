//! Alert latency, weir against Prometheus in the same run.
//!
//! A fleet of series is pushed in real time (each sample stamped with the moment it is
//! sent, series spread evenly over the scrape interval as Prometheus spreads its
//! scrapes). Every remote-write request goes both to a `weir gateway` (→ metrics.raw →
//! `weir alerter`) and to a Prometheus with its remote-write receiver on. Both evaluate
//! the same rule file and notify the same Alertmanager, each with an external label
//! `source` of its own. Rule by rule, one series at a time breaches its threshold long
//! enough to fire.
//!
//! Measured per alert, with the firing step (the evaluation step at which the alert
//! fires, which both send as `startsAt`) as the origin:
//! - weir: the firing event read from the events topic (receipt by a consumer polling
//!   with a 10 ms fetch wait), and the alert's arrival at Alertmanager;
//! - Prometheus: the alert's arrival at Alertmanager.
//!
//! Arrival at Alertmanager is the alert's `updatedAt`, which Alertmanager sets when it
//! receives a post; both senders re-send only after an hour here, so the first value
//! read is the first arrival. A second origin, the same for both systems, is the moment
//! the data say the alert should fire: the first breaching sample's time plus `for`.
//! Measured from there, each figure also holds the wait for the next evaluation step.
use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use weir_contract::remote_write::{Label, Sample, TimeSeries, WriteRequest};

use crate::fleet::now_ms;
use crate::proc_stat::cpu_seconds;
use crate::process::{apply_topology, free_port, spawn_ready, spawn_weir, Proc};

#[derive(Debug, Args)]
pub struct AlerterBenchArgs {
    #[arg(long, default_value = "target/release/weir")]
    weir: PathBuf,
    #[arg(long, default_value = "127.0.0.1:9092")]
    kafka: String,
    /// Distinct series pushed every `step`.
    #[arg(long, default_value_t = 100_000)]
    series: usize,
    /// More series, of metrics no rule selects, pushed alongside (most of a real fleet's
    /// series are read by no alerting rule).
    #[arg(long, default_value_t = 0)]
    unread_series: usize,
    /// Alerting rules; each selects series/rules series of one metric.
    #[arg(long, default_value_t = 1000)]
    rules: usize,
    /// Metric names the series (and rules) are spread over.
    #[arg(long, default_value_t = 100)]
    metrics: usize,
    /// The rule groups' evaluation interval, and the push interval of every series.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    step: Duration,
    /// The alerter's bounded out-of-orderness.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    out_of_orderness: Duration,
    /// Every rule's `for`.
    #[arg(long = "for", default_value = "10s", value_parser = humantime::parse_duration)]
    for_: Duration,
    /// Each rule breaches once per wave, the rules' breaches spread over the wave.
    #[arg(long, default_value_t = 3)]
    waves: usize,
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    wave: Duration,
    /// How long a breach lasts.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    breach: Duration,
    /// Pushing before the first breach, so both systems are past start-up.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    warmup: Duration,
    #[arg(long, default_value_t = 8)]
    partitions: usize,
    /// Timely workers of the alerter (stage one).
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Also write every measured alert (system, alertname, instance, startsAt, arrival,
    /// first breaching sample) to this CSV file.
    #[arg(long)]
    csv: Option<PathBuf>,
    /// Series per remote-write request.
    #[arg(long, default_value_t = 1000)]
    series_per_request: usize,
}

/// Where series `i` sits: its metric, its index within the metric, and its rule.
struct Fleet {
    /// Series pushed: the `read` ones the rules select, then the unread ones.
    n: usize,
    read: usize,
    metrics: usize,
    zones: usize,
    step_ms: i64,
}

impl Fleet {
    fn metric(&self, i: usize) -> usize {
        i % self.metrics
    }
    fn host(&self, i: usize) -> usize {
        i / self.metrics
    }
    fn rule(&self, i: usize) -> usize {
        self.metric(i) * self.zones + self.host(i) % self.zones
    }
    /// Offset of the series' samples within each step: spread evenly, as Prometheus
    /// spreads scrapes over the interval.
    fn phase(&self, i: usize) -> i64 {
        (i as i64 * self.step_ms) / self.n as i64
    }
    fn alertname(&self, rule: usize) -> String {
        format!("BenchHigh_{:03}_z{}", rule / self.zones, rule % self.zones)
    }
    fn labels(&self, i: usize) -> Vec<Label> {
        let l = |n: &str, v: String| Label {
            name: n.into(),
            value: v,
        };
        let (name, j) = if i < self.read {
            ("bench_metric", i)
        } else {
            ("bench_unread", i - self.read)
        };
        let host = self.host(j);
        vec![
            l("__name__", format!("{name}_{:03}", self.metric(j))),
            l("env", "prod".into()),
            l("instance", format!("host-{host:05}")),
            l("job", "bench".into()),
            l(
                "region",
                ["eu-west-1", "us-east-1", "ap-south-1"][host % 3].into(),
            ),
            l("zone", format!("z{}", host % self.zones)),
        ]
    }
}

/// One breach: series `series` is above the threshold from `from` (its first breaching
/// sample) to `until`.
#[derive(Debug, Clone)]
struct Breach {
    series: usize,
    rule: usize,
    from: i64,
    start: i64,
    until: i64,
}

fn rule_file(f: &Fleet, rules: usize, step: Duration, for_: Duration) -> String {
    let mut y = String::from("groups:\n");
    for m in 0..f.metrics {
        y.push_str(&format!(
            "  - name: bench_{m:03}\n    interval: {}s\n    rules:\n",
            step.as_secs()
        ));
        for z in 0..f.zones {
            let r = m * f.zones + z;
            if r >= rules {
                break;
            }
            y.push_str(&format!(
                "      - alert: {}\n        expr: bench_metric_{m:03}{{zone=\"z{z}\"}} > 90\n        for: {}s\n        labels: {{severity: page}}\n        annotations: {{summary: \"{{{{ $labels.instance }}}} at {{{{ $value }}}}\"}}\n",
                f.alertname(r),
                for_.as_secs()
            ));
        }
    }
    y
}

/// What one system delivered for one alert.
#[derive(Debug, Clone, Copy)]
struct Seen {
    starts_at: i64,
    arrived: i64,
}

type AlertKey = (String, String); // (alertname, instance)

fn main_key(labels: &BTreeMap<String, String>) -> Option<AlertKey> {
    Some((
        labels.get("alertname")?.clone(),
        labels.get("instance")?.clone(),
    ))
}

/// RFC 3339 as Alertmanager writes it: `2026-11-21T10:11:12.345Z` or with an offset.
fn parse_time_ms(s: &str) -> Option<i64> {
    let (local, offset_ms) = match s.len().checked_sub(6).map(|i| s.split_at(i)) {
        Some((t, o)) if (o.starts_with('+') || o.starts_with('-')) && o.as_bytes()[3] == b':' => {
            let mins = o[1..3].parse::<i64>().ok()? * 60 + o[4..].parse::<i64>().ok()?;
            (t, if o.starts_with('-') { -mins } else { mins } * 60_000)
        }
        _ => (s.trim_end_matches('Z'), 0),
    };
    let t = humantime::parse_rfc3339_weak(local).ok()?;
    let ms = t.duration_since(std::time::UNIX_EPOCH).ok()?.as_millis() as i64;
    Some(ms - offset_ms)
}

fn start_alertmanager(port: u16, dir: &Path) -> anyhow::Result<Proc> {
    let cfg = dir.join("alertmanager.yml");
    std::fs::write(
        &cfg,
        "route: {receiver: 'null', group_wait: 1s, group_interval: 5s, repeat_interval: 1h}\nreceivers: [{name: 'null'}]\n",
    )?;
    spawn_ready(
        "prometheus-alertmanager",
        &[
            format!("--config.file={}", cfg.display()),
            format!("--storage.path={}", dir.join("am").display()),
            format!("--web.listen-address=127.0.0.1:{port}"),
            "--cluster.listen-address=".into(),
            "--log.level=warn".into(),
        ],
        &format!("http://127.0.0.1:{port}/-/ready"),
    )
}

fn start_prometheus(
    port: u16,
    am_port: u16,
    dir: &Path,
    rules: &Path,
    step: Duration,
) -> anyhow::Result<Proc> {
    let cfg = dir.join("prometheus.yml");
    std::fs::write(
        &cfg,
        format!(
            "global:\n  evaluation_interval: {}s\n  external_labels: {{source: prometheus}}\nrule_files: ['{}']\nalerting:\n  alertmanagers:\n    - api_version: v2\n      static_configs: [{{targets: ['127.0.0.1:{am_port}']}}]\n",
            step.as_secs(),
            rules.display()
        ),
    )?;
    spawn_ready(
        "prometheus",
        &[
            format!("--config.file={}", cfg.display()),
            format!("--storage.tsdb.path={}", dir.join("prom").display()),
            format!("--web.listen-address=127.0.0.1:{port}"),
            "--web.enable-remote-write-receiver".into(),
            // Re-sends would overwrite Alertmanager's record of the first arrival.
            "--rules.alert.resend-delay=1h".into(),
            "--log.level=warn".into(),
        ],
        &format!("http://127.0.0.1:{port}/-/ready"),
    )
}

/// How many firing alerts each watcher has seen so far: the run ends once all are in.
#[derive(Default)]
struct Arrived {
    weir_topic: AtomicUsize,
    weir_am: AtomicUsize,
    prometheus_am: AtomicUsize,
}

impl Arrived {
    fn all(&self, n: usize) -> bool {
        [&self.weir_topic, &self.weir_am, &self.prometheus_am]
            .iter()
            .all(|c| c.load(Ordering::Relaxed) >= n)
    }
}

/// Reads firing events off the events topic as they arrive; the receipt time is when
/// this consumer got them.
fn watch_events(
    kafka: &str,
    topic: &str,
    partitions: usize,
    arrived_count: Arc<Arrived>,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<std::thread::JoinHandle<Vec<(AlertKey, String, Seen)>>> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", kafka)
        .set("group.id", format!("bench-watch-{}", now_ms()))
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "10")
        .create()?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p as i32, Offset::Beginning)?;
    }
    c.assign(&tpl)?;
    Ok(std::thread::spawn(move || {
        let mut out = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let Some(Ok(m)) = c.poll(Duration::from_millis(100)) else {
                continue;
            };
            let arrived = now_ms();
            let Some(ev) = m
                .payload()
                .and_then(|p| weir_contract::avro::decode_alert_event(p).ok())
            else {
                continue;
            };
            let mut labels = ev.labels.clone();
            labels.insert("alertname".into(), ev.alertname.clone());
            if let Some(k) = main_key(&labels) {
                if ev.status == "firing" {
                    arrived_count.weir_topic.fetch_add(1, Ordering::Relaxed);
                }
                out.push((
                    k,
                    ev.status.clone(),
                    Seen {
                        starts_at: ev.starts_at,
                        arrived,
                    },
                ));
            }
        }
        out
    }))
}

/// Polls Alertmanager and keeps, per (source, alert, startsAt), the first `updatedAt`.
fn watch_alertmanager(
    port: u16,
    arrived: Arc<Arrived>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<HashMap<(String, AlertKey, i64), i64>> {
    std::thread::spawn(move || {
        let mut seen = HashMap::new();
        let client = reqwest::blocking::Client::new();
        let url = format!("http://127.0.0.1:{port}/api/v2/alerts");
        while !stop.load(Ordering::Relaxed) {
            let got: Option<serde_json::Value> =
                client.get(&url).send().ok().and_then(|r| r.json().ok());
            for a in got
                .as_ref()
                .and_then(|v| v.as_array())
                .into_iter()
                .flatten()
            {
                let labels: BTreeMap<String, String> = a["labels"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                    .collect();
                let (Some(source), Some(key), Some(starts), Some(updated)) = (
                    labels.get("source").cloned(),
                    main_key(&labels),
                    a["startsAt"].as_str().and_then(parse_time_ms),
                    a["updatedAt"].as_str().and_then(parse_time_ms),
                ) else {
                    continue;
                };
                if let std::collections::hash_map::Entry::Vacant(e) =
                    seen.entry((source, key, starts))
                {
                    match e.key().0.as_str() {
                        "weir" => &arrived.weir_am,
                        _ => &arrived.prometheus_am,
                    }
                    .fetch_add(1, Ordering::Relaxed);
                    e.insert(updated);
                }
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        seen
    })
}

fn percentile(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn summary(name: &str, mut v: Vec<i64>) {
    v.sort_unstable();
    if v.is_empty() {
        println!("   {name:<58} n=0");
        return;
    }
    println!(
        "   {name:<58} n={:<5} p50 {:>6.3} s  p99 {:>6.3} s  max {:>6.3} s",
        v.len(),
        percentile(&v, 0.5) as f64 / 1e3,
        percentile(&v, 0.99) as f64 / 1e3,
        v[v.len() - 1] as f64 / 1e3
    );
}

pub fn run(a: AlerterBenchArgs) -> anyhow::Result<()> {
    if !a.weir.exists() {
        bail!(
            "{} not found: cargo build --release -p weir",
            a.weir.display()
        );
    }
    let step_ms = a.step.as_millis() as i64;
    let for_ms = a.for_.as_millis() as i64;
    if !a.rules.is_multiple_of(a.metrics)
        || !a.series.is_multiple_of(a.rules)
        || a.step.subsec_millis() != 0
    {
        bail!("--rules must be a multiple of --metrics, --series of --rules, and --step whole seconds");
    }
    if a.breach.as_millis() as i64 <= for_ms + 2 * step_ms {
        bail!("--breach must outlast --for by more than two steps, or nothing fires");
    }
    let fleet = Fleet {
        n: a.series + a.unread_series,
        read: a.series,
        metrics: a.metrics,
        zones: a.rules / a.metrics,
        step_ms,
    };
    let tag = format!("{}_{}", std::process::id(), now_ms());
    let dir = tempfile::tempdir()?;
    let rules_path = dir.path().join("bench.rules.yml");
    std::fs::write(&rules_path, rule_file(&fleet, a.rules, a.step, a.for_))?;

    // Kafka topics and the topology of this run.
    let (am_port, prom_port) = (free_port()?, free_port()?);
    let t = |n: &str| format!("bench.{n}.{tag}");
    let events_topic = t("alerts");
    let yaml = format!(
        "version: 1\nkafka: {{bootstrap_servers: '{k}'}}\ntopics:\n  {raw}: {{partitions: {p}, compression: lz4}}\n  {dlq}: {{partitions: 1}}\n  {ev}: {{partitions: 4, compression: lz4}}\n  {st}: {{partitions: 4, compression: lz4, cleanup_policy: compact}}\n  {pa}: {{partitions: {p}, compression: lz4}}\nconsumer_groups:\n  g: {{role: alerter, topics: [{raw}], sink: am}}\nsinks:\n  am: {{type: alertmanager, url: 'http://127.0.0.1:{am_port}'}}\ngateway: {{topic: {raw}, listen: '127.0.0.1:0'}}\nalerter:\n  group: g\n  merge_group: g-merge\n  listen: 127.0.0.1:0\n  workers: {w}\n  rule_files: ['{rules}']\n  evaluation_interval: {s}s\n  out_of_orderness: {o}ms\n  external_labels: {{source: weir}}\n  partials_topic: {pa}\n  state_topic: {st}\n  events_topic: {ev}\n  dead_letter_topic: {dlq}\n  resend_delay: 1h\n",
        k = a.kafka,
        raw = t("raw"),
        dlq = t("dlq"),
        ev = events_topic,
        st = t("state"),
        pa = t("partials"),
        p = a.partitions,
        w = a.workers,
        rules = rules_path.display(),
        s = a.step.as_secs(),
        o = a.out_of_orderness.as_millis(),
    );
    let topo = apply_topology(&a.weir, dir.path(), &yaml)?;

    let am = start_alertmanager(am_port, dir.path())?;
    let prom = start_prometheus(prom_port, am_port, dir.path(), &rules_path, a.step)?;
    let (gateway, gw_addr) = spawn_weir(
        &a.weir,
        [OsStr::new("gateway"), OsStr::new("-f"), topo.as_os_str()],
        "warn,weir_gateway::server=info",
        "gateway listening",
    )?;
    let (alerter, al_addr) = spawn_weir(
        &a.weir,
        [OsStr::new("alerter"), OsStr::new("-f"), topo.as_os_str()],
        "warn,weir_alerter::service=info",
        "alerter listening",
    )?;
    let stop = Arc::new(AtomicBool::new(false));
    let arrived = Arc::new(Arrived::default());
    let events = watch_events(&a.kafka, &events_topic, 4, arrived.clone(), stop.clone())?;
    let am_watch = watch_alertmanager(am_port, arrived.clone(), stop.clone());

    // The schedule: pushing starts on a step boundary; breaches start after the warm-up,
    // each rule's spread evenly over the wave, on a different series each wave.
    let base = (now_ms() / step_ms + 1) * step_ms;
    let warm = a.warmup.as_millis() as i64;
    let (wave_ms, breach_ms) = (a.wave.as_millis() as i64, a.breach.as_millis() as i64);
    let per_rule = a.series / a.rules;
    let mut breaches = Vec::new();
    for w in 0..a.waves {
        for r in 0..a.rules {
            let start = base + warm + w as i64 * wave_ms + r as i64 * wave_ms / a.rules as i64;
            let (m, z) = (r / fleet.zones, r % fleet.zones);
            let k = (w * 7 + r) % per_rule;
            let series = (z + k * fleet.zones) * a.metrics + m;
            debug_assert_eq!(fleet.rule(series), r);
            // The first sample at or after `start` on the series' own grid.
            let ph = fleet.phase(series);
            let from =
                ((start - base - ph + step_ms - 1).div_euclid(step_ms)) * step_ms + base + ph;
            breaches.push(Breach {
                series,
                rule: r,
                from,
                start,
                until: start + breach_ms,
            });
        }
    }
    let end = base + warm + a.waves as i64 * wave_ms + breach_ms + 2 * step_ms;
    let mut hot: HashMap<usize, Vec<(i64, i64)>> = HashMap::new();
    for b in &breaches {
        hot.entry(b.series).or_default().push((b.start, b.until));
    }
    println!(
        "pushing {} series ({} of them selected by no rule) every {} s to weir and Prometheus for {:.0} s ({} breaches) ...",
        fleet.n,
        a.unread_series,
        a.step.as_secs(),
        (end - now_ms()) as f64 / 1e3,
        breaches.len()
    );

    // Push in real time.
    let cpu0 = [
        cpu_seconds(alerter.id())?,
        cpu_seconds(gateway.id())?,
        cpu_seconds(prom.id())?,
    ];
    let (failures, retries) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let pushed = rt.block_on(push(
        &a,
        &fleet,
        &hot,
        base,
        end,
        gw_addr,
        prom_port,
        failures.clone(),
        retries.clone(),
    ))?;
    let cpu1 = [
        cpu_seconds(alerter.id())?,
        cpu_seconds(gateway.id())?,
        cpu_seconds(prom.id())?,
    ];

    // Firings due by `end` (with two steps to spare) are expected from both systems;
    // wait for the stragglers, up to a deadline.
    let due_by_end = breaches
        .iter()
        .filter(|b| {
            (b.from + step_ms - 1).div_euclid(step_ms) * step_ms + for_ms + 2 * step_ms < end
        })
        .count();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !arrived.all(due_by_end) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, Ordering::Relaxed);
    let events = events
        .join()
        .map_err(|_| anyhow::anyhow!("event watcher panicked"))?;
    let am_seen = am_watch
        .join()
        .map_err(|_| anyhow::anyhow!("alertmanager watcher panicked"))?;
    let sink = |sink: &str| {
        let m = |suffix: &str| {
            crate::process::scrape(
                al_addr,
                &format!("weir_alerter_sink_seconds_{suffix}{{sink=\"{sink}\"}} "),
            )
        };
        (m("sum"), m("count"))
    };
    let (kafka_sink, am_sink) = (sink("kafka"), sink("alertmanager"));
    let step_delay = (
        crate::process::scrape(al_addr, "weir_alerter_step_delay_seconds_sum "),
        crate::process::scrape(al_addr, "weir_alerter_step_delay_seconds_count "),
    );
    drop((alerter, gateway, prom, am));
    crate::process::delete_topics(
        &a.kafka,
        &["raw", "dlq", "alerts", "state", "partials"].map(t),
    );

    // Expected: every breach fires, at the first step on the epoch grid at or after its
    // first breaching sample, plus `for`.
    let expected: HashMap<AlertKey, Vec<&Breach>> =
        breaches.iter().fold(HashMap::new(), |mut m, b| {
            let inst = format!("host-{:05}", fleet.host(b.series));
            m.entry((fleet.alertname(b.rule), inst))
                .or_default()
                .push(b);
            m
        });
    // The breach an alert that started at `starts_at` belongs to.
    let breach_of = |k: &AlertKey, starts_at: i64| -> Option<&Breach> {
        expected
            .get(k)?
            .iter()
            .copied()
            .filter(|b| b.from + for_ms <= starts_at)
            .max_by_key(|b| b.from)
    };
    let mut rows = String::from(
        "system,alertname,instance,starts_at_ms,arrived_ms,first_breaching_sample_ms\n",
    );
    let mut weir_topic = Vec::new();
    let mut weir_topic_data = Vec::new();
    let mut firing_count: HashMap<(AlertKey, i64), usize> = HashMap::new();
    let mut off_step = 0;
    for (k, status, s) in &events {
        if status != "firing" {
            continue;
        }
        *firing_count.entry((k.clone(), s.starts_at)).or_default() += 1;
        if firing_count[&(k.clone(), s.starts_at)] > 1 {
            continue;
        }
        let Some(b) = breach_of(k, s.starts_at) else {
            continue;
        };
        let due = (b.from + step_ms - 1).div_euclid(step_ms) * step_ms + for_ms;
        if s.starts_at != due {
            off_step += 1;
        }
        rows.push_str(&format!(
            "weir-topic,{},{},{},{},{}\n",
            k.0, k.1, s.starts_at, s.arrived, b.from
        ));
        weir_topic.push(s.arrived - s.starts_at);
        weir_topic_data.push(s.arrived - (b.from + for_ms));
    }
    let duplicates: usize = firing_count.values().map(|n| n - 1).sum();
    let mut am_lat: HashMap<&str, (Vec<i64>, Vec<i64>)> = HashMap::new();
    for ((source, k, starts), updated) in &am_seen {
        let Some(b) = breach_of(k, *starts) else {
            continue;
        };
        rows.push_str(&format!(
            "{source}-alertmanager,{},{},{starts},{updated},{}\n",
            k.0, k.1, b.from
        ));
        let e = am_lat.entry(source.as_str()).or_default();
        e.0.push(updated - starts);
        e.1.push(updated - (b.from + for_ms));
    }
    if let Some(path) = &a.csv {
        std::fs::write(path, rows).with_context(|| format!("writing {}", path.display()))?;
    }

    println!("== alert latency: weir (gateway -> metrics.raw -> alerter) vs Prometheus (remote-write receiver + rules), same samples, same Alertmanager");
    println!(
        "   workload: {} series ({} of them selected by no rule) x 1 sample every {} s pushed in real time ({} samples, {} remote-write requests of {} series sent to each system, {} retried, {} failed); {} rules in {} groups (interval {} s, for {} s); {} breaches of {} s; out-of-orderness {} ms; {} metrics.raw partitions, {} alerter workers",
        fleet.n,
        a.unread_series,
        a.step.as_secs(),
        pushed.0,
        pushed.1,
        a.series_per_request,
        retries.load(Ordering::Relaxed),
        failures.load(Ordering::Relaxed),
        a.rules,
        a.metrics,
        a.step.as_secs(),
        a.for_.as_secs(),
        breaches.len(),
        a.breach.as_secs(),
        a.out_of_orderness.as_millis(),
        a.partitions,
        a.workers
    );
    let (w_am, p_am) = (
        am_lat.remove("weir").unwrap_or_default(),
        am_lat.remove("prometheus").unwrap_or_default(),
    );
    println!(
        "   alerts: expected {due_by_end}; weir firing events {} ({duplicates} duplicates, {off_step} at another step than expected), weir in Alertmanager {}, Prometheus in Alertmanager {}",
        weir_topic.len(),
        w_am.0.len(),
        p_am.0.len()
    );
    println!("   from the firing step (startsAt):");
    summary("weir: firing event on the events topic", weir_topic.clone());
    summary("weir: alert at Alertmanager", w_am.0.clone());
    summary("Prometheus: alert at Alertmanager", p_am.0.clone());
    println!("   from the data (first breaching sample + for; includes the wait for a step):");
    summary("weir: firing event on the events topic", weir_topic_data);
    summary("weir: alert at Alertmanager", w_am.1);
    summary("Prometheus: alert at Alertmanager", p_am.1);
    if step_delay.1 > 0.0 {
        println!(
            "   alerter: mean step delay (wall - step when stage two evaluated) {:.3} s over {} steps",
            step_delay.0 / step_delay.1,
            step_delay.1
        );
    }
    for (name, (sum, count)) in [
        ("alert writes to Kafka (events, then state)", kafka_sink),
        ("posts to Alertmanager", am_sink),
    ] {
        if count > 0.0 {
            println!(
                "   alerter: mean duration of its {name}: {:.1} ms over {count}",
                sum / count * 1e3
            );
        }
    }
    let secs = (end - base) as f64 / 1e3;
    println!(
        "   CPU while pushing ({secs:.0} s, /proc/PID/stat): weir alerter {:.1} s + gateway {:.1} s; Prometheus {:.1} s",
        cpu1[0] - cpu0[0],
        cpu1[1] - cpu0[1],
        cpu1[2] - cpu0[2]
    );
    if weir_topic.is_empty() {
        bail!("weir fired nothing");
    }
    Ok(())
}

/// Pushes every series every step until `end`, each sample stamped with its moment on
/// the series' grid and sent at that moment. Returns (samples, requests per system).
#[allow(clippy::too_many_arguments)]
async fn push(
    a: &AlerterBenchArgs,
    fleet: &Fleet,
    hot: &HashMap<usize, Vec<(i64, i64)>>,
    base: i64,
    end: i64,
    gateway: std::net::SocketAddr,
    prom_port: u16,
    failures: Arc<AtomicU64>,
    retries: Arc<AtomicU64>,
) -> anyhow::Result<(u64, u64)> {
    let client = reqwest::Client::new();
    let urls = [
        format!("http://{gateway}/api/v1/write"),
        format!("http://127.0.0.1:{prom_port}/api/v1/write"),
    ];
    let mut in_flight: Vec<tokio::task::JoinHandle<()>> = Vec::new();
    let n = fleet.n as i64;
    // Position p is series p % n in step p / n.
    let time_of = |p: i64| base + (p / n) * fleet.step_ms + fleet.phase((p % n) as usize);
    let (mut p, mut samples, mut requests) = (0i64, 0u64, 0u64);
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    loop {
        tick.tick().await;
        let now = now_ms();
        if now >= end {
            break;
        }
        let mut batch = Vec::new();
        while time_of(p) <= now {
            let i = (p % n) as usize;
            let ts = time_of(p);
            let breaching = hot
                .get(&i)
                .is_some_and(|h| h.iter().any(|(s, u)| ts >= *s && ts < *u));
            let value = if breaching {
                95.0
            } else {
                40.0 + (i % 20) as f64
            };
            batch.push(TimeSeries {
                labels: fleet.labels(i),
                samples: vec![Sample {
                    value,
                    timestamp: ts,
                }],
                histograms: vec![],
            });
            p += 1;
        }
        samples += batch.len() as u64;
        while !batch.is_empty() {
            let rest = batch.split_off(batch.len().min(a.series_per_request));
            let body = prost::Message::encode_to_vec(&WriteRequest {
                timeseries: std::mem::replace(&mut batch, rest),
                metadata: vec![],
            });
            let body = snap::raw::Encoder::new().compress_vec(&body)?;
            requests += 1;
            for url in &urls {
                let (client, url, body) = (client.clone(), url.clone(), body.clone());
                let (failures, retries) = (failures.clone(), retries.clone());
                // As a remote-write client does: 5xx and transport errors are retried
                // with back-off, 4xx are not.
                in_flight.push(tokio::spawn(async move {
                    let mut delay = Duration::from_millis(100);
                    for attempt in 0..10 {
                        if attempt > 0 {
                            retries.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(delay).await;
                            delay = (delay * 2).min(Duration::from_secs(5));
                        }
                        let r = client
                            .post(&url)
                            .header("Content-Encoding", "snappy")
                            .header("Content-Type", "application/x-protobuf")
                            .header("X-Prometheus-Remote-Write-Version", "0.1.0")
                            .body(body.clone())
                            .send()
                            .await;
                        match r {
                            Ok(r) if r.status().is_success() => return,
                            Ok(r) if r.status().is_client_error() => {
                                eprintln!(
                                    "push to {url}: {} {}",
                                    r.status(),
                                    r.text().await.unwrap_or_default()
                                );
                                break;
                            }
                            Ok(r) => eprintln!("push to {url}: {} (retrying)", r.status()),
                            Err(e) => eprintln!("push to {url}: {e} (retrying)"),
                        }
                    }
                    failures.fetch_add(1, Ordering::Relaxed);
                }));
            }
        }
        in_flight.retain(|h| !h.is_finished());
    }
    for h in in_flight {
        let _ = h.await;
    }
    Ok((samples, requests))
}
