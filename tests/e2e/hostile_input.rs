//! Input from outside that must not exhaust memory, freeze event time or make a client
//! retry forever — the three ways it did before the hardening:
//!
//! 1. a small Influx or JSON body whose labels every field or metric copied (a 234 KB
//!    body took the gateway to 4.6 GB);
//! 2. one sample dated 2100, produced straight to the topic, that moved its partition's
//!    watermark to 2100 (every later sample late, windows closed at once);
//! 3. one series of 100,000 samples in one request, answered 503 for ever
//!    (`MessageSizeTooLarge`).
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::Consumer;
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use weir_contract::avro::{BatchEncoder, Decoder};
use weir_contract::{Label, MetricsBatch, Sample, Series};
use weir_e2e::*;

/// Peak resident memory of a process (VmHWM), in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib * 1024
}

/// User plus system CPU seconds a process has used.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    ticks / 100.0
}

struct Answer {
    status: u16,
    body: String,
    cpu: f64,
}

fn post(gw: &Gateway, path: &str, content_type: &str, body: Vec<u8>) -> Answer {
    let cpu = cpu_seconds(gw.pid());
    let r = client()
        .post(gw.url(path))
        .header("Content-Type", content_type)
        .body(body)
        .send()
        .unwrap();
    let status = r.status().as_u16();
    let body = r.text().unwrap();
    Answer {
        status,
        body,
        cpu: cpu_seconds(gw.pid()) - cpu,
    }
}

/// The issue's body: one tag of 64 KiB and 20,000 fields on one line (234 KB).
fn influx_huge_tag_many_fields() -> Vec<u8> {
    let fields: Vec<String> = (0..20_000).map(|i| format!("f{i}=1")).collect();
    format!("m,host={} {}", "x".repeat(64 << 10), fields.join(",")).into_bytes()
}

/// The worst shape validation lets through: every line with the most labels of the
/// longest values, and the most fields a line may have.
fn influx_max_labels_max_fields(lines: usize) -> Vec<u8> {
    let tags: Vec<String> = (1..29)
        .map(|i| format!("t{i:02}={}", "v".repeat(2000)))
        .collect();
    let fields: Vec<String> = (0..1_000).map(|i| format!("f{i}=1")).collect();
    // Each line another series (t00 differs), so no two lines fold into one run.
    (0..lines)
        .map(|l| {
            format!(
                "m,t00={l:04}{},{} {}\n",
                "v".repeat(1996),
                tags.join(","),
                fields.join(",")
            )
        })
        .collect::<String>()
        .into_bytes()
}

/// JSON: one device with 30 labels of 2 KB and 20,000 metrics.
fn json_shared_labels() -> Vec<u8> {
    let labels: Vec<String> = (0..30)
        .map(|i| format!("\"l{i:02}\":\"{}\"", "v".repeat(2000)))
        .collect();
    let metrics: Vec<String> = (0..20_000)
        .map(|i| format!("{{\"name\":\"m{i}\",\"value\":1}}"))
        .collect();
    format!(
        "{{\"labels\":{{{}}},\"metrics\":[{}]}}",
        labels.join(","),
        metrics.join(",")
    )
    .into_bytes()
}

/// An ordinary Influx body of about `bytes`: many series, few labels.
fn influx_ordinary(bytes: usize) -> Vec<u8> {
    let now = now_ms();
    let mut s = String::new();
    let mut i = 0;
    while s.len() < bytes {
        s.push_str(&format!(
            "cpu,host=h{},region=eu usage={i}.5,idle=3 {}\n",
            i % 5000,
            now * 1_000_000
        ));
        i += 1;
    }
    s.into_bytes()
}

#[test]
fn bodies_that_expand_are_refused_within_bounded_memory() {
    ensure_stack();
    let topo = TestTopology::new(4, "");
    topo.apply();
    let gw = Gateway::start(&topo);
    let before = peak_rss(gw.pid());

    let shapes: Vec<(&str, &str, &str, Vec<u8>, &str)> = vec![
        (
            "influx: 64 KiB tag, 20,000 fields",
            "/write",
            "text/plain",
            influx_huge_tag_many_fields(),
            "max_fields_per_line",
        ),
        (
            "influx: 29 labels of 2 KB, 1,000 fields a line",
            "/write",
            "text/plain",
            influx_max_labels_max_fields(40),
            "max_expanded_bytes",
        ),
        (
            "json: 30 labels of 2 KB, 20,000 metrics",
            "/api/v1/push",
            "application/json",
            json_shared_labels(),
            "max_expanded_bytes",
        ),
    ];
    for (what, path, ct, body, limit) in shapes {
        let len = body.len();
        let a = post(&gw, path, ct, body);
        eprintln!(
            "{what}: {len} bytes -> {} in {:.3} CPU-s, peak RSS {} MiB: {}",
            a.status,
            a.cpu,
            peak_rss(gw.pid()) >> 20,
            &a.body[..a.body.len().min(300)]
        );
        assert_eq!(a.status, 413, "{what}: {}", a.body);
        assert!(a.body.contains(limit), "{what}: names {limit}: {}", a.body);
        assert!(a.body.len() < 2_000, "{what}: a short answer");
    }
    let ordinary = influx_ordinary(234 << 10);
    let a = post(&gw, "/write", "text/plain", ordinary);
    eprintln!(
        "ordinary influx: 234 KiB -> {} in {:.3} CPU-s",
        a.status, a.cpu
    );
    assert_eq!(a.status, 204, "{}", a.body);

    let peak = peak_rss(gw.pid());
    eprintln!(
        "gateway peak RSS: {} MiB (at start {} MiB)",
        peak >> 20,
        before >> 20
    );
    // 64 MiB of records at the most per request, and the bodies themselves: far below the
    // gigabytes these bodies took before.
    assert!(peak < 400 << 20, "peak RSS {} MiB", peak >> 20);
}

#[test]
fn one_series_of_100k_samples_is_written_whole() {
    ensure_stack();
    let topo = TestTopology::new(4, "");
    topo.apply();
    let gw = Gateway::start(&topo);
    let t0 = now_ms() - 3_600_000;
    let body: String = (0..100_000)
        .map(|i| format!("big,host=a value={i} {}\n", t0 + i))
        .collect();
    let a = post(&gw, "/write?precision=ms", "text/plain", body.into_bytes());
    assert_eq!(a.status, 204, "{}", a.body);
    let records = read_topic(&topo.topic, 4, Duration::from_secs(60), |r| {
        sample_count(r) >= 100_000
    });
    let by_key = samples_by_key(&records, 4);
    let samples = &by_key[r#"big{host="a"}"#];
    assert_eq!(samples.len(), 100_000);
    let times: Vec<i64> = samples.iter().map(|s| s.timestamp_ms).collect();
    assert_eq!(
        times,
        (0..100_000).map(|i| t0 + i).collect::<Vec<_>>(),
        "in order"
    );
    assert!(records.len() > 1, "split across records");
}

fn producer() -> BaseProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("enable.idempotence", "true")
        .create()
        .unwrap()
}

fn produce(p: &BaseProducer, topic: &str, series: Vec<Series>) {
    produce_to(p, topic, 0, series)
}

fn produce_to(p: &BaseProducer, topic: &str, partition: i32, series: Vec<Series>) {
    let payload = BatchEncoder::encode(&MetricsBatch { series });
    p.send(
        BaseRecord::<(), [u8]>::to(topic)
            .partition(partition)
            .payload(&payload),
    )
    .map_err(|(e, _)| e)
    .unwrap();
}

/// Records of a topic with their `weir.error.kind` header.
fn dead_letters(topic: &str, timeout: Duration, want: usize) -> Vec<(String, MetricsBatch)> {
    let consumer = reader();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)
        .unwrap();
    consumer.assign(&tpl).unwrap();
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    while Instant::now() < deadline && out.len() < want {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            let kind = m
                .headers()
                .and_then(|h| {
                    h.iter()
                        .find(|h| h.key == "weir.error.kind")
                        .and_then(|h| h.value)
                        .map(|v| String::from_utf8_lossy(v).into_owned())
                })
                .unwrap_or_default();
            let batch = Decoder::new()
                .decode(m.payload().unwrap_or_default())
                .unwrap_or_default();
            out.push((kind, batch));
        }
    }
    out
}

#[test]
fn a_sample_dated_2100_moves_no_watermark() {
    ensure_stack();
    let raw = unique("test.raw");
    let dlq = unique("test.dlq");
    let late = unique("test.late");
    let t1m = unique("test.rollup.1m");
    let run = unique("r").replace('.', "_");
    let database = format!("weir_test_{run}");
    let group = unique("rollups");
    let yaml = format!(
        "version: 1\nkafka: {{bootstrap_servers: '{}'}}\ntopics:\n  {raw}: {{partitions: 1}}\n  {dlq}: {{partitions: 1}}\n  {late}: {{partitions: 1}}\n  {t1m}: {{partitions: 1}}\nconsumer_groups:\n  {group}: {{role: rollup, topics: [{raw}], sink: ch}}\nsinks:\n  ch: {{type: clickhouse, url: 'http://127.0.0.1:8123', database: {database}}}\ngateway: {{listen: '127.0.0.1:0', topic: {raw}}}\nrollup:\n  group: {group}\n  listen: 127.0.0.1:0\n  workers: 1\n  out_of_orderness: 10s\n  allowed_lateness: 1m\n  idle_timeout: 5s\n  dead_letter_topic: {dlq}\n  late_topic: {late}\n  tiers:\n    - {{name: '1m', size: 1m, retention: 30d, topic: {t1m}}}\n",
        bootstrap()
    );
    let topo = TestTopology::from_yaml(&yaml, raw.clone(), 1);
    topo.apply();

    let minute = 60_000;
    let t0 = (now_ms() / minute - 10) * minute;
    let s = |name: &str, samples: Vec<Sample>| {
        Series::new(name, vec![Label::new("run", run.as_str())], samples)
    };
    let year_2100 = 4_102_444_800_000;
    let p = producer();
    // First the wrong clock (with one good sample beside it), then 8 minutes of data.
    produce(
        &p,
        &raw,
        vec![
            s("clock_wrong", vec![Sample::new(year_2100, 1.0)]),
            s("good", vec![Sample::new(t0, 0.0)]),
        ],
    );
    for i in 1..48 {
        produce(
            &p,
            &raw,
            vec![s("good", vec![Sample::new(t0 + i * 10_000, i as f64)])],
        );
    }
    p.flush(Duration::from_secs(30)).unwrap();

    let rollup = Service::spawn(
        &["rollup", "-f", topo.path.to_str().unwrap()],
        "rollup listening",
    );
    rollup.wait_ready(Duration::from_secs(60));

    // Every minute the data covers, except the last (the watermark is 10 s behind the
    // data), is rolled up from all its samples: nothing was judged late.
    let q = format!(
        "SELECT toUInt32(window_start) AS ws, count FROM {database}.rollup_1m FINAL WHERE series LIKE 'good%' ORDER BY ws FORMAT TSV"
    );
    let mut rows = String::new();
    wait_until(
        "seven complete minutes of rows",
        Duration::from_secs(60),
        || {
            rows = clickhouse(&q);
            rows.lines().count() >= 7
        },
    );
    let counts: Vec<(i64, u64)> = rows
        .lines()
        .map(|l| {
            let mut f = l.split('\t');
            (
                f.next().unwrap().parse::<i64>().unwrap() * 1000,
                f.next().unwrap().parse().unwrap(),
            )
        })
        .collect();
    for (ws, count) in &counts[..7] {
        assert_eq!(*count, 6, "minute at {ws} has all six samples: {counts:?}");
    }
    assert_eq!(counts[0].0, t0);
    assert_eq!(
        metric_sum(&rollup, "weir_rollup_samples_total{outcome=\"late\""),
        0.0
    );
    let late_records = read_topic(&late, 1, Duration::from_secs(3), |r| !r.is_empty());
    assert!(late_records.is_empty(), "no sample went to the late topic");
    // The cut sample is a dead letter of its own, with the reason.
    let dl = dead_letters(&dlq, Duration::from_secs(60), 1);
    assert_eq!(dl.len(), 1, "one dead letter");
    assert_eq!(dl[0].0, "future_timestamp");
    assert_eq!(dl[0].1.series.len(), 1);
    assert_eq!(dl[0].1.series[0].name, "clock_wrong");
    assert_eq!(dl[0].1.series[0].samples, vec![Sample::new(year_2100, 1.0)]);
    let _ = clickhouse(&format!("DROP DATABASE IF EXISTS {database}"));
}

/// A TSDB writer's topology: a raw topic of `partitions`, a dead-letter topic, the sink
/// `vm`.
struct WriterSetup {
    raw: String,
    dlq: String,
    run: String,
    topo: TestTopology,
}

impl WriterSetup {
    fn new(vm: &Vm, partitions: u32) -> Self {
        let raw = unique("test.raw");
        let dlq = unique("test.dlq");
        let group = unique("test.tsdb-writers");
        let run = unique("run").replace('.', "_");
        let yaml = format!(
            "version: 1\nkafka: {{bootstrap_servers: '{}'}}\ntopics:\n  {raw}: {{partitions: {partitions}}}\n  {dlq}: {{partitions: 1}}\nconsumer_groups:\n  {group}: {{role: tsdb-writer, topics: [{raw}], sink: vm}}\nsinks:\n  vm: {{type: prometheus_remote_write, url: '{}'}}\ngateway: {{listen: '127.0.0.1:0', topic: {raw}}}\ntsdb_writer: {{group: {group}, listen: '127.0.0.1:0', dead_letter_topic: {dlq}, max_batch_delay: 200ms}}\n",
            bootstrap(),
            vm.url("/api/v1/write")
        );
        let topo = TestTopology::from_yaml(&yaml, raw.clone(), partitions);
        topo.apply();
        Self {
            raw,
            dlq,
            run,
            topo,
        }
    }
}

/// A direct producer's record with one good series, one whose labels are not sorted and
/// one with a sample dated 2100: the good one reaches VictoriaMetrics through the TSDB
/// writer, the other two go to the dead-letter topic as one record, with the reason.
#[test]
fn series_that_break_the_contract_are_dead_lettered_and_the_rest_written() {
    ensure_stack();
    let vm = Vm::start();
    let WriterSetup {
        raw,
        dlq,
        run,
        topo,
    } = WriterSetup::new(&vm, 1);
    let now = now_ms();
    let l = |pairs: &[(&str, &str)]| -> Vec<Label> {
        pairs.iter().map(|(k, v)| Label::new(*k, *v)).collect()
    };
    let good = Series::new(
        "good",
        l(&[("host", "a"), ("run", &run)]),
        vec![Sample::new(now - 1_000, 1.0), Sample::new(now, 2.0)],
    );
    // Built by hand: `Series::new` sorts its labels.
    let unsorted = Series {
        name: "unsorted".into(),
        labels: l(&[("run", &run), ("host", "a")]),
        samples: vec![Sample::new(now, 3.0)],
        ..Series::default()
    };
    let future = Series::new(
        "future",
        l(&[("run", &run)]),
        vec![Sample::new(now, 4.0), Sample::new(4_102_444_800_000, 5.0)],
    );
    let p = producer();
    produce(&p, &raw, vec![good, unsorted, future]);
    p.flush(Duration::from_secs(30)).unwrap();
    let _writer = Service::spawn(
        &["tsdb-writer", "-f", topo.path.to_str().unwrap()],
        "tsdb-writer listening",
    );
    let sel = format!("{{run=\"{run}\"}}");
    let got = vm.wait_for(&sel, Duration::from_secs(60), |m| m.len() >= 2);
    let keys: Vec<&String> = got.keys().collect();
    assert_eq!(
        keys,
        vec![
            &format!("future{{run=\"{run}\"}}"),
            &format!("good{{host=\"a\",run=\"{run}\"}}")
        ],
        "the good series and the future series' good sample"
    );
    assert_eq!(got[&format!("future{{run=\"{run}\"}}")], vec![(now, 4.0)]);
    let dl = dead_letters(&dlq, Duration::from_secs(30), 1);
    assert_eq!(dl.len(), 1);
    assert_eq!(dl[0].0, "unsorted_labels");
    let names: Vec<&str> = dl[0].1.series.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, vec!["unsorted", "future"]);
    assert_eq!(
        dl[0].1.series[1].samples,
        vec![Sample::new(4_102_444_800_000, 5.0)]
    );
}

/// A direct producer that writes a series to another partition than its key hashes to
/// (librdkafka's default partitioner, say): that series is dead-lettered, kind
/// `wrong_partition`, and the rest of its record is written.
#[test]
fn a_series_on_another_partition_than_its_key_hashes_to_is_dead_lettered() {
    ensure_stack();
    let vm = Vm::start();
    let WriterSetup {
        raw,
        dlq,
        run,
        topo,
    } = WriterSetup::new(&vm, 2);
    let now = now_ms();
    // Two series, one of each partition (a `slot` label picks which), in one record on
    // partition 0.
    let on = |partition: u32, name: &str| {
        let key = weir_contract::partitioner::first_key_in_partition(partition, 2, |n| {
            format!("{name}{{run=\"{run}\",slot=\"{n}\"}}")
        });
        let (name, labels) = weir_contract::series_key::parse_key(&key).unwrap();
        (key, Series::new(name, labels, vec![Sample::new(now, 1.0)]))
    };
    let (home_key, home) = on(0, "home");
    let (away_key, away) = on(1, "away");
    let p = producer();
    produce_to(&p, &raw, 0, vec![home, away]);
    p.flush(Duration::from_secs(30)).unwrap();
    let _writer = Service::spawn(
        &["tsdb-writer", "-f", topo.path.to_str().unwrap()],
        "tsdb-writer listening",
    );
    let got = vm.wait_for(
        &format!("{{run=\"{run}\"}}"),
        Duration::from_secs(60),
        |m| !m.is_empty(),
    );
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        vec![&home_key],
        "only the series in its partition"
    );
    let dl = dead_letters(&dlq, Duration::from_secs(30), 1);
    assert_eq!(dl.len(), 1);
    assert_eq!(dl[0].0, "wrong_partition");
    let keys: Vec<String> = dl[0].1.series.iter().map(|s| s.key()).collect();
    assert_eq!(keys, vec![away_key]);
}

/// A client that declares a body and stalls is answered 408 once `body_read_timeout`
/// passes, instead of holding its share of the budget for ever.
#[test]
fn a_stalled_body_is_answered_408() {
    use std::io::{Read, Write};
    ensure_stack();
    let topo = TestTopology::new(1, "  limits:\n    body_read_timeout: 1s\n");
    topo.apply();
    let gw = Gateway::start(&topo);
    let mut s = std::net::TcpStream::connect(gw.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"POST /write HTTP/1.1\r\nHost: weir\r\nContent-Type: text/plain\r\nContent-Length: 100000\r\n\r\nm v=1 ")
        .unwrap();
    let started = Instant::now();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s
            .read(&mut buf)
            .expect("an answer before the client's 10 s");
        assert!(n > 0, "connection closed without an answer");
        answer.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(started.elapsed() < Duration::from_secs(5));
}
