//! What the scrape tests run beside `weir scrape`: targets served from the test, and a
//! Prometheus and a node_exporter of the test's own (Debian's binaries) on free ports.
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::{free_port, http, now_ms};

/// One request a target got: path (with query), when, and the client's User-Agent and
/// Authorization headers.
#[derive(Debug, Clone)]
pub struct Hit {
    pub path: String,
    pub at_ms: i64,
    pub user_agent: String,
    pub authorization: String,
}

/// What a target answers to a path (with its query): `None` is a 404.
pub type Handler = dyn Fn(&str) -> Option<Response> + Send + Sync;

pub struct Response {
    pub content_type: &'static str,
    pub body: String,
    /// Sent gzip-compressed (`Content-Encoding: gzip`).
    pub gzip: bool,
}

/// An HTTP server of the test's own serving expositions (one connection per request).
pub struct TargetServer {
    pub addr: SocketAddr,
    hits: Arc<Mutex<Vec<Hit>>>,
}

impl TargetServer {
    pub fn start(handler: Arc<Handler>) -> Self {
        Self::start_requiring(handler, None)
    }

    /// One that answers 401 to a request whose `Authorization` header is not `required`.
    pub fn start_requiring(handler: Arc<Handler>, required: Option<String>) -> Self {
        let required = Arc::new(required);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(Mutex::new(Vec::new()));
        let h = hits.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (handler, hits, required) = (handler.clone(), h.clone(), required.clone());
                std::thread::spawn(move || serve(stream, &*handler, &hits, required.as_deref()));
            }
        });
        Self { addr, hits }
    }

    pub fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }

    /// `host:port`, as a scrape configuration names it.
    pub fn target(&self) -> String {
        self.addr.to_string()
    }
}

fn serve(
    stream: TcpStream,
    handler: &Handler,
    hits: &Mutex<Vec<Hit>>,
    required_authorization: Option<&str>,
) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut reader = BufReader::new(match stream.try_clone() {
        Ok(s) => s,
        Err(_) => return,
    });
    let mut request = String::new();
    if reader.read_line(&mut request).is_err() {
        return;
    }
    let (mut user_agent, mut authorization) = (String::new(), String::new());
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" || line == "\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            match name.to_ascii_lowercase().as_str() {
                "user-agent" => user_agent = value.trim().to_string(),
                "authorization" => authorization = value.trim().to_string(),
                _ => {}
            }
        }
    }
    let path = request.split_whitespace().nth(1).unwrap_or("/").to_string();
    hits.lock().unwrap().push(Hit {
        path: path.clone(),
        at_ms: now_ms(),
        user_agent,
        authorization: authorization.clone(),
    });
    let mut stream = stream;
    if required_authorization.is_some_and(|r| r != authorization) {
        let _ = stream.write_all(
            b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        );
        return;
    }
    let resp = match handler(&path) {
        Some(r) => {
            let (body, encoding) = if r.gzip {
                let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                e.write_all(r.body.as_bytes()).unwrap();
                (e.finish().unwrap(), "Content-Encoding: gzip\r\n")
            } else {
                (r.body.into_bytes(), "")
            };
            let mut r = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: {}\r\n{encoding}Content-Length: {}\r\nConnection: close\r\n\r\n",
                r.content_type,
                body.len()
            )
            .into_bytes();
            r.extend_from_slice(&body);
            r
        }
        None => {
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec()
        }
    };
    let _ = stream.write_all(&resp);
}

pub const TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Debian's prometheus-node-exporter on a free loopback port, with the collectors whose
/// series do not come and go while a test runs.
pub struct NodeExporter {
    child: Child,
    pub port: u16,
}

impl NodeExporter {
    pub fn start() -> Self {
        let port = free_port();
        let child = Command::new("prometheus-node-exporter")
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .args([
                "--collector.disable-defaults",
                "--collector.cpu",
                "--collector.meminfo",
                "--collector.loadavg",
                "--collector.uname",
                "--collector.filesystem",
                "--collector.stat",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect(
                "start prometheus-node-exporter (Debian package, installed by scripts/stack.sh)",
            );
        let me = Self { child, port };
        wait_http(&format!("http://127.0.0.1:{port}/metrics"), "node_exporter");
        me
    }

    pub fn target(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for NodeExporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_http(url: &str, what: &str) {
    let client = http().build().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while client
        .get(url)
        .send()
        .map(|r| !r.status().is_success())
        .unwrap_or(true)
    {
        assert!(Instant::now() < deadline, "{what} did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A Prometheus (Debian's 2.42) of the test's own, scraping with `config`.
pub struct Prometheus {
    child: Option<Child>,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    pub fn start(config: &Path) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--web.enable-lifecycle")
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus (Debian package)");
        let me = Self {
            child: Some(child),
            port,
            _dir: dir,
        };
        wait_http(&me.url("/-/ready"), "prometheus");
        me
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Series key → samples of `selector` in the `window` before `at_ms` (a range
    /// vector: staleness markers are not in it).
    pub fn samples(
        &self,
        selector: &str,
        at_ms: i64,
        window: Duration,
    ) -> BTreeMap<String, Vec<(i64, f64)>> {
        let q = format!("{selector}[{}ms]", window.as_millis());
        let t = format!("{:.3}", at_ms as f64 / 1000.0);
        let v: serde_json::Value = http()
            .build()
            .unwrap()
            .get(self.url("/api/v1/query"))
            .query(&[("query", q.as_str()), ("time", t.as_str())])
            .send()
            .and_then(|r| r.json())
            .expect("prometheus query");
        assert_eq!(v["status"], "success", "{v}");
        let mut out = BTreeMap::new();
        for s in v["data"]["result"].as_array().unwrap() {
            let key = key_of(s["metric"].as_object().unwrap());
            let points = s["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| {
                    let ts = (p[0].as_f64().unwrap() * 1000.0).round() as i64;
                    let v: f64 = p[1].as_str().unwrap().parse().unwrap();
                    (ts, v)
                })
                .collect();
            out.insert(key, points);
        }
        out
    }

    /// Reloads the configuration (`/-/reload`).
    pub fn reload(&self) {
        let r = http()
            .build()
            .unwrap()
            .post(self.url("/-/reload"))
            .send()
            .unwrap();
        assert!(r.status().is_success(), "prometheus reload: {}", r.status());
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The series key of a label map with `__name__` (as VictoriaMetrics' and Prometheus'
/// APIs return series).
pub fn key_of(m: &serde_json::Map<String, serde_json::Value>) -> String {
    let name = m["__name__"].as_str().unwrap();
    let mut labels: Vec<weir_contract::Label> = m
        .iter()
        .filter(|(k, _)| *k != "__name__")
        .map(|(k, v)| weir_contract::Label::new(k.clone(), v.as_str().unwrap()))
        .collect();
    labels.sort();
    weir_contract::SeriesKey::new(name, &labels).0
}

/// A file written atomically (a rename), as file_sd users are told to, so a watcher
/// never reads half of it.
pub fn write_atomic(path: &Path, text: &str) {
    let tmp: PathBuf = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}
