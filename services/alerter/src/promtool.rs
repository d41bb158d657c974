//! promtool's rule unit tests (`promtool test rules`), run through weir's engine: the
//! same files pass or fail the same way under both.
//!
//! A test group's `input_series` become samples at `0, interval, 2·interval, …`; every
//! rule group is evaluated at each multiple of the file's `evaluation_interval` up to the
//! last `eval_time`, and an `alert_rule_test` compares the alerts *firing* after the
//! evaluation at or just before its `eval_time`.
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use promql_parser::label::MatchOp;
use promql_parser::parser::{self, Expr};
use serde::Deserialize;

use crate::alerting::Alert;
use crate::engine::Engine;
use crate::evaluate::STALE_NAN;
use crate::labels::{Labels, ALERT_NAME, METRIC_NAME};
use crate::rules::{duration_ms, load_file};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestFile {
    #[serde(default)]
    rule_files: Vec<String>,
    evaluation_interval: Option<String>,
    #[serde(default)]
    group_eval_order: Vec<String>,
    #[serde(default)]
    tests: Vec<TestGroup>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestGroup {
    interval: Option<String>,
    #[serde(default)]
    input_series: Vec<InputSeries>,
    #[serde(default)]
    alert_rule_test: Vec<AlertTest>,
    #[serde(default)]
    promql_expr_test: Vec<serde_yaml::Value>,
    #[serde(default)]
    external_labels: BTreeMap<String, String>,
    /// Accepted as promtool does; `$externalURL` is not among the supported templates.
    #[serde(rename = "external_url")]
    _external_url: Option<String>,
    name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InputSeries {
    series: String,
    values: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AlertTest {
    eval_time: String,
    alertname: String,
    #[serde(default)]
    exp_alerts: Vec<ExpAlert>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpAlert {
    #[serde(default)]
    exp_labels: BTreeMap<String, String>,
    #[serde(default)]
    exp_annotations: BTreeMap<String, String>,
}

/// The outcome of one test file.
#[derive(Debug, Default)]
pub struct FileReport {
    /// Errors that stop the file (unreadable, bad rules, bad series).
    pub errors: Vec<String>,
    /// Failed comparisons, in promtool's wording.
    pub failures: Vec<String>,
}

impl FileReport {
    pub fn passed(&self) -> bool {
        self.errors.is_empty() && self.failures.is_empty()
    }
}

/// Runs one test file; `rule_files` are relative to the file's folder.
pub fn run_file(path: &Path) -> FileReport {
    let mut report = FileReport::default();
    if let Err(e) = run(path, &mut report) {
        report.errors.push(e);
    }
    report
}

fn run(path: &Path, report: &mut FileReport) -> Result<(), String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let file: TestFile =
        serde_yaml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    if !file.group_eval_order.is_empty() {
        return Err("`group_eval_order` is not supported".into());
    }
    let eval_interval = match &file.evaluation_interval {
        Some(d) => duration_ms(d)?,
        None => 60_000,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut groups = Vec::new();
    for f in &file.rule_files {
        groups.extend(load_file(&dir.join(f)).map_err(|e| e.to_string())?);
    }
    // promtool evaluates every group at every evaluation interval.
    for g in &mut groups {
        g.interval_ms = eval_interval;
    }
    for (i, tg) in file.tests.iter().enumerate() {
        if !tg.promql_expr_test.is_empty() {
            return Err(format!(
                "test group {}: `promql_expr_test` is not supported (alert tests only)",
                i + 1
            ));
        }
        let interval = match &tg.interval {
            Some(d) => duration_ms(d)?,
            None => eval_interval,
        };
        let mut engine = Engine::new(groups.clone(), to_labels(&tg.external_labels), 0);
        for s in &tg.input_series {
            let labels = parse_series(&s.series)?;
            for (k, v) in parse_values(&s.values)?.into_iter().enumerate() {
                if let Some(v) = v {
                    engine.push(&labels, k as i64 * interval, v);
                }
            }
        }
        let mut tests: Vec<(i64, &AlertTest)> = Vec::new();
        for t in &tg.alert_rule_test {
            tests.push((duration_ms(&t.eval_time)?, t));
        }
        tests.sort_by_key(|t| t.0);
        let max_t = tests.last().map_or(0, |t| t.0);
        let mut next = 0;
        let mut ts = 0;
        while ts <= max_t {
            engine.advance(ts);
            // Tests whose eval_time falls in [ts, ts + interval) see this evaluation.
            while next < tests.len() && tests[next].0 >= ts && tests[next].0 < ts + eval_interval {
                let (t, test) = tests[next];
                let got = firing(&engine, &test.alertname);
                let mut exp: Vec<(Labels, Labels)> = test
                    .exp_alerts
                    .iter()
                    .map(|a| {
                        let mut l = to_labels(&a.exp_labels);
                        l.set(ALERT_NAME, &test.alertname);
                        (l, to_labels(&a.exp_annotations))
                    })
                    .collect();
                exp.sort();
                if exp != got {
                    let mut msg = String::new();
                    if let Some(n) = &tg.name {
                        let _ = writeln!(msg, "    name: {n},");
                    }
                    let _ = write!(
                        msg,
                        "    alertname: {}, time: {}, \n        exp:{}, \n        got:{}",
                        test.alertname,
                        show_duration(t),
                        show(&exp),
                        show(&got)
                    );
                    report.failures.push(msg);
                }
                next += 1;
            }
            ts += eval_interval;
        }
    }
    Ok(())
}

fn to_labels(m: &BTreeMap<String, String>) -> Labels {
    Labels::new(m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
}

fn firing(engine: &Engine, name: &str) -> Vec<(Labels, Labels)> {
    let mut out: Vec<(Labels, Labels)> = engine
        .rules()
        .filter(|(rule, _)| rule.name == name)
        .flat_map(|(_, state)| state.firing())
        .map(|a: &Alert| (a.labels.clone(), a.annotations.clone()))
        .collect();
    out.sort();
    out
}

/// promtool's listing of alerts in a failure.
fn show(alerts: &[(Labels, Labels)]) -> String {
    if alerts.is_empty() {
        return "[]".into();
    }
    let items: Vec<String> = alerts
        .iter()
        .enumerate()
        .map(|(i, (l, a))| {
            format!("            {i}:\n              Labels:{l}\n              Annotations:{a}")
        })
        .collect();
    format!("[\n{}\n            ]", items.join(",\n"))
}

/// Prints milliseconds as Prometheus prints durations (`1h5m`, `30s`, `0s`).
pub fn show_duration(ms: i64) -> String {
    if ms == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    let mut rest = ms;
    for (unit, size) in [
        ("y", 365 * 24 * 3_600_000),
        ("w", 7 * 24 * 3_600_000),
        ("d", 24 * 3_600_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
        ("ms", 1),
    ] {
        if rest >= size {
            let _ = write!(out, "{}{unit}", rest / size);
            rest %= size;
        }
    }
    out
}

/// A series in promtool's notation: `name{label="value", …}`.
pub fn parse_series(s: &str) -> Result<Labels, String> {
    let e = parser::parse(s).map_err(|e| format!("series {s:?}: {e}"))?;
    let Expr::VectorSelector(vs) = e else {
        return Err(format!("series {s:?}: not a metric with labels"));
    };
    let mut pairs = Vec::new();
    if let Some(n) = &vs.name {
        pairs.push((METRIC_NAME.to_string(), n.clone()));
    }
    for m in &vs.matchers.matchers {
        if !matches!(m.op, MatchOp::Equal) {
            return Err(format!("series {s:?}: only `=` labels describe a series"));
        }
        pairs.push((m.name.clone(), m.value.clone()));
    }
    Ok(Labels::new(pairs))
}

/// Values in promtool's expanding notation: numbers, `_` (no sample), `stale`,
/// `a+bxn` / `a-bxn` (n+1 values from a in steps of b), `axn` (a, n+1 times), `_xn`
/// (n gaps).
pub fn parse_values(s: &str) -> Result<Vec<Option<f64>>, String> {
    let mut out = Vec::new();
    for tok in s.split_whitespace() {
        let bad = || format!("values {s:?}: cannot read {tok:?}");
        if let Some((head, n)) = tok.rsplit_once('x') {
            let n: usize = n.parse().map_err(|_| bad())?;
            if head == "_" {
                out.extend(std::iter::repeat_n(None, n));
                continue;
            }
            // Split `a+b` / `a-b`, the sign of `a` itself aside.
            let split = head
                .char_indices()
                .skip(1)
                .find(|&(i, c)| {
                    (c == '+' || c == '-') && !matches!(head.as_bytes()[i - 1], b'e' | b'E')
                })
                .map(|(i, _)| i);
            let (a, b) = match split {
                Some(i) => {
                    let a = number(&head[..i]).ok_or_else(bad)?;
                    let b = number(&head[i + 1..]).ok_or_else(bad)?;
                    (a, if &head[i..=i] == "-" { -b } else { b })
                }
                None => (number(head).ok_or_else(bad)?, 0.0),
            };
            let mut v = a;
            for _ in 0..=n {
                out.push(Some(v));
                v += b;
            }
            continue;
        }
        match tok {
            "_" => out.push(None),
            "stale" => out.push(Some(f64::from_bits(STALE_NAN))),
            t => out.push(Some(number(t).ok_or_else(bad)?)),
        }
    }
    Ok(out)
}

fn number(s: &str) -> Option<f64> {
    match s {
        "Inf" | "+Inf" | "inf" | "+inf" => Some(f64::INFINITY),
        "-Inf" | "-inf" => Some(f64::NEG_INFINITY),
        "NaN" | "nan" => Some(f64::NAN),
        _ => s.parse().ok(),
    }
}

/// Runs files and prints promtool's report; `true` when every file passed.
pub fn run_files(paths: &[PathBuf], out: &mut impl std::io::Write) -> bool {
    let mut ok = true;
    for p in paths {
        let _ = writeln!(out, "Unit Testing:  {}", p.display());
        let r = run_file(p);
        if r.passed() {
            let _ = writeln!(out, "  SUCCESS\n");
        } else {
            ok = false;
            let _ = writeln!(out, "  FAILED:");
            for e in r.errors.iter().chain(&r.failures) {
                let _ = writeln!(out, "{e}");
            }
            let _ = writeln!(out);
        }
    }
    ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expanding_notation() {
        let v = parse_values("1 _ 3+2x2 5x1 _x2 10-1x2 stale -2").unwrap();
        let plain: Vec<Option<f64>> = v.iter().map(|x| x.filter(|f| !f.is_nan())).collect();
        assert_eq!(
            plain,
            vec![
                Some(1.0),
                None,
                Some(3.0),
                Some(5.0),
                Some(7.0),
                Some(5.0),
                Some(5.0),
                None,
                None,
                Some(10.0),
                Some(9.0),
                Some(8.0),
                None,
                Some(-2.0)
            ]
        );
        assert!(v[12].unwrap().is_nan());
        assert!(parse_values("1 x").is_err());
    }

    #[test]
    fn series_notation() {
        assert_eq!(
            parse_series("up{job=\"a\", instance=\"b\"}").unwrap(),
            Labels::from_strs(&[("__name__", "up"), ("instance", "b"), ("job", "a")])
        );
        assert_eq!(show_duration(3_900_000), "1h5m");
    }
}
