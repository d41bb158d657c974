//! The scrape manager: holds each job's discovered groups, turns them into targets,
//! keeps one loop per target this replica owns, and follows discovery, shard
//! assignment and configuration reloads by starting and stopping loops (only a target
//! that is no longer discovered gets staleness markers).
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use weir_runtime::config::TlsClientOptions;
use weir_runtime::relabel::Labels;

use crate::config::{Job, ScrapeConfig};
use crate::discovery::{self, Group, Update};
use crate::scrape_loop::{ScrapeLoop, Shared, Status, Stop};
use crate::shard::Ownership;
use crate::target::{populate, Populated, Target};

struct Running {
    target: Arc<Target>,
    status: Arc<Mutex<Status>>,
    stop: oneshot::Sender<Stop>,
    task: JoinHandle<()>,
}

struct JobState {
    job: Arc<Job>,
    client: reqwest::Client,
    /// Each discovery source's current groups.
    sources: BTreeMap<usize, Vec<Group>>,
    stop_discovery: CancellationToken,
}

/// What `/api/v1/targets` shows: a snapshot taken at every change.
#[derive(Default)]
pub struct View {
    pub active: Vec<(Arc<Target>, Arc<Mutex<Status>>)>,
    pub dropped: Vec<Labels>,
    /// Discovered here but scraped by another replica.
    pub elsewhere: usize,
}

pub struct Manager {
    shared: Arc<Shared>,
    jobs: BTreeMap<String, JobState>,
    running: HashMap<u64, Running>,
    ownership: watch::Receiver<Ownership>,
    updates_tx: mpsc::Sender<Update>,
    updates: mpsc::Receiver<Update>,
    pub view: Arc<RwLock<View>>,
}

fn client_for(job: &Job) -> anyhow::Result<reqwest::Client> {
    let tls = TlsClientOptions {
        ca_file: job.tls.ca_file.clone(),
        cert_file: job.tls.cert_file.clone(),
        key_file: job.tls.key_file.clone(),
        insecure_skip_verify: job.tls.insecure_skip_verify,
    };
    let redirects = if job.follow_redirects {
        reqwest::redirect::Policy::limited(10)
    } else {
        reqwest::redirect::Policy::none()
    };
    weir_runtime::http::client_builder(&tls, &job.name)
        .map_err(|e| anyhow::anyhow!("scrape job {:?}: tls_config: {e}", job.name))?
        .redirect(redirects)
        .user_agent(concat!("weir-scrape/", env!("CARGO_PKG_VERSION")))
        .pool_idle_timeout(job.interval * 2 + Duration::from_secs(5))
        .build()
        .map_err(|e| anyhow::anyhow!("scrape job {:?}: HTTP client: {e}", job.name))
}

impl Manager {
    pub fn new(shared: Arc<Shared>, ownership: watch::Receiver<Ownership>) -> Self {
        let (updates_tx, updates) = mpsc::channel(64);
        Self {
            shared,
            jobs: BTreeMap::new(),
            running: HashMap::new(),
            ownership,
            updates_tx,
            updates,
            view: Arc::new(RwLock::new(View::default())),
        }
    }

    /// Applies a (new) configuration: jobs that are gone stop, new ones start their
    /// discovery, changed ones start again. Nothing is touched when it fails.
    pub fn apply(&mut self, config: &ScrapeConfig) -> anyhow::Result<()> {
        let mut clients = BTreeMap::new();
        for j in &config.jobs {
            clients.insert(j.name.clone(), client_for(j)?);
        }
        let wanted: BTreeMap<&str, &Job> =
            config.jobs.iter().map(|j| (j.name.as_str(), j)).collect();
        // A changed job keeps its discovered groups until its new discovery reports, so
        // its targets are not taken for gone (and marked stale) in between.
        let mut carried: BTreeMap<String, BTreeMap<usize, Vec<Group>>> = BTreeMap::new();
        self.jobs.retain(|name, st| {
            let keep = wanted
                .get(name.as_str())
                .is_some_and(|j| j.fingerprint == st.job.fingerprint);
            if !keep {
                st.stop_discovery.cancel();
                carried.insert(name.clone(), std::mem::take(&mut st.sources));
            }
            keep
        });
        for j in &config.jobs {
            if self.jobs.contains_key(&j.name) {
                continue;
            }
            let stop = CancellationToken::new();
            let client = clients.remove(&j.name).expect("built above for every job");
            discovery::spawn(
                &j.name,
                &j.discovery,
                client.clone(),
                self.updates_tx.clone(),
                stop.clone(),
            );
            self.jobs.insert(
                j.name.clone(),
                JobState {
                    job: Arc::new(j.clone()),
                    client,
                    sources: carried.remove(&j.name).unwrap_or_default(),
                    stop_discovery: stop,
                },
            );
        }
        self.reconcile();
        Ok(())
    }

    /// Follows discovery and shard assignment until `stop`; `reload` asks for the
    /// configuration to be read again (SIGHUP).
    pub async fn run(
        &mut self,
        stop: CancellationToken,
        mut reload: mpsc::Receiver<()>,
        load: impl Fn() -> anyhow::Result<ScrapeConfig>,
    ) {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                Some((job, source, groups)) = self.updates.recv() => {
                    if let Some(st) = self.jobs.get_mut(&job) {
                        st.sources.insert(source, groups);
                        self.reconcile();
                    }
                }
                Ok(()) = self.ownership.changed() => self.reconcile(),
                Some(()) = reload.recv() => match load().and_then(|c| self.apply(&c)) {
                    Ok(()) => {
                        metrics::counter!("weir_scrape_reloads_total", "outcome" => "ok").increment(1);
                        tracing::info!(jobs = self.jobs.len(), "scrape configuration reloaded");
                    }
                    Err(e) => {
                        metrics::counter!("weir_scrape_reloads_total", "outcome" => "failed").increment(1);
                        tracing::error!(error = %format!("{e:#}"), "reload failed; the running configuration stays");
                    }
                },
                _ = tick.tick() => self.publish_gauges(),
            }
        }
        for (_, st) in std::mem::take(&mut self.jobs) {
            st.stop_discovery.cancel();
        }
        let running: Vec<Running> = self.running.drain().map(|(_, r)| r).collect();
        for r in running {
            let _ = r.stop.send(Stop::Shutdown);
            let _ = r.task.await;
        }
    }

    /// Starts and stops loops so that exactly the owned, discovered targets run.
    fn reconcile(&mut self) {
        let ownership = self.ownership.borrow().clone();
        let mut desired: HashMap<u64, Arc<Target>> = HashMap::new();
        let mut discovered: std::collections::HashSet<u64> = Default::default();
        let mut dropped = Vec::new();
        for st in self.jobs.values() {
            for groups in st.sources.values() {
                for g in groups {
                    for addr in &g.targets {
                        match populate(&st.job, addr, &g.labels) {
                            Ok(Populated::Target(t)) => {
                                discovered.insert(t.hash);
                                if ownership.owns(t.hash) {
                                    desired.entry(t.hash).or_insert_with(|| Arc::new(t));
                                }
                            }
                            Ok(Populated::Dropped(l)) => dropped.push(l),
                            Err(e) => {
                                tracing::warn!(job = %st.job.name, target = %addr, error = %e, "target refused");
                            }
                        }
                    }
                }
            }
        }
        let current: Vec<u64> = self.running.keys().copied().collect();
        for h in current {
            let same = desired
                .get(&h)
                .is_some_and(|t| Arc::ptr_eq(&t.job, &self.running[&h].target.job));
            if same {
                continue;
            }
            if let Some(r) = self.running.remove(&h) {
                let why = if discovered.contains(&h) {
                    Stop::Moved
                } else {
                    Stop::Removed
                };
                let _ = r.stop.send(why);
                // The loop writes its markers on its own; nothing waits for it here.
                drop(r.task);
            }
        }
        for (h, t) in desired {
            if self.running.contains_key(&h) {
                continue;
            }
            let Some(st) = self.jobs.get(&t.job.name) else {
                continue;
            };
            let status = Arc::new(Mutex::new(Status {
                health: "unknown",
                ..Status::default()
            }));
            let (tx, rx) = oneshot::channel();
            let lp = ScrapeLoop::new(
                t.clone(),
                st.client.clone(),
                self.shared.clone(),
                status.clone(),
            );
            let task = tokio::spawn(lp.run(rx));
            self.running.insert(
                h,
                Running {
                    target: t,
                    status,
                    stop: tx,
                    task,
                },
            );
        }
        let elsewhere = discovered.len().saturating_sub(self.running.len());
        let mut view = self.view.write().unwrap_or_else(|p| p.into_inner());
        view.active = self
            .running
            .values()
            .map(|r| (r.target.clone(), r.status.clone()))
            .collect();
        view.active
            .sort_by(|a, b| (&a.0.job.name, &a.0.url).cmp(&(&b.0.job.name, &b.0.url)));
        view.dropped = dropped;
        view.elsewhere = elsewhere;
        drop(view);
        metrics::gauge!("weir_scrape_shards_owned").set(ownership.owned_count() as f64);
        self.publish_gauges();
    }

    fn publish_gauges(&self) {
        let mut by: BTreeMap<(&str, &str), usize> = BTreeMap::new();
        for st in self.jobs.values() {
            for h in ["up", "down", "unknown"] {
                by.insert((st.job.name.as_str(), h), 0);
            }
        }
        for r in self.running.values() {
            let h = r.status.lock().unwrap_or_else(|p| p.into_inner()).health;
            *by.entry((r.target.job.name.as_str(), h)).or_default() += 1;
        }
        for ((job, health), n) in by {
            metrics::gauge!("weir_scrape_targets", "job" => job.to_string(), "health" => health)
                .set(n as f64);
        }
        let v = self.view.read().unwrap_or_else(|p| p.into_inner());
        metrics::gauge!("weir_scrape_targets_elsewhere").set(v.elsewhere as f64);
        metrics::gauge!("weir_scrape_targets_dropped").set(v.dropped.len() as f64);
    }

    pub fn is_scraping(&self) -> bool {
        !self.ownership.borrow().is_waiting()
    }
}

fn rfc3339(t: Option<SystemTime>) -> String {
    // Prometheus shows "0001-01-01T00:00:00Z" before the first scrape.
    match t {
        Some(t) => humantime::format_rfc3339_millis(t).to_string(),
        None => "0001-01-01T00:00:00Z".into(),
    }
}

fn labels_json(l: &Labels) -> serde_json::Value {
    serde_json::Value::Object(
        l.iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect(),
    )
}

/// `/api/v1/targets` in Prometheus' shape (`?state=active|dropped|any`).
pub fn targets_json(view: &View, state: Option<&str>) -> serde_json::Value {
    let active = || {
        view.active
            .iter()
            .map(|(t, s)| {
                let s = s.lock().unwrap_or_else(|p| p.into_inner()).clone();
                serde_json::json!({
                    "discoveredLabels": labels_json(&t.discovered),
                    "labels": labels_json(&t.labels),
                    "scrapePool": t.job.name,
                    "scrapeUrl": weir_runtime::http::redact_url(&t.url),
                    "globalUrl": weir_runtime::http::redact_url(&t.url),
                    "lastError": s.last_error,
                    "lastScrape": rfc3339(s.last_scrape),
                    "lastScrapeDuration": s.last_duration.as_secs_f64(),
                    "lastSamples": s.last_samples,
                    "health": s.health,
                    "scrapeInterval": format!("{:?}", t.interval),
                    "scrapeTimeout": format!("{:?}", t.timeout),
                })
            })
            .collect::<Vec<_>>()
    };
    let dropped = || {
        view.dropped
            .iter()
            .map(|l| serde_json::json!({"discoveredLabels": labels_json(l)}))
            .collect::<Vec<_>>()
    };
    let (a, d) = match state {
        Some("active") => (active(), Vec::new()),
        Some("dropped") => (Vec::new(), dropped()),
        _ => (active(), dropped()),
    };
    serde_json::json!({"status": "success", "data": {"activeTargets": a, "droppedTargets": d}})
}
