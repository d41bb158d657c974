//! Gateway CPU cost for Prometheus remote write into Kafka.
//!
//! The gateway runs as its own process (the real `weir gateway` binary); its CPU time is
//! read from /proc before and after the measured requests, so the figure is samples per
//! CPU-second of the gateway alone — decode, validate, key, partition, encode, produce —
//! whatever the load generator and the broker cost. In `mock` mode the broker is
//! librdkafka's mock cluster inside this process; in `tansu` mode it is the local stack.
use std::ffi::OsStr;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::{Message, Offset, TopicPartitionList};

use crate::proc_stat::cpu_seconds;
use crate::process::{free_port, spawn_weir, Proc};
use crate::workload::{bodies, Wire};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// librdkafka's in-process mock cluster: isolates the gateway from broker cost.
    Mock,
    /// The local tansu broker (scripts/stack.sh start).
    Tansu,
    /// Mock and tansu.
    Both,
    /// The peer: vmagent (Debian's victoria-metrics package) receiving the same remote
    /// write and forwarding it to the local VictoriaMetrics.
    Vmagent,
    /// Mock, tansu and vmagent in one session, for ratios.
    All,
    /// The TLS cost: the mock cluster with plain HTTP/1.1, HTTPS over HTTP/1.1 and
    /// HTTPS over HTTP/2 (ALPN), one after another in one session.
    Tls,
    /// The protocols: the same workload as remote write 1.0, remote write 2.0 and OTLP
    /// into the mock cluster, one after another in one session.
    Protocols,
    /// Scaling with clients: mock, tansu and vmagent at each `--clients` concurrency, one
    /// session, with a summary table at the end.
    Clients,
}

/// How the load generator reaches the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    Plain,
    TlsHttp1,
    TlsHttp2,
}

#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// The weir binary to benchmark (build it with --release).
    #[arg(long, default_value = "target/release/weir")]
    weir: PathBuf,
    #[arg(long, value_enum, default_value = "both")]
    mode: Mode,
    /// Measured requests (10% more are sent first as warm-up).
    #[arg(long, default_value_t = 1000)]
    requests: usize,
    #[arg(long, default_value_t = 500)]
    series_per_request: usize,
    #[arg(long, default_value_t = 1)]
    samples_per_series: usize,
    /// Distinct series the requests walk over.
    #[arg(long, default_value_t = 100_000)]
    fleet: usize,
    #[arg(long, default_value_t = 8)]
    partitions: i32,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    #[arg(long, default_value = "127.0.0.1:9092")]
    tansu: String,
    /// The concurrencies `--mode clients` runs at.
    #[arg(long, value_delimiter = ',', default_value = "1,8,32,128")]
    clients: Vec<usize>,
    /// A round-trip time the mock cluster's broker adds to every request (mock mode): a
    /// broker that acknowledges late, without its CPU on this machine.
    #[arg(long, default_value_t = 0)]
    broker_rtt_ms: u64,
    /// A librdkafka property for the gateway's producer (`key=value`, repeatable): the
    /// topology's `kafka.producer`, to compare settings without rebuilding.
    #[arg(long = "producer")]
    producer: Vec<String>,
}

/// One run's figures, for the summary of `--mode clients`.
struct Figures {
    per_cpu_s: f64,
    per_wall_s: f64,
    p50_ms: f64,
    p99_ms: f64,
}

pub async fn run(a: BenchArgs) -> anyhow::Result<()> {
    if !a.weir.exists() {
        bail!(
            "{} not found: cargo build --release -p weir",
            a.weir.display()
        );
    }
    if a.mode == Mode::Clients {
        return clients(&a).await;
    }
    let modes = match a.mode {
        Mode::Both => vec![
            (Mode::Mock, Transport::Plain, Wire::Rw1),
            (Mode::Tansu, Transport::Plain, Wire::Rw1),
        ],
        Mode::All => vec![
            (Mode::Mock, Transport::Plain, Wire::Rw1),
            (Mode::Tansu, Transport::Plain, Wire::Rw1),
            (Mode::Vmagent, Transport::Plain, Wire::Rw1),
        ],
        Mode::Tls => vec![
            (Mode::Mock, Transport::Plain, Wire::Rw1),
            (Mode::Mock, Transport::TlsHttp1, Wire::Rw1),
            (Mode::Mock, Transport::TlsHttp2, Wire::Rw1),
        ],
        Mode::Protocols => vec![
            (Mode::Mock, Transport::Plain, Wire::Rw1),
            (Mode::Mock, Transport::Plain, Wire::Rw2),
            (Mode::Mock, Transport::Plain, Wire::Otlp),
        ],
        m => vec![(m, Transport::Plain, Wire::Rw1)],
    };
    let certs = tempfile::tempdir()?;
    let tls = if modes.iter().any(|(_, t, _)| *t != Transport::Plain) {
        Some(crate::certs::server_certificate(certs.path())?)
    } else {
        None
    };
    for (m, t, w) in modes {
        bench(&a, m, t, w, tls.as_ref()).await?;
    }
    Ok(())
}

/// `--mode clients`: every receiver at every concurrency, then the table.
async fn clients(a: &BenchArgs) -> anyhow::Result<()> {
    let mut rows = Vec::new();
    for &c in &a.clients {
        let a = BenchArgs {
            concurrency: c,
            ..a.clone()
        };
        for m in [Mode::Mock, Mode::Tansu, Mode::Vmagent] {
            let f = bench(&a, m, Transport::Plain, Wire::Rw1, None).await?;
            rows.push((c, m, f));
        }
    }
    println!("== summary: samples per receiver CPU-second (samples/s wall; p50 / p99 ms) by clients in flight");
    println!(
        "| clients | weir -> mock{} | weir -> tansu | vmagent | weir/vmagent (mock, tansu) |",
        if a.broker_rtt_ms > 0 {
            format!(" (+{} ms RTT)", a.broker_rtt_ms)
        } else {
            String::new()
        }
    );
    println!("|---|---|---|---|---|");
    for &c in &a.clients {
        let get = |m| rows.iter().find(|r| r.0 == c && r.1 == m).map(|r| &r.2);
        let (Some(mk), Some(ts), Some(vm)) =
            (get(Mode::Mock), get(Mode::Tansu), get(Mode::Vmagent))
        else {
            continue;
        };
        let cell = |f: &Figures| {
            format!(
                "{:.0} k ({:.0} k/s; {:.1} / {:.1})",
                f.per_cpu_s / 1e3,
                f.per_wall_s / 1e3,
                f.p50_ms,
                f.p99_ms
            )
        };
        println!(
            "| {c} | {} | {} | {} | {:.2}x, {:.2}x |",
            cell(mk),
            cell(ts),
            cell(vm),
            mk.per_cpu_s / vm.per_cpu_s,
            ts.per_cpu_s / vm.per_cpu_s
        );
    }
    Ok(())
}

/// The process receiving the requests, and what must live as long as it.
struct Receiver {
    proc: Proc,
    addr: SocketAddr,
    _dir: Option<tempfile::TempDir>,
}

fn start_gateway(
    weir: &std::path::Path,
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    dir: &std::path::Path,
    extra: &str,
    producer: &[String],
) -> anyhow::Result<Receiver> {
    let mut props = String::new();
    for kv in producer {
        let (k, v) = kv
            .split_once('=')
            .with_context(|| format!("--producer {kv:?}: not key=value"))?;
        props.push_str(&format!("    '{k}': '{v}'\n"));
    }
    if !props.is_empty() {
        props.insert_str(0, "  producer:\n");
    }
    let yaml = format!(
        "version: 1\nkafka:\n  bootstrap_servers: '{bootstrap}'\n{props}topics:\n  {topic}: {{partitions: {partitions}, compression: lz4}}\ngateway:\n  listen: 127.0.0.1:0\n  topic: {topic}\n  limits: {{max_body_bytes: 64MiB, max_decompressed_bytes: 256MiB, max_inflight_bytes: 1GiB}}\n  validation: {{max_sample_age: 1d}}\n{extra}"
    );
    let path = dir.join("topology.yaml");
    std::fs::write(&path, yaml)?;
    let args = [OsStr::new("gateway"), OsStr::new("-f"), path.as_os_str()];
    let (proc, addr) = spawn_weir(
        weir,
        args,
        "warn,weir_gateway::server=info",
        "gateway listening",
    )?;
    Ok(Receiver {
        proc,
        addr,
        _dir: None,
    })
}

/// vmagent on a free loopback port, forwarding to the stack's VictoriaMetrics.
fn start_vmagent() -> anyhow::Result<Receiver> {
    let port = free_port()?;
    let dir = tempfile::tempdir()?;
    let child = Command::new("vmagent")
        .arg(format!("-httpListenAddr=127.0.0.1:{port}"))
        .arg("-remoteWrite.url=http://127.0.0.1:8428/api/v1/write")
        .arg(format!("-remoteWrite.tmpDataPath={}", dir.path().display()))
        .arg("-loggerLevel=ERROR")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting vmagent (Debian package victoria-metrics)")?;
    Ok(Receiver {
        proc: Proc(child),
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        _dir: Some(dir),
    })
}

pub(crate) async fn wait_ready(
    http: &reqwest::Client,
    addr: SocketAddr,
    path: &str,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok(r) = http.get(format!("http://{addr}{path}")).send().await {
            if r.status().is_success() {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("gateway not ready within 60s")
}

async fn bench(
    a: &BenchArgs,
    mode: Mode,
    transport: Transport,
    wire: Wire,
    tls: Option<&crate::certs::ServerCert>,
) -> anyhow::Result<Figures> {
    let topic = format!(
        "bench.raw.{}.{}",
        std::process::id(),
        crate::fleet::now_ms()
    );
    // The mock cluster lives in this process, so its CPU is not the gateway's.
    let mock;
    let bootstrap = match mode {
        Mode::Mock => {
            mock = MockCluster::new(1).context("starting the mock cluster")?;
            mock.create_topic(&topic, a.partitions, 1)
                .context("mock topic")?;
            if a.broker_rtt_ms > 0 {
                mock.broker_round_trip_time(1, Duration::from_millis(a.broker_rtt_ms))
                    .context("mock broker RTT")?;
            }
            mock.bootstrap_servers()
        }
        Mode::Tansu => {
            let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
                .set("bootstrap.servers", &a.tansu)
                .create()?;
            let t = NewTopic::new(&topic, a.partitions, TopicReplication::Fixed(1));
            admin.create_topics(&[t], &AdminOptions::new()).await?;
            a.tansu.clone()
        }
        _ => String::new(),
    };
    let dir = tempfile::tempdir()?;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(a.concurrency)
        .build()?;
    // With TLS the ops endpoints get a plain listener of their own (ready checks).
    let (extra, ops) = match (transport, tls) {
        (Transport::Plain, _) | (_, None) => (String::new(), None),
        (_, Some(c)) => {
            let ops = free_port()?;
            (
                format!(
                    "  ops_listen: 127.0.0.1:{ops}\n  tls: {{cert_file: '{}', key_file: '{}'}}\n",
                    c.cert.display(),
                    c.key.display()
                ),
                Some(ops),
            )
        }
    };
    let gw = if mode == Mode::Vmagent {
        let p = start_vmagent()?;
        wait_ready(&http, p.addr, "/health").await?;
        p
    } else {
        let p = start_gateway(
            &a.weir,
            &bootstrap,
            &topic,
            a.partitions,
            dir.path(),
            &extra,
            &a.producer,
        )?;
        let ready = ops.map_or(p.addr, |port| SocketAddr::from(([127, 0, 0, 1], port)));
        wait_ready(&http, ready, "/readyz").await?;
        p
    };
    let (http, scheme) = match (transport, tls) {
        (Transport::Plain, _) | (_, None) => (http, "http"),
        (t, Some(c)) => {
            let ca = reqwest::Certificate::from_pem(&std::fs::read(&c.ca)?)?;
            let b = reqwest::Client::builder()
                .pool_max_idle_per_host(a.concurrency)
                .tls_certs_only([ca]);
            let b = if t == Transport::TlsHttp1 {
                b.http1_only()
            } else {
                b
            };
            (b.build()?, "https")
        }
    };

    let warmup = (a.requests / 10).max(1);
    let bodies = bodies(
        wire,
        warmup + a.requests,
        a.series_per_request,
        a.samples_per_series,
        a.fleet,
        crate::fleet::now_ms(),
    );
    let host = if scheme == "https" {
        format!("localhost:{}", gw.addr.port())
    } else {
        gw.addr.to_string()
    };
    let (path, content_type, encoding) = wire.request();
    let url = format!("{scheme}://{host}{path}");
    let rw_bytes: usize = bodies[warmup..].iter().map(|(b, _)| b.len()).sum();

    let send = (content_type, encoding);
    send_all(&http, &url, send, &bodies[..warmup], a.concurrency).await?;
    let cpu0 = cpu_seconds(gw.proc.id())?;
    let t0 = Instant::now();
    let (ok_samples, mut lat) =
        send_all(&http, &url, send, &bodies[warmup..], a.concurrency).await?;
    let wall = t0.elapsed().as_secs_f64();
    let cpu = cpu_seconds(gw.proc.id())? - cpu0;
    lat.sort_by(f64::total_cmp);
    let pct = |p: f64| lat[((lat.len() as f64 - 1.0) * p) as usize] * 1e3;

    let label = match (mode, transport) {
        (Mode::Mock, Transport::TlsHttp1) => {
            "weir gateway over HTTPS (HTTP/1.1) -> Kafka, librdkafka mock cluster (broker isolated)"
        }
        (Mode::Mock, Transport::TlsHttp2) => {
            "weir gateway over HTTPS (HTTP/2, ALPN) -> Kafka, librdkafka mock cluster (broker isolated)"
        }
        (Mode::Mock, _) if wire == Wire::Rw2 => {
            "weir gateway, remote write 2.0 -> Kafka, librdkafka mock cluster (broker isolated)"
        }
        (Mode::Mock, _) if wire == Wire::Otlp => {
            "weir gateway, OTLP/HTTP protobuf + gzip -> Kafka, librdkafka mock cluster (broker isolated)"
        }
        (Mode::Mock, _) if a.broker_rtt_ms > 0 => {
            "weir gateway -> Kafka, librdkafka mock cluster (broker isolated) answering after the added RTT"
        }
        (Mode::Mock, _) => "weir gateway -> Kafka, librdkafka mock cluster (broker isolated)",
        (Mode::Tansu, _) => "weir gateway -> Kafka, tansu on loopback (end to end)",
        _ => "peer: vmagent -> VictoriaMetrics remote write (same requests)",
    };
    println!("== remote write: {label}");
    println!(
        "   workload: {} requests x {} series x {} sample(s), 7 labels + name, {} distinct series, {} partitions, {} in flight (+{} warm-up requests)",
        a.requests, a.series_per_request, a.samples_per_series, a.fleet, a.partitions, a.concurrency, warmup
    );
    println!(
        "   accepted: {ok_samples} samples in {wall:.2} s wall; receiver CPU {cpu:.2} s (user+sys of its process, /proc/PID/stat)"
    );
    println!(
        "   => {:.0} samples per receiver CPU-second; {:.0} samples/s wall",
        ok_samples as f64 / cpu,
        ok_samples as f64 / wall
    );
    println!(
        "   request latency: p50 {:.1} ms, p99 {:.1} ms",
        pct(0.5),
        pct(0.99)
    );
    let figures = Figures {
        per_cpu_s: ok_samples as f64 / cpu,
        per_wall_s: ok_samples as f64 / wall,
        p50_ms: pct(0.5),
        p99_ms: pct(0.99),
    };
    if mode == Mode::Vmagent {
        return Ok(figures);
    }
    let total_samples: usize = bodies.iter().map(|(_, n)| n).sum();
    let (avro, lz4, kafka_samples, records) =
        topic_bytes(&bootstrap, &topic, a.partitions, total_samples)?;
    drop(gw);
    println!(
        "   bytes/sample: {} {:.2}; metrics.raw Avro {:.2} uncompressed, {:.2} after lz4 over 1 MiB per-partition batches ({records} records, {kafka_samples} samples read back)",
        wire.name(),
        rw_bytes as f64 / (a.requests * a.series_per_request * a.samples_per_series) as f64,
        avro as f64 / kafka_samples as f64,
        lz4 as f64 / kafka_samples as f64,
    );
    Ok(figures)
}

async fn send_all(
    http: &reqwest::Client,
    url: &str,
    (content_type, encoding): (&str, &str),
    bodies: &[(Vec<u8>, usize)],
    concurrency: usize,
) -> anyhow::Result<(usize, Vec<f64>)> {
    use futures::StreamExt;
    let results: Vec<anyhow::Result<(usize, f64)>> = futures::stream::iter(bodies.iter())
        .map(|(body, n)| {
            let req = http
                .post(url)
                .header("Content-Type", content_type)
                .header("Content-Encoding", encoding)
                .body(body.clone());
            let n = *n;
            async move {
                let t = Instant::now();
                let r = req.send().await?;
                let status = r.status();
                if !status.is_success() {
                    bail!(
                        "gateway answered {status}: {}",
                        r.text().await.unwrap_or_default()
                    );
                }
                // OTLP answers 200 also when it refused part: count only what it took.
                let body = r.bytes().await?;
                let elapsed = t.elapsed().as_secs_f64();
                if !body.is_empty() {
                    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceResponse;
                    if let Ok(resp) = <ExportMetricsServiceResponse as prost::Message>::decode(&body[..]) {
                        if let Some(p) = resp.partial_success.filter(|p| p.rejected_data_points > 0) {
                            bail!("the gateway refused {} points: {}", p.rejected_data_points, p.error_message);
                        }
                    }
                }
                Ok((n, elapsed))
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let mut ok = 0;
    let mut lat = Vec::with_capacity(results.len());
    for r in results {
        let (n, l) = r?;
        ok += n;
        lat.push(l);
    }
    Ok((ok, lat))
}

/// Reads the topic back: Avro bytes, and what lz4 makes of them in batches of up to
/// 1 MiB per partition (the producer's batch.size), as Kafka would store them compressed.
fn topic_bytes(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    expect_samples: usize,
) -> anyhow::Result<(usize, usize, usize, usize)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "weir-bench-reader")
        .set("enable.auto.commit", "false")
        .create()?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    let decoder = weir_contract::avro::Decoder::new();
    let mut per_partition: Vec<Vec<Vec<u8>>> = vec![Vec::new(); partitions as usize];
    let mut samples = 0;
    let mut last = Instant::now();
    while samples < expect_samples && last.elapsed() < Duration::from_secs(10) {
        if let Some(m) = consumer.poll(Duration::from_millis(200)) {
            let m = m?;
            let payload = m.payload().unwrap_or_default();
            samples += decoder
                .decode(payload)
                .map(|b| b.sample_count())
                .unwrap_or(0);
            per_partition[m.partition() as usize].push(payload.to_vec());
            last = Instant::now();
        }
    }
    let (mut avro, mut lz4, mut records) = (0, 0, 0);
    for recs in per_partition {
        let mut batch = Vec::new();
        for r in recs {
            avro += r.len();
            records += 1;
            if batch.len() + r.len() > 1 << 20 && !batch.is_empty() {
                lz4 += compress(&batch)?;
                batch.clear();
            }
            batch.extend_from_slice(&r);
        }
        if !batch.is_empty() {
            lz4 += compress(&batch)?;
        }
    }
    Ok((avro, lz4, samples, records))
}

fn compress(data: &[u8]) -> anyhow::Result<usize> {
    use std::io::Write;
    let mut enc = lz4_flex::frame::FrameEncoder::new(Vec::new());
    enc.write_all(data)?;
    Ok(enc.finish()?.len())
}
