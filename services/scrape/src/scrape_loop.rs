//! One target's loop: at its offset in the interval, fetch, parse, label, relabel, add
//! the report series (`up`, `scrape_*`) and staleness markers, and write it all through
//! the shared ingest path as one batch, acknowledged by Kafka before the next scrape.
//!
//! Staleness as Prometheus marks it: a series of the previous scrape missing from this
//! one, every series of the previous scrape when this one failed, and every series
//! (report series too) when the target goes away, get a sample whose value is the
//! staleness NaN. Rather than keep each series' labels, the loop keeps the previous
//! body and reads it again for the series that went missing (vmagent does the same):
//! memory is the bodies, not a label map per series.
use std::collections::HashSet;
use std::hash::BuildHasher;
use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::{oneshot, Semaphore};
use weir_contract::model::STALE_NAN_BITS;
use weir_contract::{MetricType, Sample};
use weir_ingest::validate::LabelRef;
use weir_ingest::{ApiError, BatchBuilder, Ingest};
use weir_runtime::backoff::Backoff;
use weir_runtime::relabel::{self, Labels};

use crate::config::Auth;
use crate::exposition::{Format, Line, Parser, ACCEPT};
use crate::target::Target;

/// What every loop of the process shares.
pub struct Shared {
    pub ingest: Ingest,
    /// Replaces the tenant label of every series, when set.
    pub tenant: Option<String>,
    /// `global.external_labels`: added to series that do not have them.
    pub external_labels: Labels,
    /// Caps every job's `body_size_limit` (and stands in where a job has none).
    pub max_body_bytes: u64,
    /// Scrapes fetching at once (parsing and writing happen outside the slot).
    pub slots: Semaphore,
}

/// A target's health as `/api/v1/targets` shows it.
#[derive(Debug, Clone, Default)]
pub struct Status {
    /// "unknown" before the first scrape, then "up" or "down".
    pub health: &'static str,
    pub last_error: String,
    pub last_scrape: Option<SystemTime>,
    pub last_duration: Duration,
    pub last_samples: usize,
}

/// Why a loop ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// The target is no longer discovered: its series get staleness markers.
    Removed,
    /// Another replica scrapes it now, or its job changed: no markers (the series go on).
    Moved,
    /// The process is stopping: no markers, as Prometheus writes none at shutdown.
    Shutdown,
}

/// Why a scrape failed (`up` is 0); `reason` labels the error counter.
#[derive(Debug)]
struct Failure {
    reason: &'static str,
    message: String,
}

fn fail(reason: &'static str, message: impl Into<String>) -> Failure {
    Failure {
        reason,
        message: message.into(),
    }
}

/// The previous successful scrape's body and the series it held (those without
/// timestamps of their own: only those are marked stale, as in Prometheus).
struct Previous {
    body: String,
    format: Format,
    series: HashSet<u64, foldhash::fast::FixedState>,
}

pub struct ScrapeLoop {
    target: Arc<Target>,
    client: reqwest::Client,
    shared: Arc<Shared>,
    status: Arc<Mutex<Status>>,
    prev: Option<Previous>,
    /// Whether report series were written (and so need markers when the target goes).
    reported: bool,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// When the first scrape of a target with `hash` is due: at `hash % interval` past the
/// start of an interval, as Prometheus spreads targets (so every replica agrees, and
/// restarts do not bunch scrapes).
pub fn first_delay(hash: u64, interval: Duration) -> Duration {
    let iv = interval.as_nanos().max(1);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let base = iv - now % iv;
    let offset = hash as u128 % iv;
    let mut next = base + offset;
    if next > iv {
        next -= iv;
    }
    Duration::from_nanos(next as u64)
}

fn series_hasher() -> foldhash::fast::FixedState {
    foldhash::fast::FixedState::with_seed(0x7765_6972_7363_7261)
}

/// Counts of one scrape, for the report series.
#[derive(Default)]
struct Counts {
    scraped: usize,
    post_relabel: usize,
    added: usize,
}

impl ScrapeLoop {
    pub fn new(
        target: Arc<Target>,
        client: reqwest::Client,
        shared: Arc<Shared>,
        status: Arc<Mutex<Status>>,
    ) -> Self {
        Self {
            target,
            client,
            shared,
            status,
            prev: None,
            reported: false,
        }
    }

    pub async fn run(mut self, mut stop: oneshot::Receiver<Stop>) {
        let iv = self.target.interval;
        let start = tokio::time::Instant::now() + first_delay(self.target.hash, iv);
        let mut ticks = tokio::time::interval_at(start, iv);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let why = loop {
            tokio::select! {
                biased;
                why = &mut stop => break why.unwrap_or(Stop::Shutdown),
                _ = ticks.tick() => {}
            }
            self.scrape_once().await;
        };
        if why == Stop::Removed {
            self.write_end_of_run().await;
        }
    }

    async fn scrape_once(&mut self) {
        let started = Instant::now();
        let ts = now_ms();
        let job = self.target.job.name.clone();
        let fetched = {
            let _slot = self.shared.slots.acquire().await;
            self.fetch().await
        };
        let outcome = match fetched {
            Ok((body, format)) => {
                let r = self.write_scrape(&body, format, ts, started).await;
                match r {
                    Ok(series) => {
                        self.prev = Some(Previous {
                            body,
                            format,
                            series,
                        });
                        Ok(())
                    }
                    Err(f) => Err(f),
                }
            }
            Err(f) => Err(f),
        };
        let duration = started.elapsed();
        if outcome.is_ok() {
            self.reported = true;
        }
        if let Err(f) = &outcome {
            metrics::counter!("weir_scrape_errors_total", "job" => job.clone(), "reason" => f.reason)
                .increment(1);
            tracing::debug!(job = %job, url = %self.target.url, error = %f.message, "scrape failed");
            self.write_failed(ts, duration).await;
        }
        metrics::histogram!("weir_scrape_duration_seconds", "job" => job.clone())
            .record(duration.as_secs_f64());
        metrics::counter!("weir_scrape_scrapes_total", "job" => job, "outcome" => if outcome.is_ok() { "up" } else { "down" })
            .increment(1);
        let mut st = self.status.lock().unwrap_or_else(|p| p.into_inner());
        st.health = if outcome.is_ok() { "up" } else { "down" };
        st.last_error = outcome.err().map(|f| f.message).unwrap_or_default();
        st.last_scrape = Some(SystemTime::now());
        st.last_duration = duration;
    }

    /// The body, decompressed and checked for size, and its format.
    async fn fetch(&self) -> Result<(String, Format), Failure> {
        let t = &self.target;
        let mut req = self
            .client
            .get(&t.url)
            .header(reqwest::header::ACCEPT, ACCEPT)
            .header(reqwest::header::ACCEPT_ENCODING, "gzip")
            .header(
                "X-Prometheus-Scrape-Timeout-Seconds",
                format!("{}", t.timeout.as_secs_f64()),
            )
            .timeout(t.timeout);
        match &t.job.auth {
            Auth::None => {}
            Auth::Basic { username, password } => {
                let p = password
                    .read()
                    .map_err(|e| fail("config", format!("cannot read the password file: {e}")))?;
                req = req.basic_auth(username, Some(p));
            }
            Auth::Header { kind, credentials } => {
                let c = credentials.read().map_err(|e| {
                    fail("config", format!("cannot read the credentials file: {e}"))
                })?;
                req = req.header(reqwest::header::AUTHORIZATION, format!("{kind} {c}"));
            }
        }
        let http_err = |e: reqwest::Error| {
            if e.is_timeout() {
                fail(
                    "timeout",
                    format!("Get {:?}: context deadline exceeded", t.url),
                )
            } else {
                fail(
                    "http",
                    format!("Get {:?}: {e}", weir_runtime::http::redact_url(&t.url)),
                )
            }
        };
        let mut resp = req.send().await.map_err(http_err)?;
        if resp.status() != reqwest::StatusCode::OK {
            return Err(fail(
                "http",
                format!("server returned HTTP status {}", resp.status()),
            ));
        }
        let header = |n| {
            resp.headers()
                .get(n)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let format = Format::of_content_type(header(reqwest::header::CONTENT_TYPE).as_deref());
        let gzip = header(reqwest::header::CONTENT_ENCODING).as_deref() == Some("gzip");
        let limit = match t.job.body_size_limit {
            0 => self.shared.max_body_bytes,
            l => l.min(self.shared.max_body_bytes),
        } as usize;
        let too_big = || {
            fail(
                "body_size_limit",
                format!("body size limit exceeded ({limit} bytes)"),
            )
        };
        let mut raw = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(http_err)? {
            if raw.len() + chunk.len() > limit {
                return Err(too_big());
            }
            raw.extend_from_slice(&chunk);
        }
        if gzip {
            let mut out = Vec::with_capacity(raw.len() * 4);
            flate2::read::GzDecoder::new(raw.as_slice())
                .take(limit as u64 + 1)
                .read_to_end(&mut out)
                .map_err(|e| fail("http", format!("gzip: {e}")))?;
            if out.len() > limit {
                return Err(too_big());
            }
            raw = out;
        }
        let body = String::from_utf8(raw)
            .map_err(|e| fail("parse", format!("the body is not UTF-8: {e}")))?;
        Ok((body, format))
    }

    /// Parses and writes a successful fetch with its report series and the markers of
    /// series that went missing. Returns the series it held.
    async fn write_scrape(
        &self,
        body: &str,
        format: Format,
        ts: i64,
        started: Instant,
    ) -> Result<HashSet<u64, foldhash::fast::FixedState>, Failure> {
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
        let deadline = started + self.target.interval;
        loop {
            let res = self.encode_and_write(body, format, ts, started).await;
            match res {
                Ok(series) => return Ok(series),
                Err(Err(f)) => return Err(f),
                Err(Ok(e)) => {
                    let delay = backoff.next_delay();
                    if e.is_retryable() && Instant::now() + delay < deadline {
                        // Until the next scrape is due: then that one's samples matter more.
                        tracing::debug!(job = %self.target.job.name, error = %e, "write refused; retrying");
                        tokio::time::sleep(delay).await;
                        continue;
                    }
                    metrics::counter!("weir_scrape_write_failures_total", "job" => self.target.job.name.clone())
                        .increment(1);
                    tracing::warn!(job = %self.target.job.name, url = %self.target.url, error = %e, "a scrape could not be written; its samples are lost");
                    // The scrape itself worked: the target is up, its samples are not in
                    // Kafka; the counter and the log line above say so.
                    let series = HashSet::with_hasher(series_hasher());
                    return Ok(series);
                }
            }
        }
    }

    /// `Err(Ok)` is a write refused by the ingest path; `Err(Err)` a scrape failure.
    async fn encode_and_write(
        &self,
        body: &str,
        format: Format,
        ts: i64,
        started: Instant,
    ) -> Result<HashSet<u64, foldhash::fast::FixedState>, Result<ApiError, Failure>> {
        let ingest = &self.shared.ingest;
        let reservation = ingest.admit(body.len()).map_err(Ok)?;
        let mut batch = ingest.batch(self.shared.tenant.as_deref(), body.len(), reservation);
        let mut cur = HashSet::with_hasher(series_hasher());
        let counts = self
            .add_body(&mut batch, body, format, ts, Mode::Live(&mut cur))
            .map_err(Err)?;
        let mut counts = counts;
        if let Some(prev) = &self.prev {
            let gone: HashSet<u64, _> = prev.series.difference(&cur).copied().collect();
            if !gone.is_empty() {
                // The previous body parsed once already, with the same rules.
                let _ = self.add_body(&mut batch, &prev.body, prev.format, ts, Mode::Stale(&gone));
            }
            counts.added = cur.difference(&prev.series).count();
        } else {
            counts.added = cur.len();
        }
        self.add_report(&mut batch, ts, 1.0, started.elapsed(), &counts)
            .map_err(Ok)?;
        let written = ingest.write("scrape", batch.finish()).await.map_err(Ok)?;
        // Samples in the bodies (before relabeling), as vmagent's
        // vm_promscrape_scraped_samples counts them.
        metrics::counter!("weir_scrape_samples_scraped_total", "job" => self.target.job.name.clone())
            .increment(counts.scraped as u64);
        self.account(&written);
        Ok(cur)
    }

    fn account(&self, w: &weir_ingest::Written) {
        let job = self.target.job.name.clone();
        metrics::counter!("weir_scrape_samples_total", "job" => job.clone())
            .increment(w.samples as u64);
        if w.rejected > 0 {
            metrics::counter!("weir_scrape_samples_rejected_total", "job" => job.clone())
                .increment(w.rejected as u64);
            tracing::debug!(job = %job, rejected = w.rejected, first = ?w.first_rejection, "samples refused by validation");
        }
        self.status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .last_samples = w.samples;
    }

    /// A failed scrape: `up` 0, and markers for every series of the previous scrape.
    async fn write_failed(&mut self, ts: i64, duration: Duration) {
        let prev = self.prev.take();
        let r = self
            .write_markers(ts, prev.as_ref(), |this, batch| {
                this.add_report(batch, ts, 0.0, duration, &Counts::default())
            })
            .await;
        if let Err(e) = r {
            tracing::warn!(job = %self.target.job.name, error = %e, "cannot write a failed scrape's report");
        }
    }

    /// The target went away: markers for its series and its report series.
    async fn write_end_of_run(&mut self) {
        let prev = self.prev.take();
        let ts = now_ms();
        let reported = self.reported;
        let r = self
            .write_markers(ts, prev.as_ref(), |this, batch| {
                if reported {
                    this.add_report_values(batch, ts, [f64::from_bits(STALE_NAN_BITS); 5])
                } else {
                    Ok(())
                }
            })
            .await;
        if let Err(e) = r {
            tracing::warn!(job = %self.target.job.name, error = %e, "cannot write the staleness markers of a removed target");
        }
    }

    async fn write_markers(
        &mut self,
        ts: i64,
        prev: Option<&Previous>,
        extra: impl Fn(&Self, &mut BatchBuilder<'_>) -> Result<(), ApiError>,
    ) -> Result<(), ApiError> {
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
        for attempt in 0.. {
            let ingest = &self.shared.ingest;
            let size = prev.map_or(0, |p| p.body.len());
            let r = async {
                let reservation = ingest.admit(size)?;
                let mut batch = ingest.batch(self.shared.tenant.as_deref(), size, reservation);
                if let Some(p) = prev {
                    let _ =
                        self.add_body(&mut batch, &p.body, p.format, ts, Mode::Stale(&p.series));
                }
                extra(self, &mut batch)?;
                ingest.write("scrape", batch.finish()).await
            }
            .await;
            match r {
                Ok(w) => {
                    self.account(&w);
                    self.reported = true;
                    return Ok(());
                }
                Err(e) if e.is_retryable() && attempt < 5 => backoff.wait().await,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn add_report(
        &self,
        batch: &mut BatchBuilder<'_>,
        ts: i64,
        up: f64,
        duration: Duration,
        c: &Counts,
    ) -> Result<(), ApiError> {
        self.add_report_values(
            batch,
            ts,
            [
                up,
                duration.as_secs_f64(),
                c.scraped as f64,
                c.post_relabel as f64,
                c.added as f64,
            ],
        )
    }

    fn add_report_values(
        &self,
        batch: &mut BatchBuilder<'_>,
        ts: i64,
        values: [f64; 5],
    ) -> Result<(), ApiError> {
        const NAMES: [&str; 5] = [
            "up",
            "scrape_duration_seconds",
            "scrape_samples_scraped",
            "scrape_samples_post_metric_relabeling",
            "scrape_series_added",
        ];
        for (name, v) in NAMES.iter().zip(values) {
            let mut labels: Vec<LabelRef<'_>> = self
                .target
                .labels
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            add_external(&mut labels, &self.shared.external_labels);
            batch.add(
                name,
                &mut labels,
                &[Sample::new(ts, v)],
                MetricType::Gauge,
                None,
            )?;
        }
        Ok(())
    }

    /// Adds a body's samples to `batch`: live (recording each series in `cur`), or as
    /// staleness markers for the series in the set.
    fn add_body(
        &self,
        batch: &mut BatchBuilder<'_>,
        body: &str,
        format: Format,
        ts: i64,
        mut mode: Mode<'_>,
    ) -> Result<Counts, Failure> {
        let job = &self.target.job;
        let hasher = series_hasher();
        let mut parser = Parser::new(body, format);
        let mut line = Line::default();
        let mut counts = Counts::default();
        let mut seen: HashSet<u64, foldhash::fast::FixedState> =
            HashSet::with_hasher(series_hasher());
        // One allocation for every line's label list (see `recycle`).
        let mut buf: Vec<LabelRef<'static>> = Vec::with_capacity(32);
        let stale = f64::from_bits(STALE_NAN_BITS);
        while parser
            .next_into(&mut line)
            .map_err(|e| fail("parse", e.to_string()))?
        {
            counts.scraped += 1;
            let mut owned: Labels = Vec::new();
            let mut renamed: Vec<String> = Vec::new();
            let mut refs = recycle(std::mem::take(&mut buf));
            'line: {
                // Target labels merged as Prometheus' mutateSampleLabels: with
                // honor_labels the scraped value wins; else the target's, the scraped
                // one kept as exported_<name>.
                for (k, v) in &line.labels {
                    refs.push((k, v.as_ref()));
                }
                merge_target(
                    &mut refs,
                    &mut renamed,
                    &self.target.labels,
                    job.honor_labels,
                );
                let mut name = line.name;
                if !job.metric_relabel.is_empty() {
                    owned.push(("__name__".to_string(), line.name.to_string()));
                    owned.extend(refs.iter().map(|(k, v)| (k.to_string(), v.to_string())));
                    owned.sort_unstable();
                    owned.dedup_by(|a, b| a.0 == b.0);
                    if !relabel::process(&mut owned, &job.metric_relabel) {
                        break 'line;
                    }
                    refs.clear();
                    name = "";
                    for (k, v) in &owned {
                        if k == "__name__" {
                            name = v;
                        } else {
                            refs.push((k, v));
                        }
                    }
                    if name.is_empty() {
                        break 'line;
                    }
                }
                counts.post_relabel += 1;
                check_label_limits(job, &refs).map_err(|m| fail("label_limit", m))?;
                add_external(&mut refs, &self.shared.external_labels);
                refs.sort_unstable_by(|a, b| a.0.cmp(b.0));
                let h = series_hash(&hasher, name, &refs);
                let (ts, v) = match (&mode, line.timestamp) {
                    (Mode::Stale(set), t)
                        if (t.is_none() || !job.honor_timestamps) && set.contains(&h) =>
                    {
                        (ts, stale)
                    }
                    (Mode::Stale(_), _) => break 'line,
                    (Mode::Live(_), Some(t)) if job.honor_timestamps => (t, line.value),
                    (Mode::Live(_), _) => (ts, line.value),
                };
                if !seen.insert(h) {
                    // The same series twice in one body: the first is kept, as
                    // Prometheus' TSDB refuses the second ("duplicate sample").
                    metrics::counter!("weir_scrape_duplicates_total", "job" => job.name.clone())
                        .increment(1);
                    break 'line;
                }
                if let Mode::Live(cur) = &mut mode {
                    if line.timestamp.is_none() || !job.honor_timestamps {
                        cur.insert(h);
                    }
                }
                if job.sample_limit > 0 && counts.post_relabel as u64 > job.sample_limit {
                    return Err(fail("sample_limit", "sample limit exceeded"));
                }
                batch
                    .add(
                        name,
                        &mut refs,
                        &[Sample::new(ts, v)],
                        line.metric_type,
                        line.unit,
                    )
                    .map_err(|e| fail("write", e.message))?;
            }
            buf = recycle(refs);
        }
        Ok(counts)
    }
}

/// An empty vector of another lifetime on the same allocation: `collect` reuses a
/// vector's buffer in place when the element layout is the same, so each line's
/// borrowed label list costs no allocation.
fn recycle<'b>(mut v: Vec<LabelRef<'_>>) -> Vec<LabelRef<'b>> {
    v.clear();
    v.into_iter()
        .map(|_| -> LabelRef<'b> { unreachable!() })
        .collect()
}

/// A series' identity within this process: name and sorted labels.
fn series_hash(hasher: &foldhash::fast::FixedState, name: &str, refs: &[LabelRef<'_>]) -> u64 {
    use std::hash::Hasher;
    let mut s = hasher.build_hasher();
    s.write(name.as_bytes());
    for (k, v) in refs {
        s.write_u8(0xff);
        s.write(k.as_bytes());
        s.write_u8(0xfe);
        s.write(v.as_bytes());
    }
    s.finish()
}

enum Mode<'a> {
    Live(&'a mut HashSet<u64, foldhash::fast::FixedState>),
    Stale(&'a HashSet<u64, foldhash::fast::FixedState>),
}

/// Sets the target's labels on a scraped series (see Prometheus' `mutateSampleLabels`).
fn merge_target<'a>(
    refs: &mut Vec<LabelRef<'a>>,
    renamed: &'a mut Vec<String>,
    target: &'a Labels,
    honor: bool,
) {
    if honor {
        for (k, v) in target {
            if !refs.iter().any(|(n, _)| n == k) {
                refs.push((k, v));
            }
        }
        return;
    }
    // Conflicting scraped labels become exported_<name> (prefixed again while that is
    // taken too); names are built first so the references below stay valid.
    let mut conflicts: Vec<(usize, String)> = Vec::new();
    for (k, _) in target {
        if let Some(i) = refs.iter().position(|(n, v)| n == k && !v.is_empty()) {
            let mut new = format!("exported_{k}");
            while refs.iter().any(|(n, _)| *n == new) || target.iter().any(|(n, _)| *n == new) {
                new.insert_str(0, "exported_");
            }
            conflicts.push((i, new));
        }
    }
    if conflicts.is_empty() {
        for (k, v) in target {
            refs.push((k, v));
        }
        return;
    }
    renamed.extend(conflicts.iter().map(|(_, n)| n.clone()));
    let renamed: &'a [String] = renamed;
    for ((i, _), new) in conflicts.iter().zip(renamed) {
        refs[*i].0 = new;
    }
    for (k, v) in target {
        refs.push((k, v));
    }
}

fn add_external<'a>(refs: &mut Vec<LabelRef<'a>>, external: &'a Labels) {
    for (k, v) in external {
        if !refs.iter().any(|(n, _)| n == k) {
            refs.push((k, v));
        }
    }
}

fn check_label_limits(job: &crate::config::Job, refs: &[LabelRef<'_>]) -> Result<(), String> {
    // +1: Prometheus counts __name__ among the labels.
    if job.label_limit > 0 && refs.len() as u64 + 1 > job.label_limit {
        return Err(format!(
            "label_limit exceeded (metric has {} labels, limit: {})",
            refs.len() + 1,
            job.label_limit
        ));
    }
    for (k, v) in refs {
        if job.label_name_length_limit > 0 && k.len() as u64 > job.label_name_length_limit {
            return Err(format!(
                "label_name_length_limit exceeded (label name {k:?}, limit: {})",
                job.label_name_length_limit
            ));
        }
        if job.label_value_length_limit > 0 && v.len() as u64 > job.label_value_length_limit {
            return Err(format!(
                "label_value_length_limit exceeded (label {k:?}, limit: {})",
                job.label_value_length_limit
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn own(p: &[(&str, &str)]) -> Labels {
        p.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn conflicting_labels_become_exported_as_in_prometheus() {
        let target = own(&[("instance", "h:1"), ("job", "node")]);
        let mut refs: Vec<LabelRef<'_>> = vec![("job", "app"), ("exported_job", "x")];
        let mut renamed = Vec::new();
        merge_target(&mut refs, &mut renamed, &target, false);
        refs.sort();
        assert_eq!(
            refs,
            vec![
                ("exported_exported_job", "app"),
                ("exported_job", "x"),
                ("instance", "h:1"),
                ("job", "node")
            ]
        );
        let mut refs: Vec<LabelRef<'_>> = vec![("job", "app")];
        let mut renamed = Vec::new();
        merge_target(&mut refs, &mut renamed, &target, true);
        refs.sort();
        assert_eq!(refs, vec![("instance", "h:1"), ("job", "app")]);
    }

    #[test]
    fn first_scrapes_spread_over_the_interval() {
        let iv = Duration::from_secs(10);
        for h in [0u64, 1, 12345, u64::MAX] {
            assert!(first_delay(h, iv) <= iv);
        }
    }
}
