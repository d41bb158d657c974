//! `weir scrape` against the real thing: the same scrape configuration given to
//! Prometheus 2.42 (Debian's) and to `weir scrape` at the same time, the series in
//! VictoriaMetrics through weir (scrape → metrics.raw → tsdb-writer) compared with what
//! Prometheus stored; relabeling, action by action, against Prometheus' results;
//! staleness markers; sharding across two replicas and the takeover when one dies.
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use weir_e2e::pipeline::Pipeline;
use weir_e2e::scrape::{
    write_atomic, NodeExporter, Prometheus, Response, TargetServer, OPENMETRICS, TEXT,
};
use weir_e2e::{ensure_stack, free_port, http, now_ms, wait_until, weir, Vm};

type Samples = BTreeMap<String, Vec<(i64, f64)>>;

/// The test target's exposition at `path` (with its query): gauges whose value is the
/// second they were served in, a counter with a `job` label that clashes with the
/// target's, a histogram, an escaped label value, the query echoed as a label; in text
/// 0.0.4 under `/text` (gzip-compressed under `/gz`), in OpenMetrics under `/om`.
/// `vanish` leaves out `test_vanishing`.
fn exposition(path: &str, vanish: bool) -> Option<Response> {
    let (p, query) = path.split_once('?').unwrap_or((path, ""));
    let sec = now_ms() / 1000;
    let mut common = format!(
        "# HELP test_second_gauge The second it was served in.\n# TYPE test_second_gauge gauge\ntest_second_gauge{{kind=\"a\"}} {sec}\ntest_second_gauge{{kind=\"b\"}} {}\n# TYPE test_latency_seconds histogram\ntest_latency_seconds_bucket{{le=\"0.1\"}} 1\ntest_latency_seconds_bucket{{le=\"+Inf\"}} 2\ntest_latency_seconds_sum 0.3\ntest_latency_seconds_count 2\n",
        sec * 2
    );
    if !query.is_empty() {
        common.push_str(&format!("test_request_params{{query=\"{query}\"}} 1\n"));
    }
    if !vanish {
        common.push_str("# TYPE test_vanishing gauge\ntest_vanishing 7\n");
    }
    match p {
        "/text" | "/gz" | "/metrics" => Some(Response {
            content_type: TEXT,
            body: format!("# TYPE test_requests_total counter\ntest_requests_total{{code=\"200\",job=\"exposed\"}} 5\ntest_requests_total{{code=\"500\"}} 1\n# TYPE test_untyped untyped\ntest_untyped{{path=\"a\\\"b\\\\c\"}} 3\n{common}"),
            gzip: p == "/gz",
        }),
        "/om" => Some(Response {
            content_type: OPENMETRICS,
            body: format!("# TYPE test_requests counter\ntest_requests_total{{code=\"200\",job=\"exposed\"}} 5 # {{trace_id=\"abc\"}} 1\ntest_requests_created{{code=\"200\",job=\"exposed\"}} 1700000000\n# TYPE test_size_bytes gauge\n# UNIT test_size_bytes bytes\ntest_size_bytes 1024\n# TYPE test_untyped unknown\ntest_untyped{{path=\"a\\\"b\\\\c\"}} 3\n{common}# EOF\n"),
            gzip: false,
        }),
        _ => None,
    }
}

fn target_server(vanish: Arc<AtomicBool>) -> TargetServer {
    TargetServer::start(Arc::new(move |p: &str| {
        exposition(p, vanish.load(Ordering::Relaxed))
    }))
}

/// Samples of `selector` in VictoriaMetrics between `start` and `end`, staleness markers
/// left out (Prometheus' range vectors leave them out too).
fn vm_samples(vm: &Vm, selector: &str, start: i64, end: i64) -> Samples {
    vm.export_range(selector, start, end)
        .into_iter()
        .filter_map(|(k, v)| {
            let v: Vec<_> = v.into_iter().filter(|(_, x)| !is_stale(*x)).collect();
            (!v.is_empty()).then_some((k, v))
        })
        .collect()
}

fn is_stale(v: f64) -> bool {
    v.to_bits() == weir_contract::model::STALE_NAN_BITS
}

/// Fails listing what each side has that the other has not.
fn assert_same_series(what: &str, prom: &Samples, weir: &Samples) {
    let p: BTreeSet<&String> = prom.keys().collect();
    let w: BTreeSet<&String> = weir.keys().collect();
    let only_p: Vec<_> = p.difference(&w).take(20).collect();
    let only_w: Vec<_> = w.difference(&p).take(20).collect();
    assert!(
        only_p.is_empty() && only_w.is_empty(),
        "{what}: series differ ({} in Prometheus, {} through weir)\n only in Prometheus: {only_p:#?}\n only through weir: {only_w:#?}",
        p.len(),
        w.len()
    );
}

fn write_config(dir: &Path, yaml: &str) -> std::path::PathBuf {
    let p = dir.join("prometheus.yml");
    std::fs::write(&p, yaml).unwrap();
    p
}

/// Both scrapers running with one configuration, writing to their own stores.
struct SideBySide {
    vm: Vm,
    _writer: weir_e2e::Service,
    _scrape: weir_e2e::Service,
    prom: Prometheus,
    _pipeline: Pipeline,
}

impl SideBySide {
    fn start(config: &Path) -> Self {
        ensure_stack();
        let vm = Vm::start();
        let pipeline = Pipeline::with_scrape(&vm, 4, config, 8, "");
        let writer = pipeline.writer();
        let scrape = pipeline.scrape();
        let prom = Prometheus::start(config);
        Self {
            vm,
            _writer: writer,
            _scrape: scrape,
            prom,
            _pipeline: pipeline,
        }
    }

    /// Waits until both have `up` for `n` targets (of `selector`).
    fn wait_up(&self, selector: &str, n: usize) {
        let sel = format!("up{selector}");
        wait_until(
            "Prometheus and weir both scraped every target",
            Duration::from_secs(60),
            || {
                let now = now_ms();
                self.prom.samples(&sel, now, Duration::from_secs(10)).len() >= n
                    && vm_samples(&self.vm, &sel, now - 10_000, now).len() >= n
            },
        );
    }

    /// Waits until Prometheus and weir each hold at least `n` samples of every series of
    /// `selector` (and at least one series) since `since`.
    fn wait_samples(&self, what: &str, selector: &str, since: i64, n: usize) {
        wait_until(what, Duration::from_secs(60), || {
            let now = now_ms();
            let window = Duration::from_millis((now - since).max(1) as u64);
            let (prom, weir) = self.both(selector, now, window);
            let enough = |m: &Samples| !m.is_empty() && m.values().all(|v| v.len() >= n);
            enough(&prom) && enough(&weir)
        });
    }

    /// (Prometheus, weir) samples of `selector` in the `window` before `end`.
    fn both(&self, selector: &str, end: i64, window: Duration) -> (Samples, Samples) {
        let prom = self.prom.samples(selector, end, window);
        let weir = vm_samples(&self.vm, selector, end - window.as_millis() as i64 + 1, end);
        (prom, weir)
    }
}

#[test]
fn the_same_config_stores_the_same_series_as_prometheus() {
    let dir = tempfile::tempdir().unwrap();
    let target = target_server(Arc::new(AtomicBool::new(false)));
    let node = NodeExporter::start();
    let closed = free_port();
    let files = dir.path().join("sd");
    std::fs::create_dir(&files).unwrap();
    let sd = files.join("a.json");
    let t = target.target();
    write_atomic(
        &sd,
        &format!(
            r#"[{{"targets": ["{t}"], "labels": {{"__metrics_path__": "/text", "group": "one"}}}}]"#
        ),
    );
    let config = write_config(
        dir.path(),
        &format!(
            r#"global: {{scrape_interval: 2s, scrape_timeout: 1s}}
scrape_configs:
  - job_name: node
    static_configs: [{{targets: ['{node}']}}]
    metric_relabel_configs:
      - {{source_labels: [__name__], regex: 'node_cpu_guest_seconds_total', action: drop}}
  # The local stack's own server.
  - job_name: stack
    static_configs: [{{targets: ['127.0.0.1:9093'], labels: {{server: alertmanager}}}}]
  - job_name: test
    scrape_interval: 1s
    scrape_timeout: 900ms
    static_configs: [{{targets: ['{t}'], labels: {{env: e2e}}}}]
    metrics_path: /gz
    relabel_configs:
      - {{source_labels: [__address__], regex: '(.*):(\d+)', target_label: port, replacement: '$2'}}
  - job_name: test_om
    metrics_path: /om
    static_configs: [{{targets: ['{t}']}}]
  - job_name: down
    static_configs: [{{targets: ['127.0.0.1:{closed}']}}]
  - job_name: files
    file_sd_configs: [{{files: ['{}/*.json']}}]
    relabel_configs:
      - {{source_labels: [__meta_filepath], regex: '.*/(.*)\.json', target_label: file}}
"#,
            files.display(),
            node = node.target(),
        ),
    );
    let s = SideBySide::start(&config);
    let all = r#"{job=~"node|stack|test|test_om|down|files"}"#;
    s.wait_up(all, 6);
    let from = now_ms();
    let group = |g: &str| format!(r#"test_second_gauge{{job="files",group="{g}",kind="a"}}"#);
    s.wait_samples(
        "both scraped the file_sd target four times",
        &group("one"),
        from,
        4,
    );
    // The file_sd file changes mid-run: its target moves to another path and group.
    write_atomic(
        &sd,
        &format!(
            r#"[{{"targets": ["{t}"], "labels": {{"__metrics_path__": "/om", "group": "two"}}}}]"#
        ),
    );
    let changed = now_ms();
    s.wait_samples(
        "both scraped the moved target four times",
        &group("two"),
        changed,
        4,
    );
    // Leaves out the last scrapes, which may not have reached VictoriaMetrics yet.
    let end = now_ms() - 3_000;
    let window = Duration::from_millis((end - from - 2_000) as u64);
    let (prom, weir) = s.both(all, end, window);

    assert_same_series("every job", &prom, &weir);
    for want in [
        r#"up{instance="127.0.0.1:__",job="down"}"#.replace("__", &closed.to_string()),
        format!(
            r#"test_requests_total{{code="200",env="e2e",exported_job="exposed",instance="{t}",job="test",port="{}"}}"#,
            target.addr.port()
        ),
        format!(
            r#"test_requests_created{{code="200",exported_job="exposed",instance="{t}",job="test_om"}}"#
        ),
        format!(r#"test_second_gauge{{file="a",group="one",instance="{t}",job="files",kind="a"}}"#),
        format!(r#"test_second_gauge{{file="a",group="two",instance="{t}",job="files",kind="a"}}"#),
        r#"node_memory_MemTotal_bytes{instance="__",job="node"}"#.replace("__", &node.target()),
        r#"scrape_series_added{instance="127.0.0.1:9093",job="stack",server="alertmanager"}"#
            .to_string(),
    ] {
        assert!(
            weir.contains_key(&want),
            "{want} missing; have e.g. {:?}",
            weir.keys().take(5).collect::<Vec<_>>()
        );
    }
    let down = format!(r#"up{{instance="127.0.0.1:{closed}",job="down"}}"#);
    assert!(weir[&down].iter().all(|p| p.1 == 0.0) && prom[&down].iter().all(|p| p.1 == 0.0));

    // Gauges scraped in the same second agree: the test target's are the second they
    // were served in (pairs within 50 ms of a second's end are left out: a scrape
    // started then may be served in the next second), node_exporter's are constant.
    let mut compared = 0;
    for (key, p_points) in prom
        .iter()
        .filter(|(k, _)| k.starts_with("test_second_gauge"))
    {
        for (tp, vp) in p_points {
            for (tw, vw) in &weir[key] {
                if tp / 1000 == tw / 1000 && tp % 1000 < 950 && tw % 1000 < 950 {
                    assert_eq!(vp, vw, "{key} at {tp} (Prometheus) and {tw} (weir)");
                    compared += 1;
                }
            }
        }
    }
    assert!(
        compared >= 10,
        "only {compared} pairs scraped in the same second"
    );
    for (key, p_points) in prom.iter().filter(|(k, _)| {
        k.starts_with("node_memory_MemTotal_bytes")
            || k.starts_with("node_filesystem_size_bytes")
            || k.starts_with("node_uname_info")
    }) {
        let pv: BTreeSet<u64> = p_points.iter().map(|p| p.1.to_bits()).collect();
        let wv: BTreeSet<u64> = weir[key].iter().map(|p| p.1.to_bits()).collect();
        assert_eq!(pv, wv, "{key}");
    }
}

#[test]
fn relabeling_gives_what_prometheus_gives_for_every_action() {
    let dir = tempfile::tempdir().unwrap();
    let target = target_server(Arc::new(AtomicBool::new(false)));
    let t = target.target();
    // Each job is one case; `127.0.0.1:1` is a target its rules must drop (were it kept,
    // its `up` 0 would show).
    let cases = format!(
        r#"
  - job_name: r_replace
    static_configs: [{{targets: ['{t}'], labels: {{team: Alpha}}}}]
    relabel_configs:
      - {{source_labels: [__address__, team], separator: '@', regex: '127\.0\.0\.1:(\d+)@(.*)', target_label: where, replacement: '${{2}}-$1'}}
      - {{source_labels: [team], regex: 'nomatch', target_label: untouched, replacement: x}}
  - job_name: r_keep
    static_configs: [{{targets: ['{t}'], labels: {{team: a}}}}, {{targets: ['127.0.0.1:1'], labels: {{team: b}}}}]
    relabel_configs: [{{source_labels: [team], regex: a, action: keep}}]
  - job_name: r_drop
    static_configs: [{{targets: ['{t}'], labels: {{team: a}}}}, {{targets: ['127.0.0.1:1'], labels: {{team: b}}}}]
    relabel_configs: [{{source_labels: [team], regex: 'b', action: drop}}]
  - job_name: r_keepequal
    static_configs: [{{targets: ['{t}'], labels: {{team: a, owner: a}}}}, {{targets: ['127.0.0.1:1'], labels: {{team: a, owner: b}}}}]
    relabel_configs: [{{source_labels: [team], target_label: owner, action: keepequal}}]
  - job_name: r_dropequal
    static_configs: [{{targets: ['{t}'], labels: {{team: a, owner: b}}}}, {{targets: ['127.0.0.1:1'], labels: {{team: a, owner: a}}}}]
    relabel_configs: [{{source_labels: [team], target_label: owner, action: dropequal}}]
  - job_name: r_hashmod
    static_configs: [{{targets: ['{t}']}}]
    relabel_configs: [{{source_labels: [__address__], modulus: 1000, target_label: shard, action: hashmod}}]
  - job_name: r_labelmap
    static_configs: [{{targets: ['{t}'], labels: {{meta_a: '1', meta_b: '2'}}}}]
    relabel_configs: [{{regex: 'meta_(.+)', replacement: 'copied_$1', action: labelmap}}]
  - job_name: r_labeldrop
    static_configs: [{{targets: ['{t}'], labels: {{meta_a: '1', keep_me: '2'}}}}]
    relabel_configs: [{{regex: 'meta_.*', action: labeldrop}}]
  - job_name: r_labelkeep
    static_configs: [{{targets: ['{t}'], labels: {{meta_a: '1', keep_me: '2'}}}}]
    relabel_configs: [{{regex: '__.*|job|keep_me', action: labelkeep}}]
  - job_name: r_case
    static_configs: [{{targets: ['{t}'], labels: {{team: MiXed}}}}]
    relabel_configs:
      - {{source_labels: [team], target_label: lower, action: lowercase}}
      - {{source_labels: [team], target_label: upper, action: uppercase}}
  - job_name: r_tmp_param_path
    static_configs: [{{targets: ['{t}']}}]
    relabel_configs:
      - {{target_label: __tmp_via, replacement: om}}
      - {{source_labels: [__tmp_via], regex: om, target_label: __metrics_path__, replacement: /om}}
      - {{target_label: __param_format, replacement: x}}
      - {{source_labels: [__tmp_via], target_label: via}}
      - {{source_labels: [__address__], target_label: instance, regex: '(.*):.*', replacement: 'host-$1'}}
  - job_name: m_relabel
    static_configs: [{{targets: ['{t}']}}]
    metric_relabel_configs:
      - {{source_labels: [__name__], regex: 'test_latency_seconds_bucket', action: drop}}
      - {{source_labels: [__name__, code], regex: 'test_requests_total;(.*)', target_label: status, replacement: 'http_$1'}}
      - {{regex: 'code', action: labeldrop}}
      - {{source_labels: [__name__], regex: 'test_untyped', target_label: __name__, replacement: 'test_renamed'}}
      - {{source_labels: [kind], modulus: 7, target_label: kind_mod, action: hashmod}}
      - {{source_labels: [kind], target_label: kind_uc, action: uppercase}}
      - {{source_labels: [__name__, kind], regex: 'test_second_gauge;b', action: drop}}
  - job_name: m_keep
    static_configs: [{{targets: ['{t}']}}]
    metric_relabel_configs: [{{source_labels: [__name__], regex: 'test_second_gauge|test_vanishing', action: keep}}]
  - job_name: honor
    honor_labels: true
    static_configs: [{{targets: ['{t}']}}]
"#
    );
    let config = write_config(
        dir.path(),
        &format!("global: {{scrape_interval: 1s, scrape_timeout: 900ms}}\nscrape_configs:{cases}"),
    );
    let s = SideBySide::start(&config);
    let jobs = [
        "r_replace",
        "r_keep",
        "r_drop",
        "r_keepequal",
        "r_dropequal",
        "r_hashmod",
        "r_labelmap",
        "r_labeldrop",
        "r_labelkeep",
        "r_case",
        "r_tmp_param_path",
        "m_relabel",
        "m_keep",
        "honor",
    ];
    s.wait_up(r#"{job=~"r_.*|m_.*|honor"}"#, jobs.len());
    // Seven scrapes of each since: the 4 s compared end 3 s before now.
    s.wait_samples(
        "seven scrapes of every case by both",
        r#"up{job=~"r_.*|m_.*|honor"}"#,
        now_ms(),
        7,
    );
    let end = now_ms() - 3_000;
    for job in jobs {
        let (prom, weir) = s.both(&format!(r#"{{job="{job}"}}"#), end, Duration::from_secs(4));
        assert!(!prom.is_empty(), "{job}: Prometheus stored nothing");
        assert_same_series(job, &prom, &weir);
    }
    // A few results spelled out, so a rule both get wrong the same way shows too.
    let (_, weir) = s.both(r#"{job=~"r_.*|m_.*|honor"}"#, end, Duration::from_secs(4));
    let keys: Vec<&String> = weir.keys().collect();
    let has = |needle: &str| keys.iter().any(|k| k.contains(needle));
    assert!(has(&format!(r#"where="Alpha-{}""#, target.addr.port())));
    assert!(has(r#"copied_a="1""#) && has(r#"lower="mixed""#) && has(r#"upper="MIXED""#));
    assert!(
        has(r#"instance="host-127.0.0.1""#) && has(r#"via="om""#) && has(r#"query="format=x""#)
    );
    assert!(
        has(r#"test_renamed{"#) && has(r#"status="http_200""#) && has(r#"exported_job="exposed""#)
    );
    assert!(!keys
        .iter()
        .any(|k| k.contains("127.0.0.1:1\"") || k.contains("__tmp")));
    assert!(
        keys.iter()
            .any(|k| k.starts_with("test_requests_total{") && k.contains(r#"job="exposed""#)),
        "honor_labels keeps the target's own job"
    );
}

#[test]
fn a_series_or_target_that_goes_away_gets_a_staleness_marker() {
    ensure_stack();
    let dir = tempfile::tempdir().unwrap();
    let vanish = Arc::new(AtomicBool::new(false));
    let target = target_server(vanish.clone());
    let t = target.target();
    let sd = dir.path().join("targets.json");
    let groups = |both: bool| {
        let mut g = vec![format!(
            r#"{{"targets": ["{t}"], "labels": {{"__metrics_path__": "/text", "group": "one"}}}}"#
        )];
        if both {
            g.push(format!(
                r#"{{"targets": ["{t}"], "labels": {{"__metrics_path__": "/om", "group": "two"}}}}"#
            ));
        }
        format!("[{}]", g.join(","))
    };
    write_atomic(&sd, &groups(true));
    let config = write_config(
        dir.path(),
        &format!("global: {{scrape_interval: 1s, scrape_timeout: 900ms}}\nscrape_configs:\n  - job_name: files\n    file_sd_configs: [{{files: ['{}']}}]\n", sd.display()),
    );
    let vm = Vm::start();
    let pipeline = Pipeline::with_scrape(&vm, 2, &config, 4, "");
    let _writer = pipeline.writer();
    let _scrape = pipeline.scrape();
    let last_is_stale = |sel: &str| {
        vm.export(sel)
            .values()
            .next()
            .and_then(|p| p.last().copied())
            .is_some_and(|(_, v)| is_stale(v))
    };
    let one = r#"test_vanishing{group="one",job="files"}"#;
    wait_until("the series is written", Duration::from_secs(60), || {
        !vm.export(one).is_empty()
    });
    assert!(!last_is_stale(one));
    vanish.store(true, Ordering::Relaxed);
    wait_until(
        "a staleness marker for the series that left the exposition",
        Duration::from_secs(30),
        || last_is_stale(one),
    );
    // Its other series go on.
    let gauge_one = r#"test_second_gauge{group="one",job="files",kind="a"}"#;
    let goes_on = |since: i64| {
        vm.export(gauge_one)
            .values()
            .next()
            .is_some_and(|p| p.iter().filter(|(t, _)| *t > since).count() >= 2)
    };
    let marked = now_ms();
    wait_until(
        "two scrapes of the other series after the marker",
        Duration::from_secs(30),
        || goes_on(marked),
    );
    assert!(!last_is_stale(gauge_one));

    write_atomic(&sd, &groups(false));
    for sel in [
        r#"up{group="two",job="files"}"#,
        r#"test_second_gauge{group="two",job="files",kind="a"}"#,
    ] {
        wait_until(
            &format!("a staleness marker for {sel} of the removed target"),
            Duration::from_secs(30),
            || last_is_stale(sel),
        );
    }
    let removed = now_ms();
    wait_until(
        "two scrapes of the remaining target after the removal",
        Duration::from_secs(30),
        || goes_on(removed),
    );
    assert!(
        !last_is_stale(gauge_one),
        "the remaining target is not marked"
    );
}

/// Active targets of a scrape replica's `/api/v1/targets`, by scrape URL.
fn active_targets(scrape: &weir_e2e::Service) -> BTreeSet<String> {
    let v: serde_json::Value = http()
        .build()
        .unwrap()
        .get(scrape.url("/api/v1/targets?state=active"))
        .send()
        .and_then(|r| r.json())
        .unwrap_or_default();
    v["data"]["activeTargets"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|t| t["scrapeUrl"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// Two replicas over 100 targets: each target scraped by exactly one, then `end` stops
/// one and the other must scrape every target within three intervals of that.
fn two_replicas(
    pipeline: &Pipeline,
    config: &Path,
    interval: Duration,
    end: impl FnOnce(weir_e2e::Service),
) {
    let target = TargetServer::start(Arc::new(|p: &str| {
        p.starts_with("/t/").then(|| Response {
            content_type: TEXT,
            body: format!("test_shard_gauge{{path=\"{p}\"}} 1\n"),
            gzip: false,
        })
    }));
    let t = target.target();
    let statics: String = (0..100)
        .map(|i| format!("      - {{targets: ['{t}'], labels: {{__metrics_path__: /t/{i}}}}}\n"))
        .collect();
    std::fs::write(
        config,
        format!(
            "global: {{scrape_interval: {}s, scrape_timeout: 4s}}\nscrape_configs:\n  - job_name: shards\n    static_configs:\n{statics}",
            interval.as_secs()
        ),
    )
    .unwrap();
    let a = pipeline.scrape();
    let b = pipeline.scrape();
    // Settled: the two replicas' targets are disjoint and cover all 100, for a while.
    wait_until(
        "the replicas split the 100 targets",
        Duration::from_secs(90),
        || {
            let (ta, tb) = (active_targets(&a), active_targets(&b));
            ta.len() + tb.len() == 100 && ta.is_disjoint(&tb) && !ta.is_empty() && !tb.is_empty()
        },
    );
    // And the split holds for two intervals.
    weir_e2e::holds_until(
        "the split of the 100 targets",
        std::time::Instant::now() + interval * 2,
        || {
            let (ta, tb) = (active_targets(&a), active_targets(&b));
            ta.len() + tb.len() == 100 && ta.is_disjoint(&tb)
        },
    );
    let (ta, tb) = (active_targets(&a), active_targets(&b));
    assert!(
        ta.len() + tb.len() == 100 && ta.is_disjoint(&tb),
        "{} + {}",
        ta.len(),
        tb.len()
    );

    // Three intervals: each target scraped exactly three times, never twice at once.
    let from = now_ms();
    let scraped_thrice = || {
        let mut n: BTreeMap<String, usize> = BTreeMap::new();
        for h in target.hits().into_iter().filter(|h| h.at_ms >= from) {
            *n.entry(h.path).or_default() += 1;
        }
        n.len() == 100 && n.values().all(|c| *c >= 3)
    };
    wait_until(
        "three scrapes of every target",
        interval * 5,
        scraped_thrice,
    );
    let to = now_ms();
    let mut by_path: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for h in target
        .hits()
        .into_iter()
        .filter(|h| h.at_ms >= from && h.at_ms < to)
    {
        by_path.entry(h.path).or_default().push(h.at_ms);
    }
    assert_eq!(by_path.len(), 100, "every target scraped");
    for (p, hits) in &by_path {
        assert!(
            (2..=4).contains(&hits.len()),
            "{p}: {} scrapes in three intervals",
            hits.len()
        );
        for w in hits.windows(2) {
            assert!(
                w[1] - w[0] > interval.as_millis() as i64 * 4 / 5,
                "{p} scraped twice within {} ms",
                w[1] - w[0]
            );
        }
    }

    let killed = now_ms();
    end(a);
    let survivor_all = || active_targets(&b).len() == 100;
    wait_until(
        "the survivor takes every target",
        Duration::from_secs(30),
        survivor_all,
    );
    let covered = now_ms();
    // Within three intervals of the kill, every target has been scraped again.
    let deadline = killed + 3 * interval.as_millis() as i64;
    wait_until(
        "every target scraped after the kill",
        Duration::from_secs(30),
        || {
            let after: BTreeSet<String> = target
                .hits()
                .into_iter()
                .filter(|h| h.at_ms > killed)
                .map(|h| h.path)
                .collect();
            after.len() == 100
        },
    );
    let last_first: i64 = {
        let mut first: BTreeMap<String, i64> = BTreeMap::new();
        for h in target.hits().into_iter().filter(|h| h.at_ms > killed) {
            first.entry(h.path).or_insert(h.at_ms);
        }
        *first.values().max().unwrap()
    };
    eprintln!(
        "takeover: every target scraped again by {} ms after the stop (survivor held all at +{} ms)",
        last_first - killed,
        covered - killed
    );
    assert!(
        last_first <= deadline,
        "the last target was scraped again {} ms after the kill (the survivor held all at +{} ms)",
        last_first - killed,
        covered - killed
    );
    drop(b);
}

/// On tansu, with the replica stopped (SIGTERM): it leaves the group and the other takes
/// its shards at once. A replica killed with SIGKILL keeps its shards on tansu 0.6, whose
/// coordinator never hands a dead member's partitions over (see the tsdb-writer's
/// takeover tests); the test below shows the kill on a coordinator that does.
#[test]
fn two_replicas_scrape_each_target_once_and_one_covers_all_when_the_other_stops() {
    ensure_stack();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("prometheus.yml");
    let vm = Vm::start();
    let pipeline = Pipeline::with_scrape(&vm, 2, &config, 16, "");
    two_replicas(&pipeline, &config, Duration::from_secs(5), |a| {
        assert!(a.terminate().success())
    });
}

/// The same with SIGKILL, on librdkafka's mock cluster, whose group coordinator expires a
/// dead member's session (6 s here) as Kafka does; the replicas are the real processes.
/// The interval is 10 s: a takeover is the session timeout, the rebalance (~5 s on the
/// mock) and then the target's slot in its interval (up to one interval); with 5 s it
/// measured 15.9 s, just over three intervals.
#[test]
fn two_replicas_one_killed_the_other_covers_all_within_three_intervals() {
    let mock = rdkafka::mocking::MockCluster::new(1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("prometheus.yml");
    let pipeline = Pipeline::scrape_on_kafka(
        &mock.bootstrap_servers(),
        "http://127.0.0.1:1/api/v1/write",
        2,
        &config,
        16,
        "",
    );
    mock.create_topic(&pipeline.raw, 2, 1).unwrap();
    mock.create_topic(&pipeline.shards_topic(), 16, 1).unwrap();
    two_replicas(
        &pipeline,
        &config,
        Duration::from_secs(10),
        weir_e2e::Service::kill9,
    );
}

#[test]
fn unsupported_options_are_refused_naming_job_and_option_and_sighup_reloads() {
    ensure_stack();
    let dir = tempfile::tempdir().unwrap();
    let bad = write_config(
        dir.path(),
        "scrape_configs:\n  - job_name: pods\n    kubernetes_sd_configs: [{role: pod}]\n",
    );
    let vm = Vm::start();
    let pipeline = Pipeline::with_scrape(&vm, 1, &bad, 1, "");
    let out = weir(&["check", "-f", pipeline.topo.path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", out.stdout_text());
    let err = out.stderr_text();
    assert!(
        err.contains("\"pods\"") && err.contains("kubernetes_sd_configs"),
        "{err}"
    );

    // A good configuration, then SIGHUP after a job was added.
    let target = target_server(Arc::new(AtomicBool::new(false)));
    let t = target.target();
    let one = format!("global: {{scrape_interval: 1s, scrape_timeout: 900ms}}\nscrape_configs:\n  - job_name: one\n    metrics_path: /text\n    static_configs: [{{targets: ['{t}']}}]\n");
    std::fs::write(&bad, &one).unwrap();
    let _writer = pipeline.writer();
    let scrape = pipeline.scrape();
    let targets = || -> serde_json::Value {
        http()
            .build()
            .unwrap()
            .get(scrape.url("/api/v1/targets"))
            .send()
            .unwrap()
            .json()
            .unwrap()
    };
    wait_until("job one is up", Duration::from_secs(30), || {
        targets()["data"]["activeTargets"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["scrapePool"] == "one" && t["health"] == "up")
    });
    std::fs::write(&bad, format!("{one}  - job_name: two\n    metrics_path: /om\n    static_configs: [{{targets: ['{t}']}}]\n")).unwrap();
    scrape.signal("HUP");
    wait_until(
        "job two is up after SIGHUP",
        Duration::from_secs(30),
        || {
            targets()["data"]["activeTargets"]
                .as_array()
                .unwrap()
                .iter()
                .any(|t| t["scrapePool"] == "two" && t["health"] == "up")
        },
    );
    let v = targets();
    let two = v["data"]["activeTargets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["scrapePool"] == "two")
        .unwrap()
        .clone();
    assert_eq!(two["labels"]["job"], "two");
    assert_eq!(two["discoveredLabels"]["__metrics_path__"], "/om");
    assert_eq!(two["scrapeUrl"], format!("http://{t}/om"));
    // A broken file on SIGHUP keeps the running configuration.
    std::fs::write(&bad, "scrape_configs: [{job_name: x, bogus: 1}]\n").unwrap();
    scrape.signal("HUP");
    wait_until("the broken reload refused", Duration::from_secs(30), || {
        weir_e2e::metric(&scrape, "weir_scrape_reloads_total{outcome=\"failed\"}") >= 1.0
    });
    assert_eq!(
        targets()["data"]["activeTargets"].as_array().unwrap().len(),
        2
    );
    let up = vm.wait_for(r#"up{job="two"}"#, Duration::from_secs(20), |m| {
        !m.is_empty()
    });
    assert!(!up.is_empty(), "job two's samples reach VictoriaMetrics");
}

/// Weir's requests among a target's hits (Prometheus scrapes the same targets).
fn weir_hits(target: &TargetServer, path: &str) -> Vec<weir_e2e::scrape::Hit> {
    target
        .hits()
        .into_iter()
        .filter(|h| h.user_agent.starts_with("weir-scrape/") && h.path.starts_with(path))
        .collect()
}

#[test]
fn http_sd_basic_auth_bearer_and_mutual_tls_give_what_prometheus_gives() {
    use weir_e2e::tls::{Stunnel, TestCa};
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let vanish = Arc::new(AtomicBool::new(false));
    let expose = |required: Option<&str>| {
        let v = vanish.clone();
        TargetServer::start_requiring(
            Arc::new(move |p: &str| exposition(p, v.load(Ordering::Relaxed))),
            required.map(String::from),
        )
    };
    // basic_auth (password from a file, as Prometheus reads it: the file's content with
    // surrounding whitespace trimmed) and authorization (a bearer token from a file).
    let basic = expose(Some("Basic c2NyYXBlcjpzM2NyZXQ="));
    let bearer = expose(Some("Bearer t0ken-from-file"));
    std::fs::write(d.join("password"), "s3cret\n").unwrap();
    std::fs::write(d.join("token"), "t0ken-from-file\n").unwrap();
    // Mutual TLS: stunnel in front of a plain target, demanding a client certificate of
    // the test's CA; a second CA that signed nothing here.
    let plain = expose(None);
    let ca = TestCa::new(d, "scrape");
    let server = ca.issue("127.0.0.1", "target");
    let client = ca.issue("weir-scrape", "client");
    let foreign = TestCa::new(d, "foreign");
    let tls = Stunnel::start_verifying(d, "target", &server, &plain.target(), &ca.cert);
    let tls_target = format!("127.0.0.1:{}", tls.port);
    // http_sd: the groups a server of the test's own answers, changed mid-run.
    let groups = Arc::new(std::sync::Mutex::new(String::new()));
    let set_groups = |g: &[(&str, &str)]| {
        let list: Vec<String> = g
            .iter()
            .map(|(path, group)| {
                format!(
                    r#"{{"targets": ["{}"], "labels": {{"__metrics_path__": "{path}", "group": "{group}"}}}}"#,
                    plain.target()
                )
            })
            .collect();
        *groups.lock().unwrap() = format!("[{}]", list.join(","));
    };
    set_groups(&[("/text", "one")]);
    let g = groups.clone();
    let sd = TargetServer::start(Arc::new(move |p: &str| {
        (p == "/sd").then(|| Response {
            content_type: "application/json",
            body: g.lock().unwrap().clone(),
            gzip: false,
        })
    }));
    let files = |f: &str| d.join(f).display().to_string();
    let config = write_config(
        d,
        &format!(
            r#"global: {{scrape_interval: 1s, scrape_timeout: 900ms}}
scrape_configs:
  - job_name: basic
    metrics_path: /text
    basic_auth: {{username: scraper, password_file: '{password}'}}
    static_configs: [{{targets: ['{basic}']}}]
  - job_name: basic_wrong
    metrics_path: /text
    basic_auth: {{username: scraper, password: wrong}}
    static_configs: [{{targets: ['{basic}']}}]
  - job_name: bearer
    metrics_path: /om
    authorization: {{credentials_file: '{token}'}}
    static_configs: [{{targets: ['{bearer}']}}]
  - job_name: mtls
    scheme: https
    metrics_path: /text
    tls_config: {{ca_file: '{ca}', cert_file: '{cert}', key_file: '{key}'}}
    static_configs: [{{targets: ['{tls_target}']}}]
  - job_name: mtls_without_certificate
    scheme: https
    metrics_path: /text
    tls_config: {{ca_file: '{ca}'}}
    static_configs: [{{targets: ['{tls_target}']}}]
  - job_name: tls_foreign_ca
    scheme: https
    metrics_path: /text
    tls_config: {{ca_file: '{foreign_ca}', cert_file: '{cert}', key_file: '{key}'}}
    static_configs: [{{targets: ['{tls_target}']}}]
  - job_name: sd
    http_sd_configs: [{{url: 'http://{sd}/sd', refresh_interval: 1s}}]
    relabel_configs:
      - {{source_labels: [__meta_url], target_label: sd_url}}
"#,
            password = files("password"),
            token = files("token"),
            basic = basic.target(),
            bearer = bearer.target(),
            ca = ca.cert.display(),
            foreign_ca = foreign.cert.display(),
            cert = client.cert.display(),
            key = client.key.display(),
            sd = sd.target(),
        ),
    );
    let s = SideBySide::start(&config);
    let all =
        r#"{job=~"basic|basic_wrong|bearer|mtls|mtls_without_certificate|tls_foreign_ca|sd"}"#;
    s.wait_up(all, 7);
    let from = now_ms();
    let group = |g: &str| format!(r#"test_second_gauge{{job="sd",group="{g}",kind="a"}}"#);
    s.wait_samples(
        "both scraped the http_sd target four times",
        &group("one"),
        from,
        4,
    );
    // The SD server's answer changes: a second group, the same target under another path.
    set_groups(&[("/text", "one"), ("/om", "two")]);
    let changed = now_ms();
    s.wait_samples(
        "both scraped the target the http_sd server added four times",
        &group("two"),
        changed,
        4,
    );
    let end = now_ms() - 3_000;
    let window = Duration::from_millis((end - from - 2_000) as u64);
    let (prom, weir) = s.both(all, end, window);
    assert_same_series("every job", &prom, &weir);

    // up as Prometheus has it: 1 with the right credentials, 0 with a wrong password
    // (401), without a client certificate (the handshake is refused) or with a CA that
    // did not sign the target's certificate.
    let up = |m: &Samples, job: &str| -> BTreeSet<u64> {
        m.iter()
            .filter(|(k, _)| k.starts_with("up{") && k.contains(&format!("job=\"{job}\"")))
            .flat_map(|(_, v)| v.iter().map(|p| p.1 as u64))
            .collect()
    };
    for (job, want) in [
        ("basic", 1),
        ("basic_wrong", 0),
        ("bearer", 1),
        ("mtls", 1),
        ("mtls_without_certificate", 0),
        ("tls_foreign_ca", 0),
        ("sd", 1),
    ] {
        assert_eq!(
            up(&prom, job),
            BTreeSet::from([want]),
            "Prometheus' up of {job}"
        );
        assert_eq!(up(&weir, job), BTreeSet::from([want]), "weir's up of {job}");
    }
    let sd_url = format!("http://{}/sd", sd.target());
    for want in [
        format!(
            r#"test_requests_total{{code="200",exported_job="exposed",instance="{}",job="basic"}}"#,
            basic.target()
        ),
        format!(
            r#"test_size_bytes{{instance="{}",job="bearer"}}"#,
            bearer.target()
        ),
        format!(r#"test_untyped{{instance="{tls_target}",job="mtls",path="a\"b\\c"}}"#),
        format!(
            r#"test_second_gauge{{group="two",instance="{}",job="sd",kind="a",sd_url="{sd_url}"}}"#,
            plain.target()
        ),
    ] {
        assert!(
            weir.contains_key(&want),
            "{want} missing; have e.g. {:?}",
            weir.keys().take(8).collect::<Vec<_>>()
        );
    }
    // What weir sent: the credentials each job names, to the target it names.
    let headers = |t: &TargetServer, path: &str| -> BTreeSet<String> {
        weir_hits(t, path)
            .into_iter()
            .map(|h| h.authorization)
            .collect()
    };
    assert_eq!(
        headers(&basic, "/text"),
        BTreeSet::from([
            "Basic c2NyYXBlcjpzM2NyZXQ=".to_string(),
            // scraper:wrong
            "Basic c2NyYXBlcjp3cm9uZw==".to_string()
        ])
    );
    assert_eq!(
        headers(&bearer, "/om"),
        BTreeSet::from(["Bearer t0ken-from-file".to_string()])
    );
    // The TLS target saw weir only through the one job with the client certificate.
    assert!(!weir_hits(&plain, "/text").is_empty());
    assert!(
        weir_hits(&sd, "/sd").len() >= 3,
        "weir polls the http_sd server every refresh_interval"
    );
}
