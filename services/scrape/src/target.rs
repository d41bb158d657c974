//! From a discovered address to a target, as Prometheus' `PopulateLabels` does: the
//! job's defaults as `__`-labels, `relabel_configs`, then every `__` label dropped,
//! `instance` defaulting to the address, and the URL built from `__scheme__`,
//! `__address__`, `__metrics_path__` and `__param_*`.
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use weir_runtime::relabel::{self, Labels};

use crate::config::{parse_duration, Job};

/// A target one job scrapes.
#[derive(Debug, Clone)]
pub struct Target {
    pub job: Arc<Job>,
    /// The labels its series get (no `__` labels), sorted.
    pub labels: Labels,
    /// The labels before relabeling (for `/api/v1/targets`).
    pub discovered: Labels,
    pub url: String,
    pub interval: Duration,
    pub timeout: Duration,
    /// FNV-1a of labels and URL: identity, shard and offset in the interval, the same in
    /// every replica.
    pub hash: u64,
}

/// What became of one discovered address.
pub enum Populated {
    Target(Target),
    /// Dropped by relabeling (or left without an address): its labels before.
    Dropped(Labels),
}

/// FNV-1a, 64 bits: the hash Prometheus gives a target (stable across processes and
/// versions, which a seeded hasher is not).
pub fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in *p {
            h ^= *b as u64;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

fn fmt_duration(d: Duration) -> String {
    let ms = d.as_millis() as u64;
    if !ms.is_multiple_of(1000) {
        format!("{ms}ms")
    } else if !ms.is_multiple_of(60_000) || ms == 0 {
        format!("{}s", ms / 1000)
    } else if !ms.is_multiple_of(3_600_000) {
        format!("{}m", ms / 60_000)
    } else {
        format!("{}h", ms / 3_600_000)
    }
}

/// Builds the target for `address` of a group with `group_labels` (which hold the
/// discovery's `__meta_*` labels).
pub fn populate(
    job: &Arc<Job>,
    address: &str,
    group_labels: &BTreeMap<String, String>,
) -> Result<Populated, String> {
    let mut l: Labels = group_labels
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    relabel::set(&mut l, "__address__", address.to_string());
    let defaults = [
        ("job", job.name.clone()),
        ("__scrape_interval__", fmt_duration(job.interval)),
        ("__scrape_timeout__", fmt_duration(job.timeout)),
        ("__metrics_path__", job.metrics_path.clone()),
        ("__scheme__", job.scheme.clone()),
    ];
    for (k, v) in defaults {
        if !has(&l, k) {
            relabel::set(&mut l, k, v);
        }
    }
    for (k, vs) in &job.params {
        let name = format!("__param_{k}");
        if let (false, Some(v)) = (has(&l, &name), vs.first()) {
            relabel::set(&mut l, &name, v.clone());
        }
    }
    let discovered = l.clone();
    if !relabel::process(&mut l, &job.relabel) {
        return Ok(Populated::Dropped(discovered));
    }
    let address = get(&l, "__address__").to_string();
    if address.is_empty() {
        return Ok(Populated::Dropped(discovered));
    }
    if address.contains('/') {
        return Err(format!("{address:?} is not a valid hostname"));
    }
    // Prometheus 2.42 adds the scheme's port to an address without one (2.43 made that
    // a feature flag); the instance label then has it too.
    let address = match (has_port(&address), get(&l, "__scheme__")) {
        (true, _) => address,
        (false, "https") => format!("{address}:443"),
        (false, _) => format!("{address}:80"),
    };
    let interval = match get(&l, "__scrape_interval__") {
        "" => job.interval,
        s => parse_duration(s).map_err(|e| format!("__scrape_interval__: {e}"))?,
    };
    let timeout = match get(&l, "__scrape_timeout__") {
        "" => job.timeout,
        s => parse_duration(s).map_err(|e| format!("__scrape_timeout__: {e}"))?,
    };
    if interval.is_zero() {
        return Err("scrape interval cannot be 0".into());
    }
    if timeout > interval {
        return Err(format!(
            "scrape timeout cannot be greater than scrape interval ({timeout:?} > {interval:?})"
        ));
    }
    let url = url_of(job, &l, &address);
    if !has(&l, "instance") {
        relabel::set(&mut l, "instance", address.clone());
    }
    l.retain(|(k, _)| !k.starts_with("__"));
    let hash = target_hash(&l, &url);
    Ok(Populated::Target(Target {
        job: job.clone(),
        labels: l,
        discovered,
        url,
        interval,
        timeout,
        hash,
    }))
}

fn target_hash(labels: &Labels, url: &str) -> u64 {
    let mut parts: Vec<&[u8]> = Vec::with_capacity(labels.len() * 2 + 1);
    for (k, v) in labels {
        parts.push(k.as_bytes());
        parts.push(v.as_bytes());
    }
    parts.push(url.as_bytes());
    fnv1a(&parts)
}

fn url_of(job: &Job, l: &Labels, address: &str) -> String {
    let mut params: BTreeMap<String, Vec<String>> = job.params.clone();
    for (k, v) in l {
        if let Some(p) = k.strip_prefix("__param_") {
            let vs = params.entry(p.to_string()).or_default();
            match vs.first_mut() {
                Some(first) => *first = v.clone(),
                None => vs.push(v.clone()),
            }
        }
    }
    let scheme = match get(l, "__scheme__") {
        "" => job.scheme.as_str(),
        s => s,
    };
    let path = match get(l, "__metrics_path__") {
        "" => "/metrics",
        p => p,
    };
    let mut url = format!("{scheme}://{address}{path}");
    let mut sep = if path.contains('?') { '&' } else { '?' };
    for (k, vs) in &params {
        for v in vs {
            url.push(sep);
            sep = '&';
            url.push_str(&encode(k));
            url.push('=');
            url.push_str(&encode(v));
        }
    }
    url
}

/// Query-string escaping as Go's `url.QueryEscape`.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Whether `host:port` (or `[v6]:port`) carries a port.
fn has_port(addr: &str) -> bool {
    let Some((host, port)) = addr.rsplit_once(':') else {
        return false;
    };
    let v6_ok = !host.contains(':') || (host.starts_with('[') && host.ends_with(']'));
    v6_ok && !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit())
}

fn has(l: &Labels, k: &str) -> bool {
    l.binary_search_by(|(n, _)| n.as_str().cmp(k)).is_ok()
}

fn get<'a>(l: &'a Labels, k: &str) -> &'a str {
    match l.binary_search_by(|(n, _)| n.as_str().cmp(k)) {
        Ok(i) => &l[i].1,
        Err(_) => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ScrapeConfig;
    use std::path::Path;

    fn job(y: &str) -> Arc<Job> {
        Arc::new(
            ScrapeConfig::parse(y, Path::new("."))
                .unwrap()
                .jobs
                .remove(0),
        )
    }

    fn target(p: Populated) -> Target {
        match p {
            Populated::Target(t) => t,
            Populated::Dropped(l) => panic!("dropped: {l:?}"),
        }
    }

    #[test]
    fn defaults_instance_and_url() {
        let j = job("scrape_configs: [{job_name: node, params: {module: [a, b]}}]");
        let t = target(populate(&j, "127.0.0.1:9100", &BTreeMap::new()).unwrap());
        assert_eq!(
            t.labels,
            vec![
                ("instance".into(), "127.0.0.1:9100".into()),
                ("job".into(), "node".into())
            ]
        );
        assert_eq!(t.url, "http://127.0.0.1:9100/metrics?module=a&module=b");
        assert_eq!(
            t.discovered
                .iter()
                .find(|(k, _)| k == "__scrape_interval__")
                .unwrap()
                .1,
            "1m"
        );
        let t = target(populate(&j, "example.org", &BTreeMap::new()).unwrap());
        assert_eq!(
            get(&t.labels, "instance"),
            "example.org:80",
            "the default port, as 2.42"
        );
        assert!(has_port("[::1]:9100") && !has_port("[::1]") && !has_port("::1"));
    }

    #[test]
    fn relabeling_sets_url_parts_and_drops() {
        let j = job(
            "scrape_configs:\n- job_name: bb\n  relabel_configs:\n  - {source_labels: [__address__], target_label: __param_target}\n  - {target_label: __address__, replacement: 'prober:9115'}\n  - {target_label: __metrics_path__, replacement: /probe}\n  - {source_labels: [__param_target], regex: 'drop.*', action: drop}\n  - {source_labels: [__param_target], target_label: instance}\n",
        );
        let t = target(populate(&j, "example.org", &BTreeMap::new()).unwrap());
        assert_eq!(t.url, "http://prober:9115/probe?target=example.org");
        assert_eq!(get(&t.labels, "instance"), "example.org");

        assert!(matches!(
            populate(&j, "drop.me", &BTreeMap::new()).unwrap(),
            Populated::Dropped(_)
        ));
    }

    #[test]
    fn the_hash_is_fnv1a() {
        // FNV-1a of the empty input is the offset basis.
        assert_eq!(fnv1a(&[]), 0xcbf2_9ce4_8422_2325);
    }
}
