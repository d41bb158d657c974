//! Scrape benchmark: samples scraped per CPU-second by `weir scrape` (into Kafka) and by
//! vmagent (into a VictoriaMetrics of its own) scraping the same targets at the same
//! time, with the same Prometheus configuration.
//!
//! The targets are served from this process on loopback (one HTTP server; each target is
//! a path, named by `__metrics_path__` in a file_sd file, as both scrapers read it): `N`
//! targets of `S` series each, five labels a series, text format 0.0.4. CPU time is
//! each scraper's own (/proc/PID/stat, all threads), over a window after every target
//! was scraped; samples are what each says it scraped in the bodies
//! (`weir_scrape_samples_scraped_total`, vmagent's `vm_promscrape_scraped_samples_sum`).
use std::ffi::OsStr;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;

use crate::proc_stat::cpu_seconds;
use crate::process::{apply_topology, free_port, spawn_ready, spawn_weir, start_vm, Proc};

#[derive(Debug, Args)]
pub struct ScrapeBenchArgs {
    #[arg(long, default_value = "target/release/weir")]
    weir: PathBuf,
    #[arg(long, default_value = "127.0.0.1:9092")]
    kafka: String,
    /// Targets served.
    #[arg(long, default_value_t = 1000)]
    targets: usize,
    /// Series per target.
    #[arg(long, default_value_t = 1000)]
    series: usize,
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    interval: Duration,
    /// The measured window, after a warm-up of two intervals.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    window: Duration,
    /// Runs (one line each; the summary gives median and spread).
    #[arg(long, default_value_t = 1)]
    runs: usize,
}

/// One exposition every target serves (the targets' `instance` labels tell their series
/// apart, so the bodies need not differ).
fn body(series: usize) -> String {
    let mut s = String::with_capacity(series * 100);
    s.push_str("# HELP bench_requests_total Requests.\n# TYPE bench_requests_total counter\n");
    for i in 0..series {
        s.push_str(&format!(
            "bench_requests_total{{method=\"get\",code=\"{}\",handler=\"/api/v{}/item\",zone=\"z{}\",series=\"{i}\"}} {}\n",
            200 + i % 5,
            i % 7,
            i % 3,
            i * 17
        ));
    }
    s
}

async fn serve(series: usize) -> anyhow::Result<SocketAddr> {
    use axum::routing::get;
    let body = Arc::new(body(series));
    let app = axum::Router::new().route(
        "/t/{i}",
        get(move || {
            let b = body.clone();
            async move {
                (
                    [("content-type", "text/plain; version=0.0.4; charset=utf-8")],
                    b.as_str().to_owned(),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(addr)
}

struct Setup {
    _dir: tempfile::TempDir,
    config: PathBuf,
    topology: PathBuf,
}

fn setup(a: &ScrapeBenchArgs, weir: &std::path::Path, target: SocketAddr) -> anyhow::Result<Setup> {
    let dir = tempfile::tempdir()?;
    let groups: Vec<serde_json::Value> = (0..a.targets)
        .map(|i| serde_json::json!({"targets": [target.to_string()], "labels": {"__metrics_path__": format!("/t/{i}")}}))
        .collect();
    let sd = dir.path().join("targets.json");
    std::fs::write(&sd, serde_json::to_vec(&groups)?)?;
    let iv = format!("{}s", a.interval.as_secs().max(1));
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global: {{scrape_interval: {iv}, scrape_timeout: {iv}}}\nscrape_configs:\n  - job_name: bench\n    file_sd_configs: [{{files: ['{}']}}]\n",
            sd.display()
        ),
    )?;
    let raw = format!("bench.scrape.{}", std::process::id());
    let yaml = format!(
        "version: 1\nkafka: {{bootstrap_servers: '{}'}}\ntopics:\n  {raw}: {{partitions: 8, compression: lz4}}\ngateway: {{topic: {raw}}}\nscrape: {{listen: '127.0.0.1:0', topic: {raw}, config_file: '{}', limits: {{max_concurrent_scrapes: 64}}}}\n",
        a.kafka,
        config.display()
    );
    let topology = apply_topology(weir, dir.path(), &yaml)?;
    Ok(Setup {
        _dir: dir,
        config,
        topology,
    })
}

/// The sum of the values of `/metrics` lines at `url` starting with `prefix`.
fn metric_sum(url: &str, prefix: &str) -> f64 {
    reqwest::blocking::get(url)
        .and_then(|r| r.text())
        .map(|t| {
            t.lines()
                .filter(|l| l.starts_with(prefix))
                .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
                .sum()
        })
        .unwrap_or(0.0)
}

struct Scraper {
    name: &'static str,
    proc: Proc,
    metrics_url: String,
    samples_prefix: &'static str,
}

impl Scraper {
    fn samples(&self) -> f64 {
        metric_sum(&self.metrics_url, self.samples_prefix)
    }
}

fn one_run(a: &ScrapeBenchArgs, setup: &Setup) -> anyhow::Result<Vec<(String, f64, f64)>> {
    let weir_args = [
        OsStr::new("scrape"),
        OsStr::new("-f"),
        setup.topology.as_os_str(),
    ];
    let (weir_proc, weir_addr) = spawn_weir(
        &a.weir,
        weir_args,
        "warn,weir_scrape::service=info",
        "scrape ops and /api/v1/targets listening",
    )?;
    let vm_port = free_port()?;
    let vm_dir = tempfile::tempdir()?;
    let _vm = start_vm(vm_port, vm_dir.path())?;
    let agent_port = free_port()?;
    let agent_dir = tempfile::tempdir()?;
    let agent = spawn_ready(
        "vmagent",
        &[
            format!("-httpListenAddr=127.0.0.1:{agent_port}"),
            format!("-promscrape.config={}", setup.config.display()),
            format!("-remoteWrite.url=http://127.0.0.1:{vm_port}/api/v1/write"),
            format!("-remoteWrite.tmpDataPath={}", agent_dir.path().display()),
            "-loggerLevel=ERROR".into(),
        ],
        &format!("http://127.0.0.1:{agent_port}/health"),
    )?;
    let scrapers = [
        Scraper {
            name: "weir scrape -> Kafka (tansu)",
            proc: weir_proc,
            metrics_url: format!("http://{weir_addr}/metrics"),
            samples_prefix: "weir_scrape_samples_scraped_total",
        },
        Scraper {
            name: "vmagent -> VictoriaMetrics",
            proc: agent,
            metrics_url: format!("http://127.0.0.1:{agent_port}/metrics"),
            samples_prefix: "vm_promscrape_scraped_samples_sum",
        },
    ];
    // Warm-up: every target scraped at least once by both.
    let full = (a.targets * a.series) as f64;
    let deadline = Instant::now() + a.interval * 6 + Duration::from_secs(60);
    while scrapers.iter().any(|s| s.samples() < full) {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the scrapers did not scrape every target within {:?}",
            a.interval * 6
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    std::thread::sleep(a.interval);
    let start: Vec<(f64, f64)> = scrapers
        .iter()
        .map(|s| Ok((cpu_seconds(s.proc.id())?, s.samples())))
        .collect::<anyhow::Result<_>>()?;
    let mut last = Instant::now();
    let began = Instant::now();
    while began.elapsed() < a.window {
        std::thread::sleep(Duration::from_secs(1));
        if last.elapsed() >= Duration::from_secs(10) {
            eprintln!(
                "  measuring: {:.0}/{:.0} s",
                began.elapsed().as_secs_f64(),
                a.window.as_secs_f64()
            );
            last = Instant::now();
        }
    }
    let mut out = Vec::new();
    for (s, (cpu0, n0)) in scrapers.iter().zip(start) {
        let cpu = cpu_seconds(s.proc.id())? - cpu0;
        let n = s.samples() - n0;
        out.push((s.name.to_string(), n, cpu));
    }
    Ok(out)
}

/// Serves the targets on this runtime; the measuring (blocking HTTP) runs beside it.
pub async fn run(a: ScrapeBenchArgs) -> anyhow::Result<()> {
    let target = serve(a.series).await.context("serving the targets")?;
    tokio::task::spawn_blocking(move || measure(a, target)).await?
}

fn measure(a: ScrapeBenchArgs, target: SocketAddr) -> anyhow::Result<()> {
    let setup = setup(&a, &a.weir, target)?;
    println!(
        "scrape benchmark: {} targets x {} series (text 0.0.4, 5 labels a series) every {:?}, served on {target} by this process; both scrapers at once, one file_sd configuration; window {:?} after a warm-up; CPU from /proc/PID/stat",
        a.targets, a.series, a.interval, a.window
    );
    let mut ratios = Vec::new();
    for run in 1..=a.runs {
        let r = one_run(&a, &setup)?;
        let per: Vec<f64> = r.iter().map(|(_, n, cpu)| n / cpu.max(1e-9)).collect();
        for ((name, n, cpu), p) in r.iter().zip(&per) {
            println!("run {run}: {name:<30} {n:>12.0} samples  {cpu:>7.2} CPU-s  {p:>12.0} samples per CPU-second");
        }
        let ratio = per[0] / per[1].max(1e-9);
        println!("run {run}: weir scrape / vmagent = {ratio:.2}x");
        ratios.push(ratio);
    }
    ratios.sort_by(|a, b| a.total_cmp(b));
    if ratios.len() > 1 {
        println!(
            "median weir/vmagent {:.2}x (min {:.2}x, max {:.2}x) over {} runs",
            ratios[ratios.len() / 2],
            ratios[0],
            ratios[ratios.len() - 1],
            ratios.len()
        );
    }
    Ok(())
}
