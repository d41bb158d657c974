//! The `scrape_configs:` users already have, in Prometheus' own format (its
//! `prometheus.yml`, or the same YAML inline in the topology). Options weir does not
//! support are refused at load, naming the job and the option, so a configuration never
//! silently scrapes less than it says.
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use weir_runtime::relabel::{compile_all, RelabelSpec, Rule};

/// A configuration that cannot be used; the message names the job and option.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

fn err<T>(m: impl Into<String>) -> Result<T, ConfigError> {
    Err(ConfigError(m.into()))
}

/// Options of a scrape job weir reads.
const SUPPORTED: &[&str] = &[
    "job_name",
    "scrape_interval",
    "scrape_timeout",
    "metrics_path",
    "params",
    "scheme",
    "honor_labels",
    "honor_timestamps",
    "sample_limit",
    "label_limit",
    "label_name_length_limit",
    "label_value_length_limit",
    "body_size_limit",
    "basic_auth",
    "authorization",
    "bearer_token",
    "bearer_token_file",
    "tls_config",
    "follow_redirects",
    "enable_http2",
    "static_configs",
    "file_sd_configs",
    "http_sd_configs",
    "relabel_configs",
    "metric_relabel_configs",
];

/// Top-level sections of a `prometheus.yml` that are not about scraping: skipped (said
/// in the log), so the file Prometheus runs with loads as it is.
const OTHER_SECTIONS: &[&str] = &[
    "rule_files",
    "alerting",
    "remote_write",
    "remote_read",
    "storage",
    "tracing",
    "scrape_config_files",
];

/// A Prometheus duration: `1y2w3d4h5m6s7ms` (any part may be left out), or `0`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("not a valid duration string: {s:?}");
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err(bad());
    }
    const UNITS: [(&str, u64); 7] = [
        ("y", 365 * 86_400_000),
        ("w", 7 * 86_400_000),
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
        ("ms", 1),
    ];
    let mut rest = s;
    let mut ms: u64 = 0;
    let mut next_unit = 0;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        if digits == 0 {
            return Err(bad());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        // "ms" before "m", so the longer unit is tried first.
        let (i, len) = UNITS
            .iter()
            .enumerate()
            .skip(next_unit)
            .filter(|(_, (u, _))| rest.starts_with(u))
            .map(|(i, (u, _))| (i, u.len()))
            .max_by_key(|(_, len)| *len)
            .ok_or_else(bad)?;
        if rest[len..].starts_with(|c: char| c.is_ascii_alphabetic()) {
            return Err(bad());
        }
        ms = ms
            .checked_add(n.checked_mul(UNITS[i].1).ok_or_else(bad)?)
            .ok_or_else(bad)?;
        rest = &rest[len..];
        next_unit = i + 1;
    }
    Ok(Duration::from_millis(ms))
}

/// A Prometheus size (`units.Base2Bytes`): `512`, `100KB`, `10MB`, `1GB` (powers of
/// 1024), also written `KiB`, `MiB`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let bad = || format!("not a valid size: {s:?}");
    let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let n: u64 = s[..digits].parse().map_err(|_| bad())?;
    let mult = match &s[digits..] {
        "" | "B" => 1,
        "KB" | "KiB" | "K" => 1 << 10,
        "MB" | "MiB" | "M" => 1 << 20,
        "GB" | "GiB" | "G" => 1 << 30,
        "TB" | "TiB" | "T" => 1 << 40,
        _ => return Err(bad()),
    };
    n.checked_mul(mult).ok_or_else(bad)
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct GlobalSpec {
    scrape_interval: Option<String>,
    scrape_timeout: Option<String>,
    #[serde(default)]
    external_labels: BTreeMap<String, String>,
    body_size_limit: Option<String>,
    sample_limit: Option<u64>,
    label_limit: Option<u64>,
    label_name_length_limit: Option<u64>,
    label_value_length_limit: Option<u64>,
    // Read and not used: rules are the alerter's (`weir alerter`).
    #[allow(dead_code)]
    evaluation_interval: Option<String>,
    #[allow(dead_code)]
    query_log_file: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuthSpec {
    pub username: String,
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub password_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthorizationSpec {
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub credentials: Option<String>,
    #[serde(default)]
    pub credentials_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct TlsSpec {
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    #[serde(default)]
    pub insecure_skip_verify: bool,
    #[serde(flatten)]
    other: BTreeMap<String, serde_yaml::Value>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticConfig {
    #[serde(default)]
    pub targets: Vec<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSdSpec {
    pub files: Vec<String>,
    #[serde(default)]
    pub refresh_interval: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct HttpSdSpec {
    pub url: String,
    #[serde(default)]
    pub refresh_interval: Option<String>,
    #[serde(flatten)]
    other: BTreeMap<String, serde_yaml::Value>,
}

#[derive(Debug, Clone, Deserialize)]
struct JobSpec {
    // job_name is read from the mapping first, to name the job in every error.
    scrape_interval: Option<String>,
    scrape_timeout: Option<String>,
    metrics_path: Option<String>,
    #[serde(default)]
    params: BTreeMap<String, Vec<String>>,
    scheme: Option<String>,
    #[serde(default)]
    honor_labels: bool,
    honor_timestamps: Option<bool>,
    sample_limit: Option<u64>,
    label_limit: Option<u64>,
    label_name_length_limit: Option<u64>,
    label_value_length_limit: Option<u64>,
    body_size_limit: Option<String>,
    basic_auth: Option<BasicAuthSpec>,
    authorization: Option<AuthorizationSpec>,
    bearer_token: Option<String>,
    bearer_token_file: Option<PathBuf>,
    #[serde(default)]
    tls_config: TlsSpec,
    follow_redirects: Option<bool>,
    #[allow(dead_code)]
    enable_http2: Option<bool>,
    #[serde(default)]
    static_configs: Vec<StaticConfig>,
    #[serde(default)]
    file_sd_configs: Vec<FileSdSpec>,
    #[serde(default)]
    http_sd_configs: Vec<HttpSdSpec>,
    #[serde(default)]
    relabel_configs: Vec<RelabelSpec>,
    #[serde(default)]
    metric_relabel_configs: Vec<RelabelSpec>,
}

/// How a job's requests authenticate.
#[derive(Clone, Default)]
pub enum Auth {
    #[default]
    None,
    Basic {
        username: String,
        password: Secret,
    },
    /// `Authorization: <kind> <credentials>` (Bearer unless the config says otherwise).
    Header {
        kind: String,
        credentials: Secret,
    },
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::None => "none",
            Self::Basic { .. } => "basic (redacted)",
            Self::Header { .. } => "authorization (redacted)",
        })
    }
}

/// A secret given inline or read from a file at every scrape (so rotated files apply),
/// as Prometheus reads `*_file` options.
#[derive(Clone)]
pub enum Secret {
    Inline(String),
    File(PathBuf),
}

impl Secret {
    pub fn read(&self) -> std::io::Result<String> {
        match self {
            Self::Inline(s) => Ok(s.clone()),
            Self::File(p) => Ok(std::fs::read_to_string(p)?.trim().to_string()),
        }
    }
}

/// Where a job's targets come from.
#[derive(Debug, Clone)]
pub enum Discovery {
    Static(Vec<StaticConfig>),
    File {
        files: Vec<String>,
        refresh: Duration,
    },
    Http {
        url: String,
        refresh: Duration,
    },
}

/// A scrape job, checked.
#[derive(Debug, Clone)]
pub struct Job {
    pub name: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub metrics_path: String,
    pub params: BTreeMap<String, Vec<String>>,
    pub scheme: String,
    pub honor_labels: bool,
    pub honor_timestamps: bool,
    /// 0 is no limit, as in Prometheus.
    pub sample_limit: u64,
    pub label_limit: u64,
    pub label_name_length_limit: u64,
    pub label_value_length_limit: u64,
    pub body_size_limit: u64,
    pub auth: Auth,
    pub tls: TlsSpec,
    pub follow_redirects: bool,
    pub discovery: Vec<Discovery>,
    pub relabel: Vec<Rule>,
    pub metric_relabel: Vec<Rule>,
    /// The job's options as written, to tell on reload whether it changed.
    pub fingerprint: String,
}

/// A whole scrape configuration.
#[derive(Debug, Clone, Default)]
pub struct ScrapeConfig {
    pub jobs: Vec<Job>,
    pub external_labels: BTreeMap<String, String>,
}

impl ScrapeConfig {
    /// Reads a Prometheus configuration file. Relative paths in it (file_sd files,
    /// credentials files) are relative to the file's directory, as in Prometheus.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("cannot read {}: {e}", path.display())))?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::parse(&text, base).map_err(|e| ConfigError(format!("{}: {}", path.display(), e.0)))
    }

    /// Parses the YAML of a Prometheus configuration (`global:` and `scrape_configs:`).
    pub fn parse(text: &str, base: &Path) -> Result<Self, ConfigError> {
        let doc: serde_yaml::Value =
            serde_yaml::from_str(text).map_err(|e| ConfigError(format!("not YAML: {e}")))?;
        Self::from_value(&doc, base)
    }

    pub fn from_value(doc: &serde_yaml::Value, base: &Path) -> Result<Self, ConfigError> {
        let empty = serde_yaml::Mapping::new();
        let top = match doc {
            serde_yaml::Value::Mapping(m) => m,
            serde_yaml::Value::Null => &empty,
            _ => return err("the configuration must be a mapping with scrape_configs"),
        };
        let mut global = GlobalSpec::default();
        let mut jobs_yaml: &[serde_yaml::Value] = &[];
        for (k, v) in top {
            let k = k.as_str().unwrap_or("");
            match k {
                "global" => {
                    global = serde_yaml::from_value(v.clone())
                        .map_err(|e| ConfigError(format!("global: {e}")))?;
                }
                "scrape_configs" => {
                    jobs_yaml = v
                        .as_sequence()
                        .map(|s| s.as_slice())
                        .ok_or_else(|| ConfigError("scrape_configs must be a list".into()))?;
                }
                _ if OTHER_SECTIONS.contains(&k) => {
                    tracing::info!(
                        section = k,
                        "not a scrape option; left to the roles it belongs to"
                    );
                }
                _ => return err(format!("unknown top-level section {k:?}")),
            }
        }
        let g_interval = parse_opt(&global.scrape_interval, "global.scrape_interval")?
            .unwrap_or(Duration::from_secs(60));
        let g_timeout = parse_opt(&global.scrape_timeout, "global.scrape_timeout")?
            .unwrap_or(Duration::from_secs(10).min(g_interval));
        if g_timeout > g_interval {
            return err("global.scrape_timeout is greater than global.scrape_interval");
        }
        let g_body = match &global.body_size_limit {
            Some(s) => {
                parse_size(s).map_err(|e| ConfigError(format!("global.body_size_limit: {e}")))?
            }
            None => 0,
        };
        let mut names = BTreeSet::new();
        let mut jobs = Vec::new();
        for (i, v) in jobs_yaml.iter().enumerate() {
            let job = job_of(i, v, base, &global, g_interval, g_timeout, g_body)?;
            if !names.insert(job.name.clone()) {
                return err(format!(
                    "found multiple scrape configs with job name {:?}",
                    job.name
                ));
            }
            jobs.push(job);
        }
        Ok(Self {
            jobs,
            external_labels: global.external_labels,
        })
    }
}

fn parse_opt(s: &Option<String>, what: &str) -> Result<Option<Duration>, ConfigError> {
    s.as_deref()
        .map(|s| parse_duration(s).map_err(|e| ConfigError(format!("{what}: {e}"))))
        .transpose()
}

fn job_of(
    i: usize,
    v: &serde_yaml::Value,
    base: &Path,
    g: &GlobalSpec,
    g_interval: Duration,
    g_timeout: Duration,
    g_body: u64,
) -> Result<Job, ConfigError> {
    let m = v
        .as_mapping()
        .ok_or_else(|| ConfigError(format!("scrape_configs[{i}] must be a mapping")))?;
    let name = m
        .get("job_name")
        .and_then(|n| n.as_str())
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ConfigError(format!("scrape_configs[{i}]: job_name is empty")))?
        .to_string();
    let at = |what: &str| format!("scrape job {name:?}: {what}");
    for k in m.keys() {
        let k = k.as_str().unwrap_or("");
        if !SUPPORTED.contains(&k) {
            return err(at(&format!(
                "option {k:?} is not supported by weir scrape (it reads: {})",
                SUPPORTED.join(", ")
            )));
        }
    }
    let spec: JobSpec =
        serde_yaml::from_value(v.clone()).map_err(|e| ConfigError(at(&e.to_string())))?;
    let interval = parse_opt(&spec.scrape_interval, &at("scrape_interval"))?.unwrap_or(g_interval);
    let timeout = match parse_opt(&spec.scrape_timeout, &at("scrape_timeout"))? {
        Some(t) => t,
        // Prometheus: the global timeout, cut to the job's interval.
        None => g_timeout.min(interval),
    };
    if interval.is_zero() {
        return err(at("scrape_interval must be above zero"));
    }
    if timeout > interval {
        return err(format!(
            "scrape timeout greater than scrape interval for scrape config with job name {name:?}"
        ));
    }
    let scheme = spec.scheme.clone().unwrap_or_else(|| "http".into());
    if scheme != "http" && scheme != "https" {
        return err(at(&format!("scheme {scheme:?}: must be http or https")));
    }
    let metrics_path = spec
        .metrics_path
        .clone()
        .unwrap_or_else(|| "/metrics".into());
    if let Some((k, _)) = spec.tls_config.other.iter().next() {
        return err(at(&format!(
            "tls_config.{k} is not supported by weir scrape (it reads ca_file, cert_file, key_file, insecure_skip_verify)"
        )));
    }
    let mut tls = spec.tls_config.clone();
    for p in [&mut tls.ca_file, &mut tls.cert_file, &mut tls.key_file]
        .into_iter()
        .flatten()
    {
        *p = base.join(&*p);
    }
    let auth = auth_of(&spec, base).map_err(|e| ConfigError(at(&e)))?;
    let body_size_limit = match &spec.body_size_limit {
        Some(s) => parse_size(s).map_err(|e| ConfigError(at(&format!("body_size_limit: {e}"))))?,
        None => g_body,
    };
    let mut discovery = Vec::new();
    if !spec.static_configs.is_empty() {
        discovery.push(Discovery::Static(spec.static_configs.clone()));
    }
    for f in &spec.file_sd_configs {
        let refresh = parse_opt(&f.refresh_interval, &at("file_sd_configs.refresh_interval"))?
            .unwrap_or(Duration::from_secs(300));
        let files = f
            .files
            .iter()
            .map(|p| base.join(p).to_string_lossy().into_owned())
            .collect::<Vec<_>>();
        for p in &files {
            let name = Path::new(p)
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("");
            if !(name.ends_with(".json") || name.ends_with(".yml") || name.ends_with(".yaml")) {
                return err(at(&format!(
                    "file_sd_configs: path {p:?} is not valid for file discovery (it must end in .json, .yml or .yaml)"
                )));
            }
        }
        discovery.push(Discovery::File { files, refresh });
    }
    for h in &spec.http_sd_configs {
        if let Some((k, _)) = h.other.iter().next() {
            return err(at(&format!(
                "http_sd_configs.{k} is not supported by weir scrape (it reads url and refresh_interval)"
            )));
        }
        if !(h.url.starts_with("http://") || h.url.starts_with("https://")) {
            return err(at(&format!(
                "http_sd_configs: URL scheme must be http or https: {:?}",
                h.url
            )));
        }
        let refresh = parse_opt(&h.refresh_interval, &at("http_sd_configs.refresh_interval"))?
            .unwrap_or(Duration::from_secs(60));
        discovery.push(Discovery::Http {
            url: h.url.clone(),
            refresh,
        });
    }
    let relabel = compile_all(&spec.relabel_configs)
        .map_err(|(n, e)| ConfigError(at(&format!("relabel_configs[{n}]: {e}"))))?;
    let metric_relabel = compile_all(&spec.metric_relabel_configs)
        .map_err(|(n, e)| ConfigError(at(&format!("metric_relabel_configs[{n}]: {e}"))))?;
    Ok(Job {
        name,
        interval,
        timeout,
        metrics_path,
        params: spec.params.clone(),
        scheme,
        honor_labels: spec.honor_labels,
        honor_timestamps: spec.honor_timestamps.unwrap_or(true),
        sample_limit: spec.sample_limit.or(g.sample_limit).unwrap_or(0),
        label_limit: spec.label_limit.or(g.label_limit).unwrap_or(0),
        label_name_length_limit: spec
            .label_name_length_limit
            .or(g.label_name_length_limit)
            .unwrap_or(0),
        label_value_length_limit: spec
            .label_value_length_limit
            .or(g.label_value_length_limit)
            .unwrap_or(0),
        body_size_limit,
        auth,
        tls,
        follow_redirects: spec.follow_redirects.unwrap_or(true),
        discovery,
        relabel,
        metric_relabel,
        fingerprint: serde_yaml::to_string(v).unwrap_or_default(),
    })
}

fn auth_of(spec: &JobSpec, base: &Path) -> Result<Auth, String> {
    let secret = |inline: &Option<String>, file: &Option<PathBuf>, what: &str| match (inline, file)
    {
        (Some(_), Some(_)) => Err(format!(
            "at most one of {what} and {what}_file must be configured"
        )),
        (Some(s), None) => Ok(Some(Secret::Inline(s.clone()))),
        (None, Some(f)) => Ok(Some(Secret::File(base.join(f)))),
        (None, None) => Ok(None),
    };
    let mut n = 0;
    let mut auth = Auth::None;
    if let Some(b) = &spec.basic_auth {
        n += 1;
        auth = Auth::Basic {
            username: b.username.clone(),
            password: secret(&b.password, &b.password_file, "basic_auth.password")?
                .unwrap_or(Secret::Inline(String::new())),
        };
    }
    if let Some(a) = &spec.authorization {
        n += 1;
        let kind = a.kind.clone().unwrap_or_else(|| "Bearer".into());
        if kind.eq_ignore_ascii_case("basic") {
            return Err(
                "authorization type cannot be set to \"basic\", use \"basic_auth\" instead".into(),
            );
        }
        auth = Auth::Header {
            kind,
            credentials: secret(
                &a.credentials,
                &a.credentials_file,
                "authorization.credentials",
            )?
            .unwrap_or(Secret::Inline(String::new())),
        };
    }
    if let Some(t) = secret(&spec.bearer_token, &spec.bearer_token_file, "bearer_token")? {
        n += 1;
        auth = Auth::Header {
            kind: "Bearer".into(),
            credentials: t,
        };
    }
    if n > 1 {
        return Err("at most one of basic_auth, authorization and bearer_token (or bearer_token_file) must be configured".into());
    }
    Ok(auth)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(y: &str) -> Result<ScrapeConfig, ConfigError> {
        ScrapeConfig::parse(y, Path::new("/etc/prom"))
    }

    #[test]
    fn durations_and_sizes_as_prometheus_writes_them() {
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("1d2h").unwrap(), Duration::from_secs(93_600));
        assert!(parse_duration("1s1m").is_err(), "units out of order");
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("5x").is_err());
        assert_eq!(parse_size("10MB").unwrap(), 10 << 20);
        assert_eq!(parse_size("512").unwrap(), 512);
        assert!(parse_size("1XB").is_err());
    }

    #[test]
    fn a_prometheus_yml_loads_with_defaults_from_global() {
        let c = parse(
            "global: {scrape_interval: 15s, evaluation_interval: 1m}\nrule_files: [a.yml]\nscrape_configs:\n  - job_name: node\n    static_configs: [{targets: ['127.0.0.1:9100'], labels: {env: dev}}]\n  - job_name: files\n    scrape_interval: 5s\n    file_sd_configs: [{files: ['targets/*.json']}]\n",
        )
        .unwrap();
        assert_eq!(c.jobs.len(), 2);
        let node = &c.jobs[0];
        assert_eq!(
            (node.interval, node.timeout),
            (Duration::from_secs(15), Duration::from_secs(10))
        );
        assert_eq!(node.metrics_path, "/metrics");
        assert!(node.honor_timestamps && !node.honor_labels);
        assert_eq!(
            c.jobs[1].timeout,
            Duration::from_secs(5),
            "cut to the interval"
        );
        match &c.jobs[1].discovery[0] {
            Discovery::File { files, refresh } => {
                assert_eq!(files, &vec!["/etc/prom/targets/*.json".to_string()]);
                assert_eq!(*refresh, Duration::from_secs(300));
            }
            d => panic!("{d:?}"),
        }
    }

    #[test]
    fn unsupported_options_name_the_job_and_the_option() {
        let e =
            parse("scrape_configs:\n  - job_name: k8s\n    kubernetes_sd_configs: [{role: pod}]\n")
                .unwrap_err();
        assert!(
            e.0.contains("\"k8s\"") && e.0.contains("kubernetes_sd_configs"),
            "{e}"
        );
        let e = parse("scrape_configs:\n  - job_name: t\n    tls_config: {server_name: x}\n")
            .unwrap_err();
        assert!(e.0.contains("tls_config.server_name"), "{e}");
        let e = parse(
            "scrape_configs:\n  - job_name: t\n    scrape_interval: 5s\n    scrape_timeout: 10s\n",
        )
        .unwrap_err();
        assert!(e.0.contains("greater than scrape interval"), "{e}");
        let e = parse("scrape_configs:\n  - job_name: t\n  - job_name: t\n").unwrap_err();
        assert!(e.0.contains("multiple"), "{e}");
        let e = parse("scrape_configs:\n  - job_name: t\n    relabel_configs: [{action: hashmod, target_label: x}]\n").unwrap_err();
        assert!(
            e.0.contains("relabel_configs[0]") && e.0.contains("modulus"),
            "{e}"
        );
        let e = parse("scrape_configs:\n  - job_name: t\n    basic_auth: {username: u}\n    bearer_token: x\n").unwrap_err();
        assert!(e.0.contains("at most one"), "{e}");
        let e = parse("remote_wrte: []\n").unwrap_err();
        assert!(e.0.contains("remote_wrte"), "{e}");
    }
}
