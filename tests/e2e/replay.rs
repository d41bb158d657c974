//! `weir replay` on the real stack, beside the live pipeline: a rollup recomputation of
//! an hour whose rows were deleted and altered, killed and resumed; a TSDB backfill into
//! a second, empty VictoriaMetrics; and the edges — an empty range, a dry run.
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use weir_e2e::rollup::*;
use weir_e2e::*;
use weir_rollup::testkit::{compare, Actual, Expected, RowKey};

const HOUR: i64 = 3_600_000;

/// The live group's committed offsets, per partition.
fn committed(group: &str, topic: &str, partitions: u32) -> Vec<i64> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("group.id", group)
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p as i32);
    }
    let got = c.committed_offsets(tpl, Duration::from_secs(10)).unwrap();
    (0..partitions)
        .map(
            |p| match got.find_partition(topic, p as i32).map(|e| e.offset()) {
                Some(Offset::Offset(o)) => o,
                _ => -1,
            },
        )
        .collect()
}

fn replay(p: &Pipeline, state: &Path, args: &[&str]) -> Output {
    let topo = p.topo.path.to_str().unwrap().to_string();
    let state = state.to_str().unwrap().to_string();
    let mut all = vec![
        "replay",
        "-f",
        &topo,
        "--topic",
        &p.raw,
        "--state-dir",
        &state,
    ];
    all.extend_from_slice(args);
    weir(&all)
}

fn summary(out: &Output) -> serde_json::Value {
    let text = out.stdout_text();
    let last = text.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| {
        panic!(
            "the replay's summary is JSON ({e}): {text}\nstderr: {}",
            out.stderr_text()
        )
    })
}

/// Tier index and window size of a row key.
fn window_of(k: &RowKey) -> (i64, i64) {
    (k.2, k.2 + TIERS[k.0].1)
}

fn rfc3339(ms: i64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_millis(ms as u64))
        .to_string()
}

/// Deletes the rows of windows starting in `[from, to)` of every tier.
fn delete_rows(p: &Pipeline, from: i64, to: i64) {
    for (n, _) in TIERS {
        clickhouse(&format!(
            "ALTER TABLE {}.rollup_{n} DELETE WHERE startsWith(series, '{}') AND window_start >= toDateTime({}) AND window_start < toDateTime({})",
            p.database,
            p.prefix,
            from / 1000,
            to / 1000
        ));
    }
}

/// Writes, for windows starting in `[from, to)` of `tier`, a row counting every sample
/// twice (a double-count bug), with the version a row of twice the samples has.
fn double_count(p: &Pipeline, tier: &str, from: i64, to: i64) {
    let cols = "series, metric, window_start, window_end, count, sum, min, max, first, first_ts, last, last_ts, increase, p50, p90, p95, p99, version";
    clickhouse(&format!(
        "INSERT INTO {db}.rollup_{tier} ({cols}) SELECT series, metric, window_start, window_end, count * 2, sum * 2, min, max, first, first_ts, last, last_ts, increase * 2, p50, p90, p95, p99, count * 2 FROM {db}.rollup_{tier} FINAL WHERE startsWith(series, '{prefix}') AND window_start >= toDateTime({f}) AND window_start < toDateTime({t})",
        db = p.database,
        prefix = p.prefix,
        f = from / 1000,
        t = to / 1000
    ));
}

fn inside(k: &RowKey, from: i64, to: i64) -> bool {
    let (s, e) = window_of(k);
    s >= from && e <= to
}

fn split(
    rows: &BTreeMap<RowKey, Actual>,
    from: i64,
    to: i64,
) -> (BTreeMap<RowKey, Actual>, BTreeMap<RowKey, Actual>) {
    rows.iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .partition(|(k, _)| inside(k, from, to))
}

#[test]
fn a_rollup_replay_recomputes_the_windows_inside_its_range_beside_the_live_rollup() {
    ensure_stack();
    let p = Pipeline::new();
    let data = p.data();
    let (expected, _) = p.expected(&data);
    produce(&p.raw, &data, &p.prefix);
    let live = p.rollup("rollups");
    p.assert_exact(&expected, Duration::from_secs(120));
    let state = tempfile::tempdir().unwrap();
    let t0 = data
        .iter()
        .flat_map(|(_, r)| r.iter().flatten().map(|x| x.1))
        .min()
        .unwrap()
        / HOUR
        * HOUR;
    // The second hour of the data, and 2.5 minutes more: the 5m window and the 1m
    // window cut by the end are edges, left alone.
    let (from, to) = (t0 + HOUR, t0 + 2 * HOUR + 150_000);

    // The range as a dry run sees it.
    let plan = replay(
        &p,
        state.path(),
        &[
            "--into",
            "rollup",
            "--from",
            &rfc3339(from),
            "--to",
            &rfc3339(to),
            "--dry-run",
        ],
    );
    assert!(plan.status.success(), "{}", plan.stderr_text());
    let plan = summary(&plan);
    assert_eq!(plan["partitions"].as_array().unwrap().len(), 4, "{plan}");
    let planned = plan["records"].as_i64().unwrap();
    assert!(
        planned > 0 && planned < data.iter().map(|d| d.1.len() as i64).sum::<i64>(),
        "the range is a part of the topic: {plan}"
    );

    // Damage: the hour's 1m rows deleted, its 5m and 1h rows (and the edge's 5m row)
    // replaced by rows counting every sample twice.
    delete_rows(&p, from, from + HOUR);
    double_count(&p, "5m", from, to + 300_000);
    double_count(&p, "1h", from, from + HOUR);
    wait_until(
        "the hour's 1m rows to be deleted",
        Duration::from_secs(60),
        || {
            !without_sentinels(p.rows())
                .keys()
                .any(|k| k.0 == 0 && inside(k, from, from + HOUR))
        },
    );
    let damaged = without_sentinels(p.rows());
    let (_, damaged_outside) = split(&damaged, from, to);
    // The live rollup commits as its sinks acknowledge: once it read everything, its
    // offsets settle (the same twice, 2 s apart, none missing); the replay must not move
    // them from there.
    let mut last = (
        committed(p.group("rollups"), &p.raw, 4),
        std::time::Instant::now(),
    );
    wait_until(
        "the live group's offsets to settle",
        Duration::from_secs(60),
        || {
            let now = committed(p.group("rollups"), &p.raw, 4);
            if now != last.0 {
                last = (now, std::time::Instant::now());
                return false;
            }
            last.0.iter().all(|o| *o >= 0) && last.1.elapsed() >= Duration::from_secs(2)
        },
    );
    let offsets_before = last.0;

    let out = replay(
        &p,
        state.path(),
        &[
            "--into",
            "rollup",
            "--from",
            &rfc3339(from),
            "--to",
            &rfc3339(to),
        ],
    );
    assert!(out.status.success(), "replay failed: {}", out.stderr_text());
    let s = summary(&out);
    assert_eq!(s["status"], "complete", "{s}");
    assert!(s["totals"]["rows_written"].as_u64().unwrap() > 0, "{s}");

    let wanted: BTreeMap<RowKey, Expected> = expected
        .iter()
        .filter(|(k, _)| inside(k, from, to))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    assert!(
        wanted.keys().any(|k| k.0 == 2),
        "the hour's 1h window is inside the range"
    );
    let after = without_sentinels(p.rows());
    let (after_inside, after_outside) = split(&after, from, to);
    compare(&after_inside, &wanted)
        .unwrap_or_else(|e| panic!("the recomputed rows differ from the batch computation:\n{e}"));
    assert_eq!(
        after_outside, damaged_outside,
        "rows outside the range (edges included) are left as they were"
    );
    assert_eq!(
        committed(p.group("rollups"), &p.raw, 4),
        offsets_before,
        "the live group's offsets did not move"
    );
    assert!(client()
        .get(live.url("/readyz"))
        .send()
        .unwrap()
        .status()
        .is_success());

    // The same command again: complete already, nothing changes.
    let again = replay(
        &p,
        state.path(),
        &[
            "--into",
            "rollup",
            "--from",
            &rfc3339(from),
            "--to",
            &rfc3339(to),
        ],
    );
    assert!(again.status.success());
    assert!(summary(&again)["status"]
        .as_str()
        .unwrap()
        .starts_with("complete"));

    // Killed mid-replay, then run again with the same arguments: the same rows.
    delete_rows(&p, from, from + HOUR);
    double_count(&p, "5m", from, from + HOUR);
    wait_until(
        "the hour's 1m rows to be deleted again",
        Duration::from_secs(60),
        || {
            !without_sentinels(p.rows())
                .keys()
                .any(|k| k.0 == 0 && inside(k, from, from + HOUR))
        },
    );
    let args_owned: Vec<String> = [
        "replay",
        "-f",
        p.topo.path.to_str().unwrap(),
        "--topic",
        &p.raw,
        "--state-dir",
        state.path().to_str().unwrap(),
        "--into",
        "rollup",
        "--from",
        &rfc3339(from),
        "--to",
        &rfc3339(from + HOUR),
        "--max-rate",
        "1500",
        "--listen",
        "127.0.0.1:0",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut child = Command::new(weir_bin())
        .args(&args_owned)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Killed once a third of its records was read, as its JSON progress lines say (at
    // 1,500 samples/s the hour's 17,000 samples and the margins take over 10 s).
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            if let (Some(r), Some(t)) = (v["records"].as_u64(), v["records_total"].as_u64()) {
                if t > 0 && r * 3 >= t {
                    let _ = tx.send((r, t));
                    return;
                }
            }
        }
    });
    let (read, total) = rx
        .recv_timeout(Duration::from_secs(120))
        .expect("the replay reports a third of its records read");
    assert!(
        read < total,
        "killed before its end ({read} of {total} records)"
    );
    let _ = Command::new("kill")
        .args(["-KILL", &child.id().to_string()])
        .status();
    let _ = child.wait();
    let args: Vec<&str> = args_owned.iter().map(String::as_str).collect();
    let resumed = weir(&args);
    assert!(
        resumed.status.success(),
        "the resumed replay failed: {}",
        resumed.stderr_text()
    );
    assert_eq!(summary(&resumed)["status"], "complete");
    let wanted_hour: BTreeMap<RowKey, Expected> = expected
        .iter()
        .filter(|(k, _)| inside(k, from, from + HOUR))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let (hour_rows, _) = split(&without_sentinels(p.rows()), from, from + HOUR);
    compare(&hour_rows, &wanted_hour)
        .unwrap_or_else(|e| panic!("after a kill and a rerun the rows differ:\n{e}"));

    // An empty range: nothing to read, zero counts, exit 0.
    let empty = replay(
        &p,
        state.path(),
        &[
            "--into",
            "rollup",
            "--from",
            &rfc3339(t0 - 30 * 24 * HOUR),
            "--to",
            &rfc3339(t0 - 29 * 24 * HOUR),
        ],
    );
    assert!(empty.status.success(), "{}", empty.stderr_text());
    let e = summary(&empty);
    assert_eq!(e["status"], "complete");
    assert_eq!(e["this_run"]["records"], 0, "{e}");
    assert_eq!(e["totals"]["rows_written"], 0, "{e}");
    // A range the rollup may still correct is refused, naming the limit.
    let recent = replay(&p, state.path(), &["--into", "rollup", "--from", "-10m"]);
    assert!(!recent.status.success());
    assert!(
        recent.stderr_text().contains("too recent"),
        "{}",
        recent.stderr_text()
    );
    assert!(live.terminate().success());
}

#[test]
fn a_tsdb_backfill_into_an_empty_victoriametrics_reproduces_the_range_sample_for_sample() {
    use weir_contract::remote_write::{Label, Sample as PSample, TimeSeries, WriteRequest};
    ensure_stack();
    let (live_vm, fresh_vm) = (Vm::start(), Vm::start());
    let raw = unique("test.raw");
    let dlq = unique("test.dlq");
    let group = unique("test.tsdb-writers");
    let run = unique("run").replace('.', "_");
    let yaml = format!(
        "version: 1\nkafka: {{bootstrap_servers: '{}', consumer: {{session.timeout.ms: '4000', heartbeat.interval.ms: '1000'}}}}\ntopics:\n  {raw}: {{partitions: 4, compression: lz4}}\n  {dlq}: {{partitions: 1}}\nconsumer_groups:\n  {group}: {{role: tsdb-writer, topics: [{raw}], sink: vm}}\nsinks:\n  vm: {{type: prometheus_remote_write, url: '{}'}}\ngateway: {{listen: '127.0.0.1:0', topic: {raw}}}\ntsdb_writer: {{group: {group}, listen: '127.0.0.1:0', dead_letter_topic: {dlq}, max_batch_delay: 200ms, max_batch_samples: 500}}\n",
        bootstrap(),
        live_vm.url("/api/v1/write")
    );
    let topo = TestTopology::from_yaml(&yaml, raw.clone(), 4);
    topo.apply();
    let gw = Gateway::start(&topo);
    let writer = Service::spawn(
        &["tsdb-writer", "-f", topo.path.to_str().unwrap()],
        "tsdb-writer listening",
    );
    writer.wait_ready(Duration::from_secs(30));
    let http = client();
    // 60 pushes a second apart in event time, of 40 series each, pushed as they happen.
    let t0 = now_ms() / 1000 * 1000 - 70_000;
    let mut pushed = 0;
    for i in 0..60 {
        let ts = t0 + i * 1000;
        let timeseries = (0..40)
            .map(|d| TimeSeries {
                labels: vec![
                    Label {
                        name: "__name__".into(),
                        value: "backfill_test_value".into(),
                    },
                    Label {
                        name: "device".into(),
                        value: format!("d{d:02}"),
                    },
                    Label {
                        name: "run".into(),
                        value: run.clone(),
                    },
                ],
                samples: vec![PSample {
                    value: (i * 100 + d) as f64,
                    timestamp: ts,
                }],
                histograms: vec![],
            })
            .collect();
        let body = remote_write_body(&WriteRequest {
            timeseries,
            metadata: vec![],
        });
        let r = post_remote_write(&http, &format!("http://{}/api/v1/write", gw.addr), body);
        assert_eq!(r.status().as_u16(), 204);
        pushed += 40;
    }
    let selector = format!("{{run=\"{run}\"}}");
    let total = |m: &BTreeMap<String, Vec<(i64, f64)>>| m.values().map(Vec::len).sum::<usize>();
    let live = live_vm.wait_for(&selector, Duration::from_secs(60), |g| total(g) >= pushed);
    assert_eq!(total(&live), pushed, "the live writer wrote everything");

    // The middle 40 seconds, into the empty one.
    let (from, to) = (t0 + 10_000, t0 + 50_000);
    let state = tempfile::tempdir().unwrap();
    let out = weir(&[
        "replay",
        "-f",
        topo.path.to_str().unwrap(),
        "--topic",
        &raw,
        "--state-dir",
        state.path().to_str().unwrap(),
        "--into",
        "tsdb-writer",
        "--from",
        &rfc3339(from),
        "--to",
        &rfc3339(to),
        "--sink",
        &fresh_vm.url("/api/v1/write"),
    ]);
    assert!(out.status.success(), "{}", out.stderr_text());
    let s = summary(&out);
    assert_eq!(s["status"], "complete", "{s}");
    let in_range = |m: BTreeMap<String, Vec<(i64, f64)>>| -> BTreeMap<String, Vec<(i64, f64)>> {
        m.into_iter()
            .map(|(k, v)| {
                (
                    k,
                    v.into_iter()
                        .filter(|(t, _)| *t >= from && *t < to)
                        .collect::<Vec<_>>(),
                )
            })
            .filter(|(_, v)| !v.is_empty())
            .collect()
    };
    let want = in_range(live);
    assert_eq!(total(&want), 40 * 40);
    assert_eq!(s["totals"]["samples_written"], 40 * 40, "{s}");
    let got = fresh_vm.wait_for(&selector, Duration::from_secs(30), |g| {
        total(g) >= total(&want)
    });
    assert_eq!(
        got, want,
        "the backfilled export equals the live one over the range"
    );
    // Only the range: nothing before or after it was written.
    assert!(got.values().flatten().all(|(t, _)| *t >= from && *t < to));
    assert!(writer.terminate().success());

    // Migration: the live VictoriaMetrics' export imported into an empty topic, then
    // replayed into a third one, reproduces the export.
    let _ = client().get(live_vm.url("/internal/force_flush")).send();
    let export = client()
        .get(live_vm.url("/api/v1/export"))
        .query(&[("match[]", selector.as_str())])
        .send()
        .unwrap()
        .text()
        .unwrap();
    let file = write_file(state.path(), "export.jsonl", export.as_bytes());
    let imported = unique("test.imported");
    let yaml2 = std::fs::read_to_string(&topo.path).unwrap().replace(
        "topics:\n",
        &format!("topics:\n  {imported}: {{partitions: 2, compression: lz4}}\n"),
    );
    let topo2 = TestTopology::from_yaml(&yaml2, imported.clone(), 2);
    topo2.apply();
    let out = weir(&[
        "import",
        "-f",
        topo2.path.to_str().unwrap(),
        "--topic",
        &imported,
        file.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "import failed: {}", out.stderr_text());
    let s: serde_json::Value = serde_json::from_str(out.stdout_text().trim()).unwrap();
    assert_eq!(s["samples"], pushed, "{s}");
    assert_eq!(s["rejected_lines"], 0, "{s}");
    let third_vm = Vm::start();
    let out = weir(&[
        "replay",
        "-f",
        topo2.path.to_str().unwrap(),
        "--topic",
        &imported,
        "--state-dir",
        state.path().to_str().unwrap(),
        "--into",
        "tsdb-writer",
        "--from",
        &rfc3339(t0 - 60_000),
        "--to",
        "now",
        "--sink",
        &third_vm.url("/api/v1/write"),
    ]);
    assert!(out.status.success(), "{}", out.stderr_text());
    let live = live_vm.export(&selector);
    let migrated = third_vm.wait_for(&selector, Duration::from_secs(30), |g| total(g) >= pushed);
    assert_eq!(
        migrated, live,
        "the imported export, replayed, is the export"
    );
}

/// One promtool test group, produced to a topic of its own and backtested: the alerts
/// firing at each `eval_time` (the last transition of each alert at or before the
/// evaluation that time sees) are the ones the file expects. Labels are compared;
/// annotations change from step to step with `$value` while a backtest reports them at
/// the transitions only, so `weir rules test` remains what checks them.
fn backtest_promtool_group(
    file: &Path,
    rule_files: &[std::path::PathBuf],
    eval_ms: i64,
    group: &serde_yaml::Value,
) -> Vec<String> {
    use weir_alerter::promtool::{parse_series, parse_values};
    use weir_alerter::rules::duration_ms;
    let interval = group["interval"]
        .as_str()
        .map(|d| duration_ms(d).unwrap())
        .unwrap_or(eval_ms);
    let raw = unique("test.promtool");
    let dir = tempfile::tempdir().unwrap();
    let rules: Vec<String> = rule_files
        .iter()
        .map(|f| format!("'{}'", f.display()))
        .collect();
    let yaml = format!(
        "version: 1\nkafka: {{bootstrap_servers: '{}'}}\ntopics:\n  {raw}: {{partitions: 4, compression: lz4}}\ngateway: {{listen: '127.0.0.1:0', topic: {raw}}}\nalerter:\n  rule_files: [{}]\n  evaluation_interval: {eval_ms}ms\n  out_of_orderness: 0s\n",
        bootstrap(),
        rules.join(", ")
    );
    let topo = TestTopology::from_yaml(&yaml, raw.clone(), 4);
    topo.apply();
    // Hour-aligned, so steps fall where promtool's do (multiples of the interval from 0).
    let t0 = (now_ms() - 10 * 24 * HOUR) / HOUR * HOUR;
    // Samples by time index, then series.
    let mut by_step: BTreeMap<usize, Vec<(weir_contract::Series, u32)>> = BTreeMap::new();
    for s in group["input_series"].as_sequence().into_iter().flatten() {
        let labels = parse_series(s["series"].as_str().unwrap()).unwrap();
        let name = labels.get("__name__").to_string();
        let mut ls: Vec<weir_contract::Label> = labels
            .iter()
            .filter(|(k, _)| *k != "__name__")
            .map(|(k, v)| weir_contract::Label::new(k, v))
            .collect();
        ls.sort();
        let key = weir_contract::SeriesKey::new(&name, &ls);
        let part = weir_contract::partitioner::partition_for_key(key.as_bytes(), 4);
        for (k, v) in parse_values(s["values"].as_str().unwrap())
            .unwrap()
            .into_iter()
            .enumerate()
        {
            if let Some(v) = v {
                by_step.entry(k).or_default().push((
                    weir_contract::Series::new(
                        &name,
                        ls.clone(),
                        vec![weir_contract::Sample::new(t0 + k as i64 * interval, v)],
                    ),
                    part,
                ));
            }
        }
    }
    let tests = group["alert_rule_test"]
        .as_sequence()
        .cloned()
        .unwrap_or_default();
    let max_eval = tests
        .iter()
        .map(|t| duration_ms(t["eval_time"].as_str().unwrap()).unwrap())
        .max()
        .unwrap_or(0);
    let p = producer();
    for (k, series) in &by_step {
        for part in 0..4 {
            let mut e = weir_contract::avro::BatchEncoder::new();
            for (s, _) in series.iter().filter(|(_, q)| *q == part) {
                e.push(s);
            }
            if !e.is_empty() {
                let ts = t0 + *k as i64 * interval;
                send_at(&p, &raw, part, &e.finish(), Some(ts));
            }
        }
    }
    // Event time passes the last evaluation on every partition, as time would.
    let end = t0 + max_eval + eval_ms;
    for part in 0..4 {
        let key = weir_contract::partitioner::first_key_in_partition(part, 4, |n| {
            format!("promtool_clock{{slot=\"{n}\"}}")
        });
        let (name, labels) = weir_contract::series_key::parse_key(&key).unwrap();
        let mut e = weir_contract::avro::BatchEncoder::new();
        e.push(&weir_contract::Series::new(
            name,
            labels,
            vec![weir_contract::Sample::new(end, 0.0)],
        ));
        send_at(&p, &raw, part, &e.finish(), Some(end));
    }
    rdkafka::producer::Producer::flush(&p, Duration::from_secs(30)).unwrap();
    let out = weir(&[
        "replay",
        "-f",
        topo.path.to_str().unwrap(),
        "--topic",
        &raw,
        "--into",
        "alerter",
        "--from",
        &rfc3339(t0),
        "--to",
        &rfc3339(end),
        "--state-dir",
        dir.path().to_str().unwrap(),
        "--margin",
        "1m",
    ]);
    assert!(
        out.status.success(),
        "{}: backtest failed: {}",
        file.display(),
        out.stderr_text()
    );
    let transitions: Vec<serde_json::Value> = out
        .stdout_text()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut problems = Vec::new();
    for t in &tests {
        let at = duration_ms(t["eval_time"].as_str().unwrap()).unwrap();
        let step = t0 + at / eval_ms * eval_ms;
        let name = t["alertname"].as_str().unwrap();
        let mut state: BTreeMap<BTreeMap<String, String>, bool> = BTreeMap::new();
        for tr in transitions
            .iter()
            .filter(|tr| tr["alertname"] == name && tr["step_ms"].as_i64().unwrap() <= step)
        {
            let labels: BTreeMap<String, String> =
                serde_json::from_value(tr["labels"].clone()).unwrap();
            state.insert(labels, tr["status"] == "firing");
        }
        let got: Vec<BTreeMap<String, String>> = state
            .into_iter()
            .filter(|(_, f)| *f)
            .map(|(l, _)| l)
            .collect();
        let mut want: Vec<BTreeMap<String, String>> = t["exp_alerts"]
            .as_sequence()
            .into_iter()
            .flatten()
            .map(|a| {
                let mut l: BTreeMap<String, String> = a["exp_labels"]
                    .as_mapping()
                    .into_iter()
                    .flatten()
                    .map(|(k, v)| {
                        (
                            k.as_str().unwrap().to_string(),
                            v.as_str().map(String::from).unwrap_or_else(|| {
                                serde_yaml::to_string(v).unwrap().trim().to_string()
                            }),
                        )
                    })
                    .collect();
                l.insert("alertname".into(), name.to_string());
                l
            })
            .collect();
        want.sort();
        if got != want {
            problems.push(format!(
                "{} {name} at {}: expected {want:?}, backtest {got:?}",
                file.display(),
                t["eval_time"].as_str().unwrap()
            ));
        }
    }
    problems
}

#[test]
fn the_promtool_tests_backtested_from_a_topic_give_the_alerts_they_expect() {
    use weir_alerter::rules::duration_ms;
    ensure_stack();
    let dir = repo_root().join("rules/tests");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let mut problems = Vec::new();
    let mut groups = 0;
    for file in &files {
        let doc: serde_yaml::Value =
            serde_yaml::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
        let eval_ms = doc["evaluation_interval"]
            .as_str()
            .map(|d| duration_ms(d).unwrap())
            .unwrap_or(60_000);
        let rule_files: Vec<_> = doc["rule_files"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|f| dir.join(f.as_str().unwrap()).canonicalize().unwrap())
            .collect();
        for g in doc["tests"].as_sequence().unwrap() {
            problems.extend(backtest_promtool_group(file, &rule_files, eval_ms, g));
            groups += 1;
        }
    }
    assert!(groups >= 6, "every file's test groups ran ({groups})");
    assert!(
        problems.is_empty(),
        "backtests differ from the promtool expectations:\n{}",
        problems.join("\n")
    );
}

#[test]
fn redrive_moves_late_samples_and_dead_letters_of_one_kind_into_metrics_raw() {
    use weir_contract::{Label, Sample, Series};
    ensure_stack();
    let vm = Vm::start();
    let (raw, dlq, late) = (unique("test.raw"), unique("test.dlq"), unique("test.late"));
    let group = unique("test.tsdb-writers");
    let run = unique("run").replace('.', "_");
    let yaml = format!(
        "version: 1\nkafka: {{bootstrap_servers: '{}', consumer: {{session.timeout.ms: '4000', heartbeat.interval.ms: '1000'}}}}\ntopics:\n  {raw}: {{partitions: 4, compression: lz4}}\n  {dlq}: {{partitions: 1}}\n  {late}: {{partitions: 1}}\nconsumer_groups:\n  {group}: {{role: tsdb-writer, topics: [{raw}], sink: vm}}\nsinks:\n  vm: {{type: prometheus_remote_write, url: '{}'}}\ngateway: {{listen: '127.0.0.1:0', topic: {raw}}}\ntsdb_writer: {{group: {group}, listen: '127.0.0.1:0', dead_letter_topic: {dlq}, max_batch_delay: 200ms}}\n",
        bootstrap(),
        vm.url("/api/v1/write")
    );
    let topo = TestTopology::from_yaml(&yaml, raw.clone(), 4);
    topo.apply();
    let writer = Service::spawn(
        &["tsdb-writer", "-f", topo.path.to_str().unwrap()],
        "tsdb-writer listening",
    );
    writer.wait_ready(Duration::from_secs(30));
    let t0 = now_ms() / 1000 * 1000 - 60_000;
    let series = |name: &str, device: &str, n: i64| {
        Series::new(
            name,
            vec![Label::new("device", device), Label::new("run", &run)],
            (0..n)
                .map(|i| Sample::new(t0 + i * 1000, i as f64))
                .collect(),
        )
    };
    let p = producer();
    // Late samples, as the rollup writes them to its late topic: two series.
    let mut e = weir_contract::avro::BatchEncoder::new();
    e.push(&series("redrive_late", "a", 10));
    e.push(&series("redrive_late", "b", 10));
    send_at(&p, &late, 0, &e.finish(), Some(t0 + 9_000));
    // On metrics.raw: a series on a partition its key does not hash to, and a record
    // that is not Avro at all. The live writer dead-letters both.
    let misplaced = series("redrive_misplaced", "c", 5);
    let key = weir_contract::SeriesKey::new(&misplaced.name, &misplaced.labels);
    let right = weir_contract::partitioner::partition_for_key(key.as_bytes(), 4);
    let mut e = weir_contract::avro::BatchEncoder::new();
    e.push(&misplaced);
    send_at(&p, &raw, (right + 1) % 4, &e.finish(), None);
    send_at(&p, &raw, right, b"\xC3\x01 not avro", None);
    rdkafka::producer::Producer::flush(&p, Duration::from_secs(30)).unwrap();
    read_topic(&dlq, 1, Duration::from_secs(60), |r| r.len() >= 2);

    let summary_out = weir(&["dlq", "-f", topo.path.to_str().unwrap(), "--topic", &dlq]);
    assert!(
        summary_out.status.success(),
        "{}",
        summary_out.stderr_text()
    );
    let d: serde_json::Value = serde_json::from_str(&summary_out.stdout_text()).unwrap();
    assert_eq!(d["dead_letters"], 2, "{d}");
    assert_eq!(d["by_kind"]["wrong_partition"], 1, "{d}");
    assert_eq!(d["by_kind"]["unknown_fingerprint"], 1, "{d}");
    assert_eq!(d["by_consumer_group"][&group], 2, "{d}");

    let state = tempfile::tempdir().unwrap();
    let redrive = |args: &[&str]| {
        let mut all = vec![
            "replay",
            "-f",
            topo.path.to_str().unwrap(),
            "--into",
            "topic",
            "--to-topic",
            &raw,
            "--state-dir",
            state.path().to_str().unwrap(),
            "--from",
            "-30m",
        ];
        all.extend_from_slice(args);
        let out = weir(&all);
        assert!(
            out.status.success(),
            "redrive failed: {}",
            out.stderr_text()
        );
        summary(&out)
    };
    // Device a only, from the late topic.
    let s = redrive(&[
        "--topic",
        &late,
        "--match",
        &format!("redrive_late{{device=\"a\",run=\"{run}\"}}"),
    ]);
    assert_eq!(s["totals"]["samples_written"], 10, "{s}");
    // Only the misplaced series from the dead letters: the undecodable one stays.
    let s = redrive(&["--topic", &dlq, "--kind", "wrong_partition"]);
    assert_eq!(s["totals"]["samples_written"], 5, "{s}");
    assert_eq!(s["totals"]["undecodable_records"], 0, "{s}");

    let selector = format!("{{run=\"{run}\"}}");
    let got = vm.wait_for(&selector, Duration::from_secs(60), |g| {
        g.values().map(Vec::len).sum::<usize>() >= 15
    });
    let names: Vec<&String> = got.keys().collect();
    assert_eq!(
        names.len(),
        2,
        "device a and the misplaced series, nothing else: {names:?}"
    );
    assert!(
        got.iter()
            .all(|(k, v)| v.len() == if k.contains("misplaced") { 5 } else { 10 }),
        "{got:?}"
    );
    assert!(
        got.keys().any(|k| k.contains("device=\"a\""))
            && got.keys().any(|k| k.contains("misplaced"))
    );
    // Nothing new was dead-lettered: the redriven series are on their partitions.
    assert_eq!(read_all(&dlq, 1).len(), 2);
    assert!(writer.terminate().success());
}

/// A tansu of the test's own (its own sqlite file and port, the stack's binary), stopped
/// when dropped.
struct PrivateTansu {
    child: std::process::Child,
    dir: tempfile::TempDir,
    port: u16,
    bin: std::path::PathBuf,
}

impl PrivateTansu {
    fn start() -> Self {
        let env = Command::new("bash")
            .arg(repo_root().join("scripts/stack.sh"))
            .arg("env")
            .output()
            .unwrap();
        let bin = String::from_utf8_lossy(&env.stdout)
            .lines()
            .find_map(|l| l.strip_prefix("TANSU_BIN=").map(std::path::PathBuf::from))
            .expect("stack.sh env names TANSU_BIN");
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let child = Self::spawn(&bin, dir.path(), port);
        let t = Self {
            child,
            dir,
            port,
            bin,
        };
        t.wait_up();
        t
    }

    fn spawn(bin: &Path, dir: &Path, port: u16) -> std::process::Child {
        let url = format!("tcp://127.0.0.1:{port}");
        Command::new(bin)
            .current_dir(dir)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "sqlite://tansu.db"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tansu")
    }

    fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn wait_up(&self) {
        let c: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", self.bootstrap())
            .create()
            .unwrap();
        wait_until(
            "the private tansu to answer",
            Duration::from_secs(30),
            || c.fetch_metadata(None, Duration::from_secs(1)).is_ok(),
        );
    }

    fn stop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }

    /// What retention does, done to tansu's storage (tansu has no retention of its own,
    /// and its storage dies on DeleteRecords): a partition's records before `offset`
    /// removed and its low watermark moved there. Done while it is stopped.
    fn cut(&mut self, topic: &str, partition: u32, offset: i64) {
        self.stop();
        let part = format!(
            "(SELECT tp.id FROM topition tp JOIN topic t ON tp.topic = t.id WHERE t.name = '{topic}' AND tp.partition = {partition})"
        );
        let sql = format!(
            "DELETE FROM record WHERE topition = {part} AND offset_id < {offset}; UPDATE watermark SET low = {offset} WHERE topition = {part};"
        );
        let out = Command::new("sqlite3")
            .arg(self.dir.path().join("tansu.db"))
            .arg(sql)
            .output()
            .expect("sqlite3 (Debian package)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.child = Self::spawn(&self.bin, self.dir.path(), self.port);
        self.wait_up();
    }
}

impl Drop for PrivateTansu {
    fn drop(&mut self) {
        self.stop();
    }
}

#[test]
fn a_range_that_retention_cut_is_refused_with_the_earliest_time_the_topic_holds() {
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    ensure_stack();
    let mut tansu = PrivateTansu::start();
    let raw = unique("test.raw");
    let yaml = format!(
        "version: 1\nkafka: {{bootstrap_servers: '{}'}}\ntopics:\n  {raw}: {{partitions: 1, compression: lz4}}\ngateway: {{listen: '127.0.0.1:0', topic: {raw}}}\n",
        tansu.bootstrap()
    );
    let topo = TestTopology::from_yaml(&yaml, raw.clone(), 1);
    topo.apply();
    // 20 records a minute apart, stamped at their samples' time.
    let t0 = (now_ms() - 2 * HOUR) / 60_000 * 60_000;
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", tansu.bootstrap())
        .create()
        .unwrap();
    for i in 0..20i64 {
        let mut e = weir_contract::avro::BatchEncoder::new();
        e.push(&weir_contract::Series::new(
            "retention_test",
            vec![weir_contract::Label::new("i", i.to_string())],
            vec![weir_contract::Sample::new(t0 + i * 60_000, 1.0)],
        ));
        let payload = e.finish();
        p.send(
            BaseRecord::<(), [u8]>::to(&raw)
                .payload(&payload)
                .timestamp(t0 + i * 60_000),
        )
        .map_err(|(e, _)| e)
        .unwrap();
    }
    p.flush(Duration::from_secs(30)).unwrap();
    drop(p);
    // Retention removed the first ten minutes.
    tansu.cut(&raw, 0, 10);
    let state = tempfile::tempdir().unwrap();
    let run = |from: i64| {
        weir(&[
            "replay",
            "-f",
            topo.path.to_str().unwrap(),
            "--topic",
            &raw,
            "--into",
            "tsdb-writer",
            "--sink",
            "http://127.0.0.1:9/api/v1/write",
            "--from",
            &rfc3339(from),
            "--to",
            &rfc3339(t0 + 20 * 60_000),
            "--margin",
            "0s",
            "--dry-run",
            "--state-dir",
            state.path().to_str().unwrap(),
        ])
    };
    let refused = run(t0);
    assert!(!refused.status.success(), "a cut range is refused");
    let err = refused.stderr_text();
    assert!(err.contains("retention removed the rest"), "{err}");
    assert!(
        err.contains(&rfc3339(t0 + 10 * 60_000)),
        "names the earliest time held: {err}"
    );
    // From there on it is fine.
    let planned = run(t0 + 10 * 60_000);
    assert!(planned.status.success(), "{}", planned.stderr_text());
    let plan = summary(&planned);
    assert_eq!(plan["records"], 10, "{plan}");
}
