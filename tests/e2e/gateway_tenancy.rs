//! Tenants at the gateway: API keys rotated in the keys file while a client sends
//! without pause (no request with a valid key refused), and per-tenant limits (a noisy
//! tenant throttled with 429 naming the limit while another's requests all pass; a
//! tenant at its active-series limit; the global new-series guard).
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use weir_e2e::*;

fn hash(key: &str) -> String {
    let out = weir(&["keys", "hash", key]);
    assert!(out.status.success(), "{}", out.stderr_text());
    out.stdout_text().trim().to_string()
}

fn write_keys(path: &Path, keys: &[(&str, &str)], atomically: bool) {
    let mut s = String::from("keys:\n");
    for (tenant, key) in keys {
        s += &format!("  - tenant: {tenant}\n    sha256: {}\n", hash(key));
    }
    if atomically {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, s).unwrap();
        std::fs::rename(&tmp, path).unwrap();
    } else {
        std::fs::write(path, s).unwrap();
    }
}

fn send(
    http: &reqwest::blocking::Client,
    gw: &Gateway,
    key: &str,
    body: String,
) -> (u16, String, Option<String>) {
    let r = http
        .post(gw.url("/write?precision=ms"))
        .header("Authorization", format!("Bearer {key}"))
        .body(body)
        .send()
        .expect("send");
    let status = r.status().as_u16();
    let retry = r
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    (status, r.text().unwrap_or_default(), retry)
}

#[test]
fn keys_rotate_in_the_keys_file_while_a_client_sends_and_no_valid_request_is_refused() {
    ensure_stack();
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys.yaml");
    let (a, b, c) = (
        "first-key-of-acme-000001",
        "second-key-of-acme-00002",
        "third-key-of-acme-000003",
    );
    write_keys(&keys, &[("acme", a)], true);
    let topo = TestTopology::new(
        2,
        &format!(
            "  auth:\n    enabled: true\n    keys_file: '{}'\n    keys_reload_interval: 200ms\n",
            keys.display()
        ),
    );
    topo.apply();
    let gw = Arc::new(Gateway::start(&topo));
    let current = Arc::new(Mutex::new(a.to_string()));
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let sender = {
        let (gw, current, stop, sent) = (gw.clone(), current.clone(), stop.clone(), sent.clone());
        std::thread::spawn(move || {
            let http = client();
            let mut results = Vec::new();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let key = current.lock().unwrap().clone();
                let line = format!("rotation_test,host=h{} value={i} {}", i % 7, now_ms());
                let (status, body, _) = send(&http, &gw, &key, line);
                results.push((key, status, body));
                sent.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
            results
        })
    };
    let keys_loaded = |n: f64| {
        wait_until(&format!("{n} keys loaded"), Duration::from_secs(20), || {
            metric(&gw, "weir_gateway_auth_keys") == n
        })
    };
    // Between changes the client sends at least 20 requests with the key it has.
    let settle = || {
        let from = sent.load(Ordering::Relaxed);
        wait_until("20 more requests sent", Duration::from_secs(30), || {
            sent.load(Ordering::Relaxed) >= from + 20
        })
    };
    settle();
    // 1. Add the new key (file replaced by a rename), wait for the reload, move the
    //    client to it, then retire the old one.
    write_keys(&keys, &[("acme", a), ("acme", b)], true);
    keys_loaded(2.0);
    *current.lock().unwrap() = b.to_string();
    settle();
    write_keys(&keys, &[("acme", b)], true);
    keys_loaded(1.0);
    settle();
    // 2. The same with the file rewritten in place and SIGHUP to reload at once.
    let hup = || {
        let s = Command::new("kill")
            .args(["-HUP", &gw.pid().to_string()])
            .status()
            .unwrap();
        assert!(s.success());
    };
    write_keys(&keys, &[("acme", b), ("acme", c)], false);
    hup();
    keys_loaded(2.0);
    *current.lock().unwrap() = c.to_string();
    settle();
    write_keys(&keys, &[("acme", c)], false);
    hup();
    keys_loaded(1.0);
    settle();
    stop.store(true, Ordering::Relaxed);
    let results = sender.join().unwrap();

    let refused: Vec<_> = results.iter().filter(|(_, s, _)| *s != 204).collect();
    assert!(results.len() >= 50, "only {} requests sent", results.len());
    assert!(
        refused.is_empty(),
        "{} of {} requests refused, first: {:?}",
        refused.len(),
        results.len(),
        refused.first()
    );
    for k in [a, b] {
        let used = results.iter().filter(|(key, _, _)| key == k).count();
        assert!(used > 0, "key {k} was never used");
    }
    let http = client();
    for old in [a, b] {
        let (status, body, _) = send(&http, &gw, old, "rotation_test value=1".into());
        assert_eq!(status, 401, "a retired key still works: {body}");
    }
    assert!(metric(&gw, "weir_gateway_auth_reloads_total{outcome=\"ok\"}") >= 4.0);
    eprintln!(
        "{} requests during four key changes, none refused",
        results.len()
    );
}

fn tenant_gateway(extra: &str) -> (Gateway, TestTopology) {
    let topo = TestTopology::new(
        2,
        &format!(
            "  auth:
    enabled: true
    keys:
      - {{tenant: noisy, key: noisy-tenant-key-000001}}
      - {{tenant: quiet, key: quiet-tenant-key-000001}}
      - {{tenant: cardinal, key: cardinal-tenant-key-0001}}
{extra}"
        ),
    );
    topo.apply();
    let gw = Gateway::start(&topo);
    (gw, topo)
}

fn lines(prefix: &str, series: usize, from: usize) -> String {
    let ts = now_ms();
    (from..from + series)
        .map(|i| format!("{prefix},host=h{i} value={i} {ts}\n"))
        .collect()
}

#[test]
fn a_noisy_tenant_is_throttled_while_another_tenants_requests_all_pass() {
    ensure_stack();
    // 1,000 samples/s with a burst of 2,000; the noisy tenant sends 10x that.
    let (gw, _topo) =
        tenant_gateway("  tenants:\n    defaults: {samples_per_second: 1000, burst: 2000}\n");
    let gw = Arc::new(gw);
    let noisy = {
        let gw = gw.clone();
        std::thread::spawn(move || {
            let http = client();
            let (mut ok, mut throttled, mut first) = (0u64, 0u64, None);
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(4) {
                let (status, body, retry) = send(
                    &http,
                    &gw,
                    "noisy-tenant-key-000001",
                    lines("noisy", 500, 0),
                );
                match status {
                    204 => ok += 1,
                    429 => {
                        throttled += 1;
                        first.get_or_insert((body, retry));
                    }
                    s => panic!("noisy tenant got {s}: {body}"),
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            (ok, throttled, first)
        })
    };
    let http = client();
    let mut quiet = 0;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(4) {
        let (status, body, _) = send(&http, &gw, "quiet-tenant-key-000001", lines("quiet", 50, 0));
        assert_eq!(status, 204, "the quiet tenant was refused: {body}");
        quiet += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    let (ok, throttled, first) = noisy.join().unwrap();
    let (body, retry) = first.expect("the noisy tenant was never throttled");
    assert!(
        throttled > ok,
        "noisy: {ok} accepted, {throttled} throttled"
    );
    // 4 s at 1,000/s plus the 2,000 burst: at most 12 requests of 500.
    assert!(
        ok <= 13,
        "noisy tenant got {ok} requests of 500 samples through in 4 s"
    );
    assert!(
        body.contains("tenant noisy") && body.contains("samples_per_second"),
        "{body}"
    );
    assert!(
        retry
            .and_then(|r| r.parse::<u64>().ok())
            .is_some_and(|r| r >= 1),
        "Retry-After"
    );
    let counted = metric(
        &gw,
        "weir_gateway_tenant_throttled_total{tenant=\"noisy\",limit=\"samples_per_second\"}",
    );
    assert!(
        counted >= throttled as f64,
        "throttles counted: {counted} of {throttled}"
    );
    assert_eq!(
        metric_sum(&gw, "weir_gateway_tenant_throttled_total{tenant=\"quiet\""),
        0.0
    );
    eprintln!("noisy: {ok} accepted, {throttled} throttled; quiet: {quiet} accepted");
}

#[test]
fn active_series_and_new_series_limits_refuse_new_series_and_let_known_ones_pass() {
    ensure_stack();
    let (gw, _topo) = tenant_gateway(
        "  tenants:\n    overrides: {cardinal: {max_active_series: 100}}\n  limits: {max_new_series_per_hour: 300}\n",
    );
    let http = client();
    let key = "cardinal-tenant-key-0001";
    assert_eq!(send(&http, &gw, key, lines("card", 100, 0)).0, 204);
    let (status, body, retry) = send(&http, &gw, key, lines("card", 1, 100));
    assert_eq!(status, 429, "{body}");
    assert!(
        body.contains("max_active_series") && body.contains("100"),
        "{body}"
    );
    assert!(retry.is_some(), "Retry-After");
    // Known series still pass.
    assert_eq!(send(&http, &gw, key, lines("card", 100, 0)).0, 204);
    // Another tenant has no series limit but meets the global guard: 100 new series
    // are admitted so far, 200 more fit, the next do not.
    let quiet = "quiet-tenant-key-000001";
    assert_eq!(send(&http, &gw, quiet, lines("q", 200, 0)).0, 204);
    let (status, body, _) = send(&http, &gw, quiet, lines("q", 1, 200));
    assert_eq!(status, 429, "{body}");
    assert!(body.contains("max_new_series_per_hour"), "{body}");
    assert_eq!(
        send(&http, &gw, quiet, lines("q", 200, 0)).0,
        204,
        "known series after the guard"
    );
    assert_eq!(
        metric(
            &gw,
            "weir_gateway_tenant_active_series{tenant=\"cardinal\"}"
        ),
        100.0
    );
}
