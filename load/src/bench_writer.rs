//! TSDB writer benchmark: samples per CPU-second of the writer process from Kafka to
//! VictoriaMetrics, and how long consumer lag takes to return to zero after a 30 s sink
//! outage at a fixed input rate.
//!
//! Records are produced straight to a fresh topic in the gateway's shape (one Avro
//! record per partition holding many series); the real `weir tsdb-writer` binary reads
//! them into a VictoriaMetrics of the benchmark's own (Debian's binary) on loopback. CPU
//! time comes from /proc/PID/stat; progress from the writer's own /metrics.
use std::ffi::OsStr;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::bail;
use clap::Args;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use weir_contract::avro::BatchEncoder;
use weir_contract::{partition_for_key, Label, Sample, Series, SeriesKey};

use crate::proc_stat::cpu_seconds;
use crate::process::{free_port, scrape, spawn_weir, start_vm, Proc};

#[derive(Debug, Args)]
pub struct WriterBenchArgs {
    #[arg(long, default_value = "target/release/weir")]
    weir: PathBuf,
    #[arg(long, default_value = "127.0.0.1:9092")]
    kafka: String,
    /// Samples preloaded for the throughput run.
    #[arg(long, default_value_t = 2_000_000)]
    samples: usize,
    /// Series per Kafka record (the gateway writes one record per partition per request).
    #[arg(long, default_value_t = 500)]
    series_per_record: usize,
    #[arg(long, default_value_t = 8)]
    partitions: i32,
    /// Input rate for the outage run, samples per second.
    #[arg(long, default_value_t = 20_000)]
    rate: usize,
    /// Sink outage length.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    outage: Duration,
    /// Skip the outage run.
    #[arg(long)]
    no_outage: bool,
}

fn start_writer(weir: &Path, topology: &Path) -> anyhow::Result<(Proc, SocketAddr)> {
    let args = [
        OsStr::new("tsdb-writer"),
        OsStr::new("-f"),
        topology.as_os_str(),
    ];
    spawn_weir(
        weir,
        args,
        "warn,weir_tsdb_writer=info",
        "tsdb-writer listening",
    )
}

/// The writer's acknowledged-samples counter.
fn acknowledged(addr: SocketAddr) -> u64 {
    scrape(
        addr,
        "weir_tsdb_writer_samples_total{outcome=\"acknowledged\"} ",
    ) as u64
}

/// Distinct series the benchmark's records walk over (one sample each per round, 15 s
/// apart), as a fleet of scrape targets would produce.
const FLEET: usize = 100_000;

/// The fleet's series ids by the partition their key hashes to (records hold series of
/// one partition, as the contract asks).
struct Fleet {
    by_partition: Vec<Vec<usize>>,
}

impl Fleet {
    fn new(partitions: u32) -> Self {
        let mut by_partition = vec![Vec::new(); partitions as usize];
        for id in 0..FLEET {
            let s = series(id, 0);
            let key = SeriesKey::new(&s.name, &s.labels);
            by_partition[partition_for_key(key.0.as_bytes(), partitions) as usize].push(id);
        }
        Self { by_partition }
    }

    fn partitions(&self) -> usize {
        self.by_partition.len()
    }

    /// Record `batch_no` (on partition `batch_no % partitions`): `series` series of that
    /// partition, walking its ids one round after another, 15 s apart.
    fn record(&self, batch_no: usize, series_per_record: usize, ts: i64) -> Vec<u8> {
        let ids = &self.by_partition[batch_no % self.partitions()];
        let k = batch_no / self.partitions();
        let mut e = BatchEncoder::new();
        for i in 0..series_per_record {
            let n = k * series_per_record + i;
            let (id, round) = (ids[n % ids.len()], (n / ids.len()) as i64);
            e.push(&series(id, ts + round * 15_000));
        }
        e.finish()
    }
}

fn series(id: usize, ts: i64) -> Series {
    Series::new(
        "bench_writer_value",
        vec![
            Label::new("env", "prod"),
            Label::new("instance", format!("host-{:06}:9100", id / 10)),
            Label::new("job", "node"),
            Label::new("region", ["eu-west-1", "us-east-1"][id % 2]),
            Label::new("series", format!("{id}")),
            Label::new("zone", format!("z{}", id % 4)),
        ],
        vec![Sample::new(ts, id as f64)],
    )
}

pub fn run(a: WriterBenchArgs) -> anyhow::Result<()> {
    if !a.weir.exists() {
        bail!(
            "{} not found: cargo build --release -p weir",
            a.weir.display()
        );
    }
    let rt = tokio::runtime::Runtime::new()?;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &a.kafka)
        .set("compression.type", "lz4")
        .set("linger.ms", "5")
        .create()?;
    let tag = format!("{}.{}", std::process::id(), crate::fleet::now_ms());
    let vm_dir = tempfile::tempdir()?;
    let vm_port = free_port()?;
    let mut vm = Some(start_vm(vm_port, vm_dir.path())?);

    // Throughput: preload, then time the writer from start to the last acknowledgement.
    let (topic, dir, topo) = topology(&a, &tag, "tput", vm_port)?;
    let records = a.samples / a.series_per_record;
    let fleet = Fleet::new(a.partitions as u32);
    let ts = crate::fleet::now_ms() - 3_600_000;
    rt.block_on(async {
        let mut pending = Vec::new();
        for r in 0..records {
            let payload = fleet.record(r, a.series_per_record, ts);
            let f = producer.send_result(
                FutureRecord::<(), _>::to(&topic)
                    .partition((r % a.partitions as usize) as i32)
                    .payload(&payload),
            );
            pending.push(f.map_err(|(e, _)| anyhow::anyhow!("{e}"))?);
        }
        for p in pending {
            p.await?.map_err(|(e, _)| anyhow::anyhow!("{e}"))?;
        }
        anyhow::Ok(())
    })?;
    let want = (records * a.series_per_record) as u64;
    let (writer, addr) = start_writer(&a.weir, &topo)?;
    let t0 = Instant::now();
    while acknowledged(addr) < want {
        if t0.elapsed() > Duration::from_secs(600) {
            bail!(
                "writer did not finish in 600 s ({} of {want})",
                acknowledged(addr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let wall = t0.elapsed().as_secs_f64();
    let cpu = cpu_seconds(writer.id())?;
    drop(writer);
    drop(dir);
    println!("== tsdb-writer: Kafka (tansu) -> VictoriaMetrics remote write");
    println!(
        "   workload: {want} samples preloaded as {records} records of {} series x 1 sample (6 labels + name), {FLEET} distinct series, {} partitions",
        a.series_per_record, a.partitions
    );
    println!("   written: {want} samples in {wall:.2} s wall; writer CPU {cpu:.2} s (user+sys of its whole process from start, /proc/PID/stat)");
    println!(
        "   => {:.0} samples per writer CPU-second; {:.0} samples/s wall",
        want as f64 / cpu,
        want as f64 / wall
    );

    if a.no_outage {
        return Ok(());
    }
    // Outage: fixed input rate; the sink goes away for `outage`; time until lag is zero.
    let (topic, dir, topo) = topology(&a, &tag, "outage", vm_port)?;
    let (writer, addr) = start_writer(&a.weir, &topo)?;
    let per_tick = (a.rate / 10 / a.series_per_record).max(1);
    let mut produced = 0u64;
    let mut batch_no = 0usize;
    let start = Instant::now();
    let mut restarted_at = None;
    let mut stopped = false;
    let outage_from = Duration::from_secs(10);
    let mut caught_up = None;
    let mut steady_lag = 0u64;
    let total_run = outage_from + a.outage + Duration::from_secs(120);
    while start.elapsed() < total_run {
        let tick = Instant::now();
        if caught_up.is_none() || start.elapsed() < outage_from + a.outage + Duration::from_secs(5)
        {
            rt.block_on(async {
                for _ in 0..per_tick {
                    let payload =
                        fleet.record(batch_no, a.series_per_record, crate::fleet::now_ms());
                    producer
                        .send(
                            FutureRecord::<(), _>::to(&topic)
                                .partition((batch_no % a.partitions as usize) as i32)
                                .payload(&payload),
                            Duration::from_secs(10),
                        )
                        .await
                        .map_err(|(e, _)| anyhow::anyhow!("{e}"))?;
                    batch_no += 1;
                    produced += a.series_per_record as u64;
                }
                anyhow::Ok(())
            })?;
        }
        if !stopped && start.elapsed() >= outage_from - Duration::from_secs(3) {
            // The steady-state backlog before the outage: samples still inside a batch
            // (max_batch_delay) are never zero while input flows.
            steady_lag = steady_lag.max(produced.saturating_sub(acknowledged(addr)));
        }
        if !stopped && start.elapsed() >= outage_from {
            vm = None; // stops VictoriaMetrics
            stopped = true;
        }
        if stopped && restarted_at.is_none() && start.elapsed() >= outage_from + a.outage {
            vm = Some(start_vm(vm_port, vm_dir.path())?);
            restarted_at = Some(Instant::now());
        }
        if let Some(r) = restarted_at {
            if caught_up.is_none() && produced.saturating_sub(acknowledged(addr)) <= steady_lag {
                caught_up = Some(r.elapsed());
                break;
            }
        }
        let spent = tick.elapsed();
        if spent < Duration::from_millis(100) {
            std::thread::sleep(Duration::from_millis(100) - spent);
        }
    }
    producer.flush(Duration::from_secs(10))?;
    drop(writer);
    drop(dir);
    drop(vm);
    let achieved = produced as f64 / start.elapsed().as_secs_f64();
    println!(
        "== tsdb-writer: lag after a {:?} VictoriaMetrics outage",
        a.outage
    );
    println!(
        "   input: about {} samples/s ({achieved:.0} achieved), produced straight to Kafka; VictoriaMetrics stopped at t=10 s, restarted {:?} later",
        a.rate, a.outage
    );
    match caught_up {
        Some(d) => println!(
            "   => backlog (about {:.0} samples) drained {:.1} s after VictoriaMetrics came back: produced - acknowledged back to its pre-outage level of {steady_lag} samples (the ~1 s batching delay)",
            a.rate as f64 * a.outage.as_secs_f64(),
            d.as_secs_f64()
        ),
        None => println!("   => lag did NOT return to zero within 120 s of the restart"),
    }
    Ok(())
}

fn topology(
    a: &WriterBenchArgs,
    tag: &str,
    what: &str,
    vm_port: u16,
) -> anyhow::Result<(String, tempfile::TempDir, PathBuf)> {
    let topic = format!("bench.writer.{what}.{tag}");
    let dlq = format!("bench.writer.dlq.{tag}");
    let group = format!("bench.writer.{what}.{tag}");
    let yaml = format!(
        "version: 1\nkafka: {{bootstrap_servers: '{}'}}\ntopics:\n  {topic}: {{partitions: {}, compression: lz4}}\n  {dlq}: {{partitions: 1}}\nconsumer_groups:\n  {group}: {{role: tsdb-writer, topics: [{topic}], sink: vm}}\nsinks:\n  vm: {{type: prometheus_remote_write, url: 'http://127.0.0.1:{vm_port}/api/v1/write'}}\ngateway: {{topic: {topic}}}\ntsdb_writer: {{group: {group}, listen: '127.0.0.1:0', dead_letter_topic: {dlq}, retry_max: 2s}}\n",
        a.kafka, a.partitions
    );
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("topology.yaml");
    std::fs::write(&path, yaml)?;
    let out = Command::new(&a.weir)
        .args(["topics", "apply", "-f"])
        .arg(&path)
        .output()?;
    if !out.status.success() {
        bail!("topics apply: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok((topic, dir, path))
}
