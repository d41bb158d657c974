//! The rollup as the e2e tests run it: a pipeline of its own (topics, groups, a
//! ClickHouse database), a generated data set produced to tansu, and the rows read back
//! from ClickHouse to compare with the batch computation.
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rand::Rng;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use weir_contract::avro::BatchEncoder;
use weir_contract::partitioner::first_key_in_partition;
use weir_contract::series_key::parse_key;
use weir_contract::{Sample, Series};
use weir_rollup::testkit::{compare, reference, Actual, DataSet, Expected, Record, RowKey};

use crate::*;

/// The rows of `database.rollup_<tier_name>` with FINAL (one per series and window)
/// whose series starts with `prefix`, keyed for tier index `tier`.
pub fn rows(
    database: &str,
    tier_name: &str,
    tier: usize,
    prefix: &str,
) -> BTreeMap<RowKey, Actual> {
    let q = format!(
        "SELECT series, toUInt32(window_start) AS ws, count, sum, min, max, first, last, increase, p50, p90, p95, p99 FROM {database}.rollup_{tier_name} FINAL WHERE startsWith(series, '{prefix}') FORMAT JSONEachRow"
    );
    let mut out = BTreeMap::new();
    for line in clickhouse(&q).lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("a JSONEachRow line");
        // ClickHouse quotes 64-bit numbers in JSON.
        let num = |k: &str| -> f64 {
            match &v[k] {
                serde_json::Value::String(s) => s.parse().unwrap_or(f64::NAN),
                x => x.as_f64().unwrap_or(f64::NAN),
            }
        };
        let series = v["series"].as_str().unwrap_or_default().to_string();
        out.insert(
            (tier, series, num("ws") as i64 * 1000),
            Actual {
                count: num("count") as u64,
                sum: num("sum"),
                min: num("min"),
                max: num("max"),
                first: num("first"),
                last: num("last"),
                increase: num("increase"),
                quantiles: [num("p50"), num("p90"), num("p95"), num("p99")],
            },
        );
    }
    out
}

pub const TIERS: [(&str, i64); 3] = [("1m", 60_000), ("5m", 300_000), ("1h", 3_600_000)];
pub const OOO_MS: i64 = 10_000;
pub const LATENESS_MS: i64 = 60_000;
pub const CLICKHOUSE: &str = "http://127.0.0.1:8123/";

pub struct Pipeline {
    pub topo: TestTopology,
    pub raw: String,
    pub dlq: String,
    pub tier_topics: Vec<String>,
    pub late: String,
    pub database: String,
    pub prefix: String,
    /// This pipeline's Kafka group names ("rollups", "replay" → unique names): tests run
    /// in parallel on one broker, and a member killed in one test must not hold up the
    /// rebalances of another's group.
    pub groups: BTreeMap<&'static str, String>,
}

impl Pipeline {
    pub fn new() -> Self {
        let raw = unique("test.raw");
        let dlq = unique("test.dlq");
        let late = unique("test.late");
        let run = unique("r").replace('.', "_");
        let database = format!("weir_test_{run}");
        let prefix = format!("e2e_{run}");
        let groups: BTreeMap<&'static str, String> = ["rollups", "replay"]
            .into_iter()
            .map(|g| (g, unique(g)))
            .collect();
        let (rollups, replay) = (&groups["rollups"], &groups["replay"]);
        let tier_topics: Vec<String> = TIERS
            .iter()
            .map(|(n, _)| unique(&format!("test.rollup.{n}")))
            .collect();
        let mut yaml = format!(
            "version: 1\nkafka: {{bootstrap_servers: '{}', consumer: {{session.timeout.ms: '4000', heartbeat.interval.ms: '1000'}}}}\ntopics:\n  {raw}: {{partitions: 4, compression: lz4}}\n  {dlq}: {{partitions: 1}}\n  {late}: {{partitions: 1}}\n",
            bootstrap()
        );
        for t in &tier_topics {
            yaml.push_str(&format!("  {t}: {{partitions: 2}}\n"));
        }
        yaml.push_str(&format!(
            "consumer_groups:\n  {rollups}: {{role: rollup, topics: [{raw}], sink: ch}}\n  {replay}: {{role: rollup, topics: [{raw}], sink: ch}}\nsinks:\n  ch: {{type: clickhouse, url: 'http://127.0.0.1:8123', database: {database}}}\ngateway: {{listen: '127.0.0.1:0', topic: {raw}}}\nrollup:\n  group: {rollups}\n  listen: 127.0.0.1:0\n  workers: 2\n  out_of_orderness: {OOO_MS}ms\n  allowed_lateness: {LATENESS_MS}ms\n  idle_timeout: 5s\n  retention_interval: 2s\n  dead_letter_topic: {dlq}\n  late_topic: {late}\n  tiers:\n"
        ));
        for ((n, size), t) in TIERS.iter().zip(tier_topics.iter()) {
            yaml.push_str(&format!(
                "    - {{name: '{n}', size: {size}ms, retention: 30d, topic: {t}}}\n"
            ));
        }
        let topo = TestTopology::from_yaml(&yaml, raw.clone(), 4);
        topo.apply();
        Self {
            topo,
            raw,
            dlq,
            tier_topics,
            late,
            database,
            prefix,
            groups,
        }
    }

    pub fn group(&self, name: &str) -> &str {
        &self.groups[name]
    }

    pub fn rollup(&self, group: &str) -> Service {
        let s = Service::spawn(
            &[
                "rollup",
                "-f",
                self.topo.path.to_str().unwrap(),
                "--group",
                self.group(group),
            ],
            "rollup listening",
        );
        s.wait_ready(Duration::from_secs(60));
        s
    }

    /// 4 partitions × 12 series, 900 scrapes 10 s apart (2.5 h) ending an hour ago, the
    /// last partition silent after 20 minutes.
    pub fn data(&self) -> Vec<(u32, Vec<Record>)> {
        let hour = 3_600_000;
        DataSet {
            partitions: 4,
            series_per_partition: 12,
            scrapes: 900,
            step_ms: 10_000,
            t0: (now_ms() / hour - 4) * hour,
            idle_after: 120,
            seed: rand::rng().random(),
        }
        .generate(&self.prefix)
    }

    pub fn expected(&self, data: &[(u32, Vec<Record>)]) -> (BTreeMap<RowKey, Expected>, usize) {
        let sizes: Vec<i64> = TIERS.iter().map(|t| t.1).collect();
        reference(data, &sizes, OOO_MS, LATENESS_MS)
    }

    /// Rows of every tier, as ClickHouse returns them with FINAL (one per series and
    /// window), for this test's series.
    pub fn rows(&self) -> BTreeMap<RowKey, Actual> {
        let mut out = BTreeMap::new();
        for (tier, (name, _)) in TIERS.iter().enumerate() {
            out.extend(rows(&self.database, name, tier, &self.prefix));
        }
        out
    }

    /// Rows as stored, before any merge: more than one per series and window until
    /// ClickHouse merges them (or OPTIMIZE ... FINAL).
    pub fn stored_rows(&self) -> usize {
        TIERS
            .iter()
            .map(|(n, _)| {
                clickhouse(&format!(
                    "SELECT count() FROM {}.rollup_{n} WHERE startsWith(series, '{}')",
                    self.database, self.prefix
                ))
                .trim()
                .parse::<usize>()
                .unwrap()
            })
            .sum()
    }

    pub fn optimize(&self) {
        for (n, _) in TIERS {
            clickhouse(&format!(
                "OPTIMIZE TABLE {}.rollup_{n} FINAL",
                self.database
            ));
        }
    }
}

impl Default for Pipeline {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        let _ = client()
            .post(CLICKHOUSE)
            .body(format!("DROP DATABASE IF EXISTS {}", self.database))
            .send();
    }
}

/// Samples a rollup process has read.
pub fn read(rollup: &Service) -> f64 {
    metric(rollup, "weir_rollup_samples_total{outcome=\"read\"} ")
}

pub fn producer() -> BaseProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .create()
        .unwrap()
}

pub fn encode(rec: &Record) -> Vec<u8> {
    let mut e = BatchEncoder::new();
    for (key, ts, v) in rec {
        let (name, labels) = parse_key(key).unwrap();
        e.push(&Series::new(name, labels, vec![Sample::new(*ts, *v)]));
    }
    e.finish()
}

pub fn send(p: &BaseProducer, topic: &str, part: u32, payload: &[u8]) {
    send_at(p, topic, part, payload, None)
}

/// Sends with the record timestamp `ts` (the broker's producer time when `None`).
pub fn send_at(p: &BaseProducer, topic: &str, part: u32, payload: &[u8], ts: Option<i64>) {
    loop {
        let mut rec = BaseRecord::<(), [u8]>::to(topic)
            .partition(part as i32)
            .payload(payload);
        if let Some(ts) = ts {
            rec = rec.timestamp(ts);
        }
        match p.send(rec) {
            Ok(()) => break,
            Err((e, _)) => {
                assert!(
                    matches!(
                        e,
                        rdkafka::error::KafkaError::MessageProduction(
                            rdkafka::types::RDKafkaErrorCode::QueueFull
                        )
                    ),
                    "{e}"
                );
                p.poll(Duration::from_millis(50));
            }
        }
        p.poll(Duration::ZERO);
    }
}

/// Produces the data set, each partition's records in order, then one record per
/// partition at the wall clock's now, an hour and a half after the data (a series
/// outside the data set), so the watermark passes every window and its lateness.
pub fn produce(topic: &str, data: &[(u32, Vec<Record>)], prefix: &str) {
    let longest = data.iter().map(|d| d.1.len()).max().unwrap_or(0);
    produce_part(topic, data, 0..longest);
    produce_sentinels(topic, data, prefix);
}

/// Records `range` of every partition (the i-th records of all partitions together).
pub fn produce_part(topic: &str, data: &[(u32, Vec<Record>)], range: std::ops::Range<usize>) {
    let p = producer();
    for i in range {
        for (part, recs) in data {
            if let Some(r) = recs.get(i) {
                // Stamped as a gateway would have produced it: at its newest sample.
                let ts = r.iter().map(|x| x.1).max();
                send_at(&p, topic, *part, &encode(r), ts);
            }
        }
    }
    p.flush(Duration::from_secs(30)).unwrap();
}

pub fn produce_sentinels(topic: &str, data: &[(u32, Vec<Record>)], prefix: &str) {
    let p = producer();
    let last_ts = data
        .iter()
        .flat_map(|(_, recs)| recs.iter().flatten().map(|x| x.1))
        .max()
        .unwrap_or(0);
    let partitions = data.len() as u32;
    for (part, _) in data {
        let sentinel = vec![(
            first_key_in_partition(*part, partitions, |n| {
                format!("{prefix}_watermark{{part=\"{part}\",slot=\"{n}\"}}")
            }),
            // Consumers cut samples later than their clock plus max_sample_future; the
            // data ends 1.5 h ago, so now already passes every window and its lateness.
            (last_ts + 3 * 3_600_000).min(now_ms()),
            1.0,
        )];
        send(&p, topic, *part, &encode(&sentinel));
    }
    p.flush(Duration::from_secs(30)).unwrap();
}

/// The sentinel series are not part of the comparison.
pub fn without_sentinels(mut rows: BTreeMap<RowKey, Actual>) -> BTreeMap<RowKey, Actual> {
    rows.retain(|k, _| !k.1.contains("_watermark{"));
    rows
}

impl Pipeline {
    pub fn assert_exact(&self, expected: &BTreeMap<RowKey, Expected>, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let got = without_sentinels(self.rows());
            match compare(&got, expected) {
                Ok(()) => return,
                Err(e) if Instant::now() > deadline => panic!(
                    "ClickHouse rows differ from the batch computation ({} rows, {} expected):\n{e}",
                    got.len(),
                    expected.len()
                ),
                Err(_) => std::thread::sleep(Duration::from_millis(500)),
            }
        }
    }
}
