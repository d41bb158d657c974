//! Noisy neighbour: does one tenant pushing 10x its limit change another tenant's
//! latency?
//!
//! One gateway (the real binary) with two API keys: `noisy`, limited to `--limit`
//! samples/s (burst = one second of it), and `quiet`, whose limit it never reaches.
//! The quiet tenant sends open-loop, `--quiet-rps` requests per second of
//! `--series` samples, and measures each request's latency. Runs alternate: quiet
//! alone, then quiet with the noisy tenant sending open-loop at `--noise` times its
//! limit; `--runs` pairs. Printed per run: quiet p50/p99 and every status it got, the
//! noisy tenant's accepted samples/s against its limit and the share throttled.
use std::ffi::OsStr;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use rdkafka::mocking::MockCluster;

use crate::process::spawn_weir;
use crate::workload::remote_write_bodies;

#[derive(Debug, Args)]
pub struct TenantsBenchArgs {
    /// The weir binary to benchmark (build it with --release).
    #[arg(long, default_value = "target/release/weir")]
    weir: PathBuf,
    /// The noisy tenant's limit, samples per second.
    #[arg(long, default_value_t = 20_000.0)]
    limit: f64,
    /// How many times its limit the noisy tenant sends.
    #[arg(long, default_value_t = 10.0)]
    noise: f64,
    /// Samples per request (one per series), both tenants.
    #[arg(long, default_value_t = 200)]
    series: usize,
    /// The quiet tenant's requests per second.
    #[arg(long, default_value_t = 50.0)]
    quiet_rps: f64,
    /// Seconds per run.
    #[arg(long, default_value_t = 15)]
    seconds: u64,
    /// Pairs of runs (quiet alone, quiet with noise).
    #[arg(long, default_value_t = 3)]
    runs: usize,
}

const QUIET_KEY: &str = "quiet-tenant-bench-key-0001";
const NOISY_KEY: &str = "noisy-tenant-bench-key-0001";

#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    throttled: AtomicU64,
    other: AtomicU64,
}

pub async fn run(a: TenantsBenchArgs) -> anyhow::Result<()> {
    if !a.weir.exists() {
        bail!(
            "{} not found: cargo build --release -p weir",
            a.weir.display()
        );
    }
    let topic = format!("bench.tenants.{}", std::process::id());
    // The broker is librdkafka's mock cluster in this process: the figure is about the
    // gateway, not about a shared broker.
    let mock = MockCluster::new(1).context("starting the mock cluster")?;
    mock.create_topic(&topic, 8, 1).context("mock topic")?;
    let dir = tempfile::tempdir()?;
    let yaml = format!(
        "version: 1
kafka: {{bootstrap_servers: '{b}'}}
topics: {{{topic}: {{partitions: 8, compression: lz4}}}}
gateway:
  listen: 127.0.0.1:0
  topic: {topic}
  validation: {{max_sample_age: 1d}}
  auth:
    enabled: true
    keys:
      - {{tenant: quiet, key: {QUIET_KEY}}}
      - {{tenant: noisy, key: {NOISY_KEY}}}
  tenants:
    defaults: {{samples_per_second: {limit}, burst: {burst}}}
    overrides: {{quiet: {{samples_per_second: 100000000, burst: 100000000}}}}
",
        b = mock.bootstrap_servers(),
        limit = a.limit,
        burst = a.limit.ceil() as u64,
    );
    let path = dir.path().join("topology.yaml");
    std::fs::write(&path, yaml)?;
    let (proc, addr) = spawn_weir(
        &a.weir,
        [OsStr::new("gateway"), OsStr::new("-f"), path.as_os_str()],
        "warn,weir_gateway::server=info",
        "gateway listening",
    )?;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()?;
    crate::bench_gateway::wait_ready(&http, addr, "/readyz").await?;
    let bodies = Arc::new(remote_write_bodies(
        512,
        a.series,
        1,
        50_000,
        crate::fleet::now_ms(),
    ));

    println!("== noisy neighbour: one gateway, librdkafka mock cluster (broker isolated)");
    println!(
        "   noisy tenant limited to {} samples/s (burst {}), sending {}x that open-loop; quiet tenant {} requests/s of {} samples, open-loop; {} s per run, {} pairs, alternating",
        a.limit, a.limit.ceil(), a.noise, a.quiet_rps, a.series, a.seconds, a.runs
    );
    // Warm-up: connections, allocator, the producer's first batches.
    run_once(&a, &http, addr, &bodies, false, Duration::from_secs(3)).await?;
    let (mut alone, mut noisy) = (Vec::new(), Vec::new());
    for i in 0..a.runs {
        for with_noise in [false, true] {
            let r = run_once(
                &a,
                &http,
                addr,
                &bodies,
                with_noise,
                Duration::from_secs(a.seconds),
            )
            .await?;
            println!(
                "   run {} {:<12} quiet: {} requests, p50 {:.2} ms, p99 {:.2} ms, non-204: {}{}",
                i + 1,
                if with_noise { "with noise" } else { "quiet alone" },
                r.quiet_n,
                r.p50,
                r.p99,
                r.quiet_failed,
                match &r.noise {
                    Some((rate, share)) => format!(
                        "; noisy accepted {rate:.0} samples/s ({:.2}x its limit), {:.0}% of its requests throttled (429)",
                        rate / a.limit,
                        share * 100.0
                    ),
                    None => String::new(),
                }
            );
            if r.quiet_failed > 0 {
                bail!("the quiet tenant had {} requests refused", r.quiet_failed);
            }
            if with_noise {
                noisy.push(r.p99)
            } else {
                alone.push(r.p99)
            }
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let spread = |v: &[f64]| (v[0], v[v.len() - 1]);
    let (ma, mn) = (median(&mut alone), median(&mut noisy));
    println!(
        "   => quiet p99 median {ma:.2} ms alone (range {:.2}-{:.2}), {mn:.2} ms with noise (range {:.2}-{:.2}): ratio {:.2}",
        spread(&alone).0, spread(&alone).1, spread(&noisy).0, spread(&noisy).1, mn / ma
    );
    drop(proc);
    Ok(())
}

struct RunResult {
    quiet_n: usize,
    quiet_failed: u64,
    p50: f64,
    p99: f64,
    /// Noisy accepted samples/s and the share of its requests throttled.
    noise: Option<(f64, f64)>,
}

async fn run_once(
    a: &TenantsBenchArgs,
    http: &reqwest::Client,
    addr: SocketAddr,
    bodies: &Arc<Vec<(Vec<u8>, usize)>>,
    with_noise: bool,
    len: Duration,
) -> anyhow::Result<RunResult> {
    let url = format!("http://{addr}/api/v1/write");
    let noisy_tally = Arc::new(Tally::default());
    let noise = if with_noise {
        let rps = a.limit * a.noise / a.series as f64;
        Some(tokio::spawn(open_loop(
            http.clone(),
            url.clone(),
            NOISY_KEY,
            bodies.clone(),
            rps,
            len,
            noisy_tally.clone(),
            None,
        )))
    } else {
        None
    };
    let quiet_tally = Arc::new(Tally::default());
    let lat = Arc::new(std::sync::Mutex::new(Vec::new()));
    open_loop(
        http.clone(),
        url,
        QUIET_KEY,
        bodies.clone(),
        a.quiet_rps,
        len,
        quiet_tally.clone(),
        Some(lat.clone()),
    )
    .await;
    if let Some(n) = noise {
        n.await?;
    }
    let mut lat = lat.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.clone();
    lat.sort_by(f64::total_cmp);
    if lat.is_empty() {
        bail!("no quiet request completed");
    }
    let pct = |p: f64| lat[((lat.len() as f64 - 1.0) * p) as usize] * 1e3;
    let noise = with_noise.then(|| {
        let ok = noisy_tally.ok.load(Ordering::Relaxed) as f64;
        let th = noisy_tally.throttled.load(Ordering::Relaxed) as f64;
        (
            ok * a.series as f64 / len.as_secs_f64(),
            th / (ok + th).max(1.0),
        )
    });
    Ok(RunResult {
        quiet_n: lat.len(),
        quiet_failed: quiet_tally.throttled.load(Ordering::Relaxed)
            + quiet_tally.other.load(Ordering::Relaxed),
        p50: pct(0.5),
        p99: pct(0.99),
        noise,
    })
}

/// Sends `rps` requests per second for `len`, each on its own task (open loop: a slow
/// answer does not slow the sender), and waits for all of them.
#[allow(clippy::too_many_arguments)]
async fn open_loop(
    http: reqwest::Client,
    url: String,
    key: &'static str,
    bodies: Arc<Vec<(Vec<u8>, usize)>>,
    rps: f64,
    len: Duration,
    tally: Arc<Tally>,
    latencies: Option<Arc<std::sync::Mutex<Vec<f64>>>>,
) {
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rps));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = Instant::now();
    let mut tasks = Vec::new();
    let mut i = 0usize;
    while started.elapsed() < len {
        tick.tick().await;
        let body = bodies[i % bodies.len()].0.clone();
        i += 1;
        let (http, url, tally, latencies) =
            (http.clone(), url.clone(), tally.clone(), latencies.clone());
        tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            let r = http
                .post(&url)
                .header("Content-Type", "application/x-protobuf")
                .header("Content-Encoding", "snappy")
                .header("Authorization", format!("Bearer {key}"))
                .body(body)
                .send()
                .await;
            let took = t.elapsed().as_secs_f64();
            match r.map(|r| r.status().as_u16()) {
                Ok(204) => {
                    tally.ok.fetch_add(1, Ordering::Relaxed);
                }
                Ok(429) => {
                    tally.throttled.fetch_add(1, Ordering::Relaxed);
                }
                _ => {
                    tally.other.fetch_add(1, Ordering::Relaxed);
                }
            }
            if let Some(l) = latencies {
                if let Ok(mut l) = l.lock() {
                    l.push(took);
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}
