//! Rollup end to end: samples preloaded on a tansu topic, the real `weir rollup` binary
//! reads them and writes 1m/5m/1h rows to ClickHouse and to the rollup topics. Prints
//! samples per CPU-second of the rollup process and the wall time until the last tier
//! was written.
use std::ffi::OsStr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::bail;
use clap::Args;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use weir_contract::avro::BatchEncoder;
use weir_contract::{partition_for_key, Label, Sample, Series, SeriesKey};

use crate::proc_stat::cpu_seconds;
use crate::process::{scrape as metric, spawn_weir};

#[derive(Debug, Args)]
pub struct RollupBenchArgs {
    #[arg(long, default_value = "target/release/weir")]
    weir: PathBuf,
    #[arg(long, default_value = "127.0.0.1:9092")]
    kafka: String,
    #[arg(long, default_value = "http://127.0.0.1:8123")]
    clickhouse: String,
    /// Distinct series.
    #[arg(long, default_value_t = 100_000)]
    series: usize,
    /// Samples per series, 10 s apart.
    #[arg(long, default_value_t = 30)]
    samples_per_series: usize,
    /// Series per Kafka record (the gateway writes one record per partition per request).
    #[arg(long, default_value_t = 1000)]
    series_per_record: usize,
    #[arg(long, default_value_t = 8)]
    partitions: usize,
    /// Timely workers of the rollup process.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Then replay the same records with `weir replay`: into the rollup (recomputing
    /// every window) and into a VictoriaMetrics of its own.
    #[arg(long)]
    replay: bool,
}

/// Runs `weir replay ARGS` to completion; its wall and CPU seconds and its summary.
fn timed_replay(
    weir: &std::path::Path,
    args: &[String],
) -> anyhow::Result<(f64, f64, serde_json::Value)> {
    let before = crate::proc_stat::waited_children_cpu_seconds()?;
    let start = Instant::now();
    let out = std::process::Command::new(weir)
        .arg("replay")
        .args(args)
        .env("RUST_LOG", "warn")
        .output()?;
    let wall = start.elapsed().as_secs_f64();
    let cpu = crate::proc_stat::waited_children_cpu_seconds()? - before;
    if !out.status.success() {
        bail!(
            "weir replay {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let summary = serde_json::from_str(text.lines().last().unwrap_or("{}"))?;
    Ok((wall, cpu, summary))
}

fn series(id: usize, ts: i64, v: f64) -> Series {
    Series::new(
        "bench_rollup_value",
        vec![
            Label::new("instance", format!("host-{:06}:9100", id / 10)),
            Label::new("job", "node"),
            Label::new("series", format!("{id}")),
        ],
        vec![Sample::new(ts, v)],
    )
}

pub fn run(a: RollupBenchArgs) -> anyhow::Result<()> {
    if !a.weir.exists() {
        bail!(
            "{} not found: cargo build --release -p weir",
            a.weir.display()
        );
    }
    let tag = format!("{}_{}", std::process::id(), crate::fleet::now_ms());
    let (raw, late, dlq) = (
        format!("bench.raw.{tag}"),
        format!("bench.late.{tag}"),
        format!("bench.dlq.{tag}"),
    );
    let database = format!("weir_bench_{tag}");
    let tiers = [("1m", 60_000i64), ("5m", 300_000), ("1h", 3_600_000)];
    let dir = tempfile::tempdir()?;
    let mut yaml = format!(
        "version: 1\nkafka: {{bootstrap_servers: '{}'}}\ntopics:\n  {raw}: {{partitions: {}, compression: lz4}}\n  {late}: {{partitions: 1}}\n  {dlq}: {{partitions: 1}}\n",
        a.kafka, a.partitions
    );
    for (n, _) in tiers {
        yaml.push_str(&format!(
            "  bench.rollup.{n}.{tag}: {{partitions: {}, compression: lz4}}\n",
            a.partitions
        ));
    }
    yaml.push_str(&format!(
        "consumer_groups:\n  g: {{role: rollup, topics: [{raw}], sink: ch}}\nsinks:\n  ch: {{type: clickhouse, url: '{}', database: {database}}}\ngateway: {{topic: {raw}}}\nrollup:\n  group: g\n  listen: 127.0.0.1:0\n  workers: {}\n  dead_letter_topic: {dlq}\n  late_topic: {late}\n  tiers:\n",
        a.clickhouse, a.workers
    ));
    for (n, size) in tiers {
        yaml.push_str(&format!("    - {{name: '{n}', size: {size}ms, retention: 30d, topic: bench.rollup.{n}.{tag}}}\n"));
    }
    let topo = crate::process::apply_topology(&a.weir, dir.path(), &yaml)?;

    // Preload: each record holds `series_per_record` series of one partition at one time.
    let hour = 3_600_000;
    let t0 = (crate::fleet::now_ms() / hour - 2) * hour;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &a.kafka)
        .set("compression.type", "lz4")
        .set("linger.ms", "5")
        .create()?;
    let rt = tokio::runtime::Runtime::new()?;
    // Each series on the partition its key hashes to, as the contract asks.
    let partition_of = |id: usize| {
        let s = series(id, 0, 0.0);
        partition_for_key(
            SeriesKey::new(&s.name, &s.labels).0.as_bytes(),
            a.partitions as u32,
        ) as usize
    };
    let mut per_part: Vec<Vec<usize>> = vec![Vec::new(); a.partitions];
    for id in 0..a.series {
        per_part[partition_of(id)].push(id);
    }
    let mut records = 0usize;
    // One batch of series as one record on partition `p`.
    // Stamped at their samples' time, as a gateway produces them: a replay locates its
    // range by record timestamps.
    let send = |p: usize, ts: i64, batch: &mut dyn Iterator<Item = Series>| {
        let mut e = BatchEncoder::new();
        for s in batch {
            e.push(&s);
        }
        let payload = e.finish();
        producer
            .send_result(
                FutureRecord::<(), _>::to(&raw)
                    .partition(p as i32)
                    .timestamp(ts)
                    .payload(&payload),
            )
            .map_err(|(e, _)| anyhow::anyhow!("{e}"))
    };
    rt.block_on(async {
        let mut pending = Vec::new();
        for round in 0..a.samples_per_series {
            let ts = t0 + round as i64 * 10_000;
            for (p, ids) in per_part.iter().enumerate() {
                for chunk in ids.chunks(a.series_per_record) {
                    // A counter per series, resetting now and then.
                    let mut batch = chunk
                        .iter()
                        .map(|id| series(*id, ts, ((round + id) % 50) as f64 * 2.0));
                    pending.push(send(p, ts, &mut batch)?);
                    records += 1;
                }
            }
            if pending.len() > 2000 {
                for f in pending.drain(..) {
                    f.await?.map_err(|(e, _)| anyhow::anyhow!("{e}"))?;
                }
            }
        }
        // One record per partition at the clock's now (2 h after the data; later would be
        // cut as a future sample): the watermark passes every window and its lateness.
        let ahead = crate::fleet::now_ms().min(t0 + 3 * hour);
        for p in 0..a.partitions {
            let id = (1_000_000_000..)
                .find(|id| partition_of(*id) == p)
                .unwrap_or_default();
            let mut one = std::iter::once(series(id, ahead, 0.0));
            pending.push(send(p, ahead, &mut one)?);
        }
        for f in pending {
            f.await?.map_err(|(e, _)| anyhow::anyhow!("{e}"))?;
        }
        anyhow::Ok(())
    })?;
    let samples = a.series * a.samples_per_series;
    let span = a.samples_per_series as i64 * 10_000;
    let want_1h = a.series * (((span - 1) / hour) as usize + 1);

    let (proc, addr) = spawn_weir(
        &a.weir,
        [OsStr::new("rollup"), OsStr::new("-f"), topo.as_os_str()],
        "warn,weir_rollup=info",
        "rollup listening",
    )?;
    let start = Instant::now();
    let mut read_done = None;
    loop {
        let read = metric(addr, "weir_rollup_samples_total{outcome=\"read\"} ");
        if read_done.is_none() && read as usize >= samples {
            read_done = Some((start.elapsed(), cpu_seconds(proc.id())?));
        }
        let rows_1h = metric(addr, "weir_rollup_rows_total{tier=\"1h\"} ");
        if rows_1h as usize >= want_1h && metric(addr, "weir_rollup_pending_rows ") == 0.0 {
            break;
        }
        if start.elapsed() > Duration::from_secs(900) {
            bail!("the rollup did not finish in 900 s (read {read} of {samples}, 1h rows {rows_1h} of {want_1h})");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let wall = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds(proc.id())?;
    let rows: f64 = tiers
        .iter()
        .map(|(n, _)| metric(addr, &format!("weir_rollup_rows_total{{tier=\"{n}\"}} ")))
        .sum();
    drop(proc);
    let replayed = if a.replay {
        let state = tempfile::tempdir()?;
        let show = |ms: i64| {
            humantime::format_rfc3339_seconds(
                std::time::UNIX_EPOCH + Duration::from_millis(ms as u64),
            )
            .to_string()
        };
        let common = |into: &str| -> Vec<String> {
            [
                "-f",
                topo.to_str().unwrap_or_default(),
                "--topic",
                &raw,
                "--into",
                into,
                "--from",
                &show(t0),
                "--to",
                &show(t0 + hour),
                "--state-dir",
                state.path().to_str().unwrap_or_default(),
            ]
            .iter()
            .map(|s| s.to_string())
            .collect()
        };
        let rollup = timed_replay(&a.weir, &common("rollup"))?;
        let vm_dir = tempfile::tempdir()?;
        let port = crate::process::free_port()?;
        let vm = crate::process::start_vm(port, vm_dir.path())?;
        let mut args = common("tsdb-writer");
        args.extend([
            "--sink".to_string(),
            format!("http://127.0.0.1:{port}/api/v1/write"),
        ]);
        let tsdb = timed_replay(&a.weir, &args)?;
        drop(vm);
        Some((rollup, tsdb))
    } else {
        None
    };
    let mut topics = vec![raw.clone(), late.clone(), dlq.clone()];
    topics.extend(tiers.iter().map(|(n, _)| format!("bench.rollup.{n}.{tag}")));
    crate::process::delete_topics(&a.kafka, &topics);
    let _ = reqwest::blocking::Client::new()
        .post(&a.clickhouse)
        .body(format!("DROP DATABASE IF EXISTS {database}"))
        .send();
    println!("== rollup: Kafka (tansu) -> window engine -> ClickHouse + rollup topics");
    println!(
        "   workload: {samples} samples = {} series x {} samples 10 s apart, preloaded as {records} records of up to {} series, {} partitions; {} timely workers",
        a.series, a.samples_per_series, a.series_per_record, a.partitions, a.workers
    );
    if let Some((t, c)) = read_done {
        println!(
            "   all samples read after {:.2} s wall, {:.2} rollup CPU-s",
            t.as_secs_f64(),
            c
        );
    }
    println!(
        "   done (every tier written, {rows:.0} rows to ClickHouse and as many Avro records to tansu) after {wall:.2} s wall; rollup CPU {cpu:.2} s (its whole process, /proc/PID/stat)"
    );
    println!(
        "   => {:.0} samples per rollup CPU-second end to end; {:.0} samples/s wall",
        samples as f64 / cpu,
        samples as f64 / wall
    );
    if let Some(((rw, rc, rs), (tw, tc, ts))) = replayed {
        println!("== weir replay of the same records (outside any group, bounded by the range's offsets)");
        println!(
            "   --into rollup: {} rows recomputed (windows wholly inside the hour) in {rw:.2} s wall, {rc:.2} CPU-s (the replay process, waited-for children's /proc/self/stat)",
            rs["totals"]["rows_written"]
        );
        println!(
            "   => {:.0} samples per replay CPU-second; {:.0} samples/s wall (live rollup above: {:.0} per CPU-second)",
            samples as f64 / rc,
            samples as f64 / rw,
            samples as f64 / cpu
        );
        println!(
            "   --into tsdb-writer (a fresh VictoriaMetrics): {} samples written in {tw:.2} s wall, {tc:.2} CPU-s",
            ts["totals"]["samples_written"]
        );
        println!(
            "   => {:.0} samples per replay CPU-second; {:.0} samples/s wall",
            samples as f64 / tc,
            samples as f64 / tw
        );
    }
    Ok(())
}
