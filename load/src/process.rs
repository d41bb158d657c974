//! Child processes the benchmarks run: weir services and a VictoriaMetrics of their own.
use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// A child process, stopped with SIGTERM and reaped when dropped.
pub struct Proc(pub Child);

impl Proc {
    pub fn id(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
    }
}

pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Starts `weir --log-format json ARGS...` and waits for its `listening` log line, whose
/// `addr` field is the bound address. WARN and ERROR lines are passed on to stderr.
pub fn spawn_weir<I, S>(
    weir: &Path,
    args: I,
    rust_log: &str,
    listening: &'static str,
) -> anyhow::Result<(Proc, SocketAddr)>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut child = Command::new(weir)
        .args(["--log-format", "json"])
        .args(args)
        .env("RUST_LOG", rust_log)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", weir.display()))?;
    let stderr = child.stderr.take().context("stderr")?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
            if v["message"] == listening {
                let addr = v["addr"]
                    .as_str()
                    .and_then(|a| a.parse::<SocketAddr>().ok());
                if let (Some(tx), Some(addr)) = (tx.take(), addr) {
                    let _ = tx.send(addr);
                }
            } else if v["level"] == "WARN" || v["level"] == "ERROR" {
                eprintln!("[weir] {line}");
            }
        }
    });
    let proc = Proc(child);
    let addr = rx
        .recv_timeout(Duration::from_secs(30))
        .with_context(|| format!("weir did not log {listening:?}"))?;
    Ok((proc, addr))
}

/// Debian's VictoriaMetrics on `port`, data in `dir`, as the local stack runs it.
pub fn start_vm(port: u16, dir: &Path) -> anyhow::Result<Proc> {
    spawn_ready(
        "victoria-metrics",
        &[
            format!("-httpListenAddr=127.0.0.1:{port}"),
            format!("-storageDataPath={}", dir.display()),
            "-retentionPeriod=100y".into(),
            "-dedup.minScrapeInterval=1ms".into(),
            "-search.latencyOffset=0s".into(),
            "-loggerLevel=ERROR".into(),
        ],
        &format!("http://127.0.0.1:{port}/health"),
    )
}

/// Starts `program ARGS` (installed by scripts/stack.sh), output discarded, and waits up
/// to a minute until `ready_url` answers 2xx.
pub fn spawn_ready(program: &str, args: &[String], ready_url: &str) -> anyhow::Result<Proc> {
    let child = Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {program} (installed by scripts/stack.sh)"))?;
    let proc = Proc(child);
    let deadline = Instant::now() + Duration::from_secs(60);
    while reqwest::blocking::get(ready_url)
        .map(|r| !r.status().is_success())
        .unwrap_or(true)
    {
        if Instant::now() > deadline {
            bail!("{program} did not become ready at {ready_url}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(proc)
}

/// Writes a benchmark's topology to `dir` and creates its topics with `weir topics apply`.
pub fn apply_topology(weir: &Path, dir: &Path, yaml: &str) -> anyhow::Result<std::path::PathBuf> {
    let topo = dir.join("topology.yaml");
    std::fs::write(&topo, yaml)?;
    let st = Command::new(weir)
        .args([
            OsStr::new("topics"),
            OsStr::new("apply"),
            OsStr::new("-f"),
            topo.as_os_str(),
        ])
        .status()?;
    if !st.success() {
        bail!("weir topics apply failed");
    }
    Ok(topo)
}

/// The value of the first line of a service's `/metrics` at `addr` that starts with
/// `prefix` (name and labels as rendered), or 0.
pub fn scrape(addr: std::net::SocketAddr, prefix: &str) -> f64 {
    reqwest::blocking::get(format!("http://{addr}/metrics"))
        .and_then(|r| r.text())
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix(prefix).and_then(|v| v.trim().parse().ok()))
        })
        .unwrap_or(0.0)
}

/// Deletes a benchmark's own topics once it is done: the local broker keeps every record
/// in one store that only grows. Best effort; what fails is reported, not fatal.
///
/// Only when the broker holds no other topic: tansu 0.6 (sqlite) deletes *every* topic on
/// any DeleteTopics request (checked: deleting one topic took two unrelated ones with it),
/// so on a broker that also serves the demo or a test run, the topics are left for
/// `scripts/stack.sh reset`. (A topic created between the listing and the delete is lost
/// all the same; nothing on the client side can prevent that.)
pub fn delete_topics(kafka: &str, topics: &[String]) {
    use rdkafka::admin::{AdminClient, AdminOptions};
    use rdkafka::client::DefaultClientContext;
    let result = (|| -> anyhow::Result<()> {
        let admin: AdminClient<DefaultClientContext> = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", kafka)
            .create()?;
        let others: Vec<String> = admin
            .inner()
            .fetch_metadata(None, Duration::from_secs(10))?
            .topics()
            .iter()
            .map(|t| t.name().to_string())
            // Earlier benchmarks' leftovers go too (a concurrent benchmark's would).
            .filter(|n| !topics.contains(n) && !n.starts_with("__") && !n.starts_with("bench."))
            .collect();
        if !others.is_empty() {
            eprintln!(
                "not deleting the benchmark's topics: the broker holds {} other topic(s) (e.g. {}), and tansu deletes every topic on a delete; scripts/stack.sh reset reclaims the space",
                others.len(),
                others[0]
            );
            return Ok(());
        }
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        for r in rt.block_on(admin.delete_topics(&names, &AdminOptions::new()))? {
            match r {
                // tansu deletes every topic for the first name, then answers this for
                // the rest; either way the topic is gone.
                Err((_, rdkafka::types::RDKafkaErrorCode::UnknownTopicOrPartition)) | Ok(_) => {}
                Err((topic, e)) => eprintln!("deleting topic {topic}: {e}"),
            }
        }
        Ok(())
    })();
    if let Err(e) = result {
        eprintln!("deleting the benchmark's topics: {e}");
    }
}
