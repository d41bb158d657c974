//! The rollup end to end: records on a tansu topic → `weir rollup` → ClickHouse tiers,
//! compared row by row with a batch computation over the same samples; then a replay, a
//! rollup killed three times, and a two-member group losing a member — each must end with
//! exactly the same rows.
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use weir_contract::avro::BatchEncoder;
use weir_contract::partitioner::first_key_in_partition;
use weir_contract::series_key::parse_key;
use weir_contract::{Sample, Series};
use weir_e2e::*;
use weir_rollup::testkit::{compare, reference, Actual, DataSet, Expected, Record, RowKey};

const TIERS: [(&str, i64); 3] = [("1m", 60_000), ("5m", 300_000), ("1h", 3_600_000)];
const OOO_MS: i64 = 10_000;
const LATENESS_MS: i64 = 60_000;
const CLICKHOUSE: &str = "http://127.0.0.1:8123/";

struct Pipeline {
    topo: TestTopology,
    raw: String,
    dlq: String,
    tier_topics: Vec<String>,
    late: String,
    database: String,
    prefix: String,
    /// This pipeline's Kafka group names ("rollups", "replay" → unique names): tests run
    /// in parallel on one broker, and a member killed in one test must not hold up the
    /// rebalances of another's group.
    groups: BTreeMap<&'static str, String>,
}

impl Pipeline {
    fn new() -> Self {
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

    fn group(&self, name: &str) -> &str {
        &self.groups[name]
    }

    fn rollup(&self, group: &str) -> Service {
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
    fn data(&self) -> Vec<(u32, Vec<Record>)> {
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

    fn expected(&self, data: &[(u32, Vec<Record>)]) -> (BTreeMap<RowKey, Expected>, usize) {
        let sizes: Vec<i64> = TIERS.iter().map(|t| t.1).collect();
        reference(data, &sizes, OOO_MS, LATENESS_MS)
    }

    /// Rows of every tier, as ClickHouse returns them with FINAL (one per series and
    /// window), for this test's series.
    fn rows(&self) -> BTreeMap<RowKey, Actual> {
        let mut out = BTreeMap::new();
        for (tier, (name, _)) in TIERS.iter().enumerate() {
            out.extend(weir_e2e::rollup::rows(
                &self.database,
                name,
                tier,
                &self.prefix,
            ));
        }
        out
    }

    /// Rows as stored, before any merge: more than one per series and window until
    /// ClickHouse merges them (or OPTIMIZE ... FINAL).
    fn stored_rows(&self) -> usize {
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

    fn optimize(&self) {
        for (n, _) in TIERS {
            clickhouse(&format!(
                "OPTIMIZE TABLE {}.rollup_{n} FINAL",
                self.database
            ));
        }
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
fn read(rollup: &Service) -> f64 {
    metric(rollup, "weir_rollup_samples_total{outcome=\"read\"} ")
}

fn producer() -> BaseProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .create()
        .unwrap()
}

fn encode(rec: &Record) -> Vec<u8> {
    let mut e = BatchEncoder::new();
    for (key, ts, v) in rec {
        let (name, labels) = parse_key(key).unwrap();
        e.push(&Series::new(name, labels, vec![Sample::new(*ts, *v)]));
    }
    e.finish()
}

fn send(p: &BaseProducer, topic: &str, part: u32, payload: &[u8]) {
    loop {
        match p.send(
            BaseRecord::<(), [u8]>::to(topic)
                .partition(part as i32)
                .payload(payload),
        ) {
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
fn produce(topic: &str, data: &[(u32, Vec<Record>)], prefix: &str) {
    let longest = data.iter().map(|d| d.1.len()).max().unwrap_or(0);
    produce_part(topic, data, 0..longest);
    produce_sentinels(topic, data, prefix);
}

/// Records `range` of every partition (the i-th records of all partitions together).
fn produce_part(topic: &str, data: &[(u32, Vec<Record>)], range: std::ops::Range<usize>) {
    let p = producer();
    for i in range {
        for (part, recs) in data {
            if let Some(r) = recs.get(i) {
                send(&p, topic, *part, &encode(r));
            }
        }
    }
    p.flush(Duration::from_secs(30)).unwrap();
}

fn produce_sentinels(topic: &str, data: &[(u32, Vec<Record>)], prefix: &str) {
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
fn without_sentinels(mut rows: BTreeMap<RowKey, Actual>) -> BTreeMap<RowKey, Actual> {
    rows.retain(|k, _| !k.1.contains("_watermark{"));
    rows
}

impl Pipeline {
    fn assert_exact(&self, expected: &BTreeMap<RowKey, Expected>, timeout: Duration) {
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

#[test]
fn rollup_rows_equal_the_batch_computation_and_a_replay_reproduces_them() {
    ensure_stack();
    let p = Pipeline::new();
    let data = p.data();
    let (expected, late) = p.expected(&data);
    assert!(late > 0);
    // A poison record first in partition 1: dead-lettered, everything after it rolled up.
    let poison = producer();
    send(&poison, &p.raw, 1, b"\xC3\x01 not avro at all");
    poison.flush(Duration::from_secs(10)).unwrap();
    produce(&p.raw, &data, &p.prefix);
    let rollup = p.rollup("rollups");
    p.assert_exact(&expected, Duration::from_secs(120));
    let dead = read_topic(&p.dlq, 1, Duration::from_secs(30), |r| !r.is_empty());
    assert_eq!(
        dead.len(),
        1,
        "the poison record is on the dead-letter topic"
    );
    assert_eq!(dead[0].payload, b"\xC3\x01 not avro at all");
    // Late samples went to the late topic, in metrics.raw's format. The side topic is
    // at least once: a partition read again after the startup rebalance sends its late
    // samples again, so the distinct ones are counted.
    let late_records = read_topic(&p.late, 1, Duration::from_secs(30), |r| {
        distinct_samples(r).len() >= late
    });
    assert_eq!(
        distinct_samples(&late_records).len(),
        late,
        "every late sample on the late topic, and nothing else"
    );
    assert!(sample_count(&late_records) >= late);
    assert!(metric(&rollup, "weir_rollup_rows_total{tier=\"1m\"} ") > 0.0);
    // Every row also went to its tier's topic as single-object Avro, keyed by series.
    let hours = expected.keys().filter(|k| k.0 == 2).count();
    let records = read_topic(&p.tier_topics[2], 2, Duration::from_secs(30), |r| {
        r.len() >= hours
    });
    let fingerprint = weir_contract::avro::rollup_fingerprint().to_le_bytes();
    for r in &records {
        assert_eq!(&r.payload[..2], &[0xC3, 0x01]);
        assert_eq!(&r.payload[2..10], &fingerprint);
        let key = String::from_utf8(r.key.clone().unwrap()).unwrap();
        assert!(
            r.payload.windows(key.len()).any(|w| w == key.as_bytes()),
            "keyed by its series"
        );
    }
    assert!(rollup.terminate().success());

    // Replay: a fresh group reads metrics.raw from the beginning into the same tables.
    let before = without_sentinels(p.rows());
    let replay = p.rollup("replay");
    wait_until(
        "the replay to write its rows",
        Duration::from_secs(120),
        || {
            metric(&replay, "weir_rollup_rows_total{tier=\"1h\"} ")
                >= (expected.keys().filter(|k| k.0 == 2).count() as f64)
        },
    );
    p.assert_exact(&expected, Duration::from_secs(60));
    assert_eq!(
        without_sentinels(p.rows()),
        before,
        "the replay reproduced every row"
    );
    // None doubled: once ClickHouse merged, one row per series and window (a merge may
    // still be running when OPTIMIZE is asked, so ask until it has happened).
    let sentinels = p.rows().len() - before.len();
    wait_until(
        "ClickHouse to merge the replayed rows into one per series and window",
        Duration::from_secs(60),
        || {
            p.optimize();
            p.stored_rows() == before.len() + sentinels
        },
    );
    drop(replay);
}

#[test]
fn a_rollup_killed_three_times_ends_with_the_same_rows() {
    ensure_stack();
    let p = Pipeline::new();
    let data = p.data();
    let (expected, _) = p.expected(&data);
    // Four chunks of the data set; a kill while each of the first three is read.
    let longest = data.iter().map(|d| d.1.len()).max().unwrap_or(0);
    let chunk = longest.div_ceil(4);
    let mut rng = rand::rng();
    let mut rollup = p.rollup("rollups");
    for kill in 1..=3 {
        produce_part(&p.raw, &data, (kill - 1) * chunk..kill * chunk);
        // A random point: after this process read a random number of samples.
        let point = rng.random_range(500.0..5_000.0);
        wait_until("the rollup reading", Duration::from_secs(60), || {
            read(&rollup) >= point
        });
        eprintln!("killing the rollup after {point:.0} samples ({kill} of 3)");
        rollup.kill9();
        rollup = start_owning_all(
            || p.rollup("rollups"),
            p.group("rollups"),
            4,
            Duration::from_secs(120),
        );
    }
    produce_part(&p.raw, &data, 3 * chunk..longest);
    produce_sentinels(&p.raw, &data, &p.prefix);
    p.assert_exact(&expected, Duration::from_secs(120));
    drop(rollup);
}

#[test]
fn two_rollups_one_stopped_mid_run_end_with_the_same_rows() {
    ensure_stack();
    let p = Pipeline::new();
    let data = p.data();
    let (expected, _) = p.expected(&data);
    let stop = Arc::new(AtomicBool::new(false));
    let first = p.rollup("rollups");
    let second = p.rollup("rollups");
    // The first half; the second member leaves before the second half arrives.
    let longest = data.iter().map(|d| d.1.len()).max().unwrap_or(0);
    produce_part(&p.raw, &data, 0..longest / 2);
    wait_until("both members reading", Duration::from_secs(60), || {
        read(&first) > 0.0 && read(&second) > 0.0
    });
    assert!(
        !stop.load(Ordering::Relaxed),
        "stopped mid-run, while records still arrive"
    );
    assert!(second.terminate().success());
    produce_part(&p.raw, &data, longest / 2..longest);
    produce_sentinels(&p.raw, &data, &p.prefix);
    stop.store(true, Ordering::Relaxed);
    p.assert_exact(&expected, Duration::from_secs(120));
    drop(first);
}

#[test]
fn rows_older_than_a_tiers_retention_are_dropped_by_partition() {
    ensure_stack();
    let p = Pipeline::new();
    let rollup = p.rollup("rollups");
    // The rollup created the tables; put in a row 40 days old and one from now.
    let day = 86_400;
    let now = now_ms() / 1000;
    for (series, ws) in [("old", now - 40 * day), ("new", now)] {
        clickhouse(&format!(
            "INSERT INTO {}.rollup_1m (series, metric, window_start, window_end, count, version) VALUES ('{}_{series}', 'm', {ws}, {}, 1, 1)",
            p.database,
            p.prefix,
            ws + 60
        ));
    }
    let count = |series: &str| -> usize {
        clickhouse(&format!(
            "SELECT count() FROM {}.rollup_1m WHERE series = '{}_{series}'",
            p.database, p.prefix
        ))
        .trim()
        .parse()
        .unwrap()
    };
    // Retention is 30 days in the test topology, checked every 2 s.
    wait_until(
        "the 40-day-old partition dropped",
        Duration::from_secs(60),
        || count("old") == 0,
    );
    assert_eq!(count("new"), 1, "rows within the retention stay");
    drop(rollup);
}
