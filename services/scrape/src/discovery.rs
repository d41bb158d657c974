//! Where a job's targets come from: `static_configs`, `file_sd_configs` (the files
//! watched, and re-read every `refresh_interval`) and `http_sd_configs` (polled). Each
//! source sends its whole current list of groups when it changes; a source that fails to
//! read keeps its last good list, as Prometheus' discovery does.
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use serde::Deserialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::{Discovery, StaticConfig};

/// A group of targets sharing labels (`__meta_*` among them).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Group {
    #[serde(default)]
    pub targets: Vec<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// One source's current groups: `(job, source index, groups)`.
pub type Update = (String, usize, Vec<Group>);

/// How often watched files are checked for changes (Prometheus gets file events; a
/// stat a second of a few files costs nothing and needs no watcher thread).
const FILE_POLL: Duration = Duration::from_secs(1);

/// The largest http_sd answer read (hundreds of thousands of targets); a server that sends
/// more gets an error, and the job keeps its last good targets, instead of growing memory.
const HTTP_SD_MAX_BODY: usize = 64 << 20;

/// Starts every source of `job`; updates go to `tx` until `stop`.
pub fn spawn(
    job: &str,
    sources: &[Discovery],
    client: reqwest::Client,
    tx: mpsc::Sender<Update>,
    stop: CancellationToken,
) {
    for (i, d) in sources.iter().enumerate() {
        let (job, tx, stop, client) = (job.to_string(), tx.clone(), stop.clone(), client.clone());
        match d.clone() {
            Discovery::Static(groups) => {
                let groups = groups.into_iter().map(of_static).collect();
                tokio::spawn(async move {
                    let _ = tx.send((job, i, groups)).await;
                });
            }
            Discovery::File { files, refresh } => {
                tokio::spawn(watch_files(job, i, files, refresh, tx, stop));
            }
            Discovery::Http { url, refresh } => {
                tokio::spawn(poll_http(job, i, url, refresh, client, tx, stop));
            }
        }
    }
}

fn of_static(s: StaticConfig) -> Group {
    Group {
        targets: s.targets,
        labels: s.labels,
    }
}

/// The files a list of patterns names now, sorted.
fn expand(patterns: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for p in patterns {
        match glob::glob(p) {
            Ok(paths) => out.extend(paths.flatten().map(|p| p.to_string_lossy().into_owned())),
            Err(e) => tracing::warn!(pattern = %p, error = %e, "file_sd: bad pattern"),
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Reads one file_sd file (JSON or YAML by its extension), `__meta_filepath` added.
pub fn read_file(path: &str) -> Result<Vec<Group>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let mut groups: Vec<Group> = if path.ends_with(".json") {
        serde_json::from_str(&text).map_err(|e| format!("{path}: {e}"))?
    } else {
        serde_yaml::from_str::<Option<Vec<Group>>>(&text)
            .map_err(|e| format!("{path}: {e}"))?
            .unwrap_or_default()
    };
    for g in &mut groups {
        g.labels.insert("__meta_filepath".into(), path.to_string());
    }
    Ok(groups)
}

/// Sends a source's groups unless they are what it sent last; false once the manager
/// is gone.
async fn publish(
    tx: &mpsc::Sender<Update>,
    job: &str,
    source: usize,
    sent: &mut Option<Vec<Group>>,
    groups: Vec<Group>,
) -> bool {
    if sent.as_ref() == Some(&groups) {
        return true;
    }
    if tx
        .send((job.to_string(), source, groups.clone()))
        .await
        .is_err()
    {
        return false;
    }
    *sent = Some(groups);
    true
}

type Stamp = Vec<(String, Option<SystemTime>, u64)>;

fn stamp(files: &[String]) -> Stamp {
    files
        .iter()
        .map(|f| {
            let m = std::fs::metadata(f).ok();
            (
                f.clone(),
                m.as_ref().and_then(|m| m.modified().ok()),
                m.map_or(0, |m| m.len()),
            )
        })
        .collect()
}

async fn watch_files(
    job: String,
    source: usize,
    patterns: Vec<String>,
    refresh: Duration,
    tx: mpsc::Sender<Update>,
    stop: CancellationToken,
) {
    let mut last_good: BTreeMap<String, Vec<Group>> = BTreeMap::new();
    let mut seen: Option<Stamp> = None;
    let mut sent: Option<Vec<Group>> = None;
    let mut last_full = tokio::time::Instant::now();
    loop {
        let files = expand(&patterns);
        let now = stamp(&files);
        let due = last_full.elapsed() >= refresh;
        if seen.as_ref() != Some(&now) || due {
            last_full = tokio::time::Instant::now();
            last_good.retain(|f, _| files.contains(f));
            for f in &files {
                match read_file(f) {
                    Ok(g) => {
                        last_good.insert(f.clone(), g);
                    }
                    Err(e) => {
                        metrics::counter!("weir_scrape_discovery_errors_total", "job" => job.clone(), "mechanism" => "file").increment(1);
                        tracing::warn!(job = %job, error = %e, "file_sd: keeping the file's last good targets");
                    }
                }
            }
            seen = Some(now);
            let groups: Vec<Group> = last_good.values().flatten().cloned().collect();
            if !publish(&tx, &job, source, &mut sent, groups).await {
                return;
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(FILE_POLL) => {}
        }
    }
}

async fn poll_http(
    job: String,
    source: usize,
    url: String,
    refresh: Duration,
    client: reqwest::Client,
    tx: mpsc::Sender<Update>,
    stop: CancellationToken,
) {
    let mut sent: Option<Vec<Group>> = None;
    loop {
        match fetch_http(&client, &url, refresh).await {
            Ok(mut groups) => {
                for g in &mut groups {
                    g.labels.insert("__meta_url".into(), url.clone());
                }
                if !publish(&tx, &job, source, &mut sent, groups).await {
                    return;
                }
            }
            Err(e) => {
                metrics::counter!("weir_scrape_discovery_errors_total", "job" => job.clone(), "mechanism" => "http").increment(1);
                tracing::warn!(job = %job, url = %weir_runtime::http::redact_url(&url), error = %e, "http_sd: keeping the last good targets");
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(refresh) => {}
        }
    }
}

/// One http_sd poll: a JSON list of groups, as the Prometheus HTTP SD format says.
async fn fetch_http(
    client: &reqwest::Client,
    url: &str,
    refresh: Duration,
) -> Result<Vec<Group>, String> {
    let resp = client
        .get(url)
        .header(
            "X-Prometheus-Refresh-Interval-Seconds",
            refresh.as_secs().to_string(),
        )
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if !resp.status().is_success() {
        return Err(format!("server returned HTTP status {}", resp.status()));
    }
    let ct = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    if !ct.starts_with("application/json") {
        return Err(format!("unsupported content type {ct:?}"));
    }
    let mut resp = resp;
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| e.to_string())? {
        if body.len() + chunk.len() > HTTP_SD_MAX_BODY {
            return Err(format!(
                "the answer is larger than {HTTP_SD_MAX_BODY} bytes"
            ));
        }
        body.extend_from_slice(&chunk);
    }
    serde_json::from_slice(&body).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_sd_reads_json_and_yaml_with_the_file_path() {
        let dir = tempfile::tempdir().unwrap();
        let j = dir.path().join("a.json");
        std::fs::write(
            &j,
            r#"[{"targets": ["h:1", "h:2"], "labels": {"env": "x"}}]"#,
        )
        .unwrap();
        let y = dir.path().join("b.yml");
        std::fs::write(&y, "- targets: ['h:3']\n").unwrap();
        let g = read_file(j.to_str().unwrap()).unwrap();
        assert_eq!(g[0].targets, vec!["h:1", "h:2"]);
        assert_eq!(g[0].labels["__meta_filepath"], j.to_str().unwrap());
        assert_eq!(
            read_file(y.to_str().unwrap()).unwrap()[0].targets,
            vec!["h:3"]
        );
        std::fs::write(&j, "[{").unwrap();
        assert!(read_file(j.to_str().unwrap()).is_err());
        let pat = format!("{}/*.json", dir.path().display());
        assert_eq!(expand(&[pat]), vec![j.to_string_lossy().into_owned()]);
    }
}
