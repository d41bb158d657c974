//! Rule files in Prometheus' format, loaded and checked: every expression compiled to a
//! streaming [`Plan`], every template parsed. A rule the engine cannot evaluate is an
//! error that names the file, the group, the rule and the construct.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::plan::{Plan, PlanError};
use crate::template::{Template, TemplateError};

impl Group {
    /// Scopes every rule to `tenant` (see [`Plan::scope_to`]); their alerts carry the
    /// tenant label, whatever the rule set for it.
    pub fn scope_to(&mut self, label: &str, tenant: &str) -> Result<(), RuleError> {
        let static_tenant = Template::parse(tenant).map_err(|e| RuleError::Group {
            path: self.file.clone(),
            group: self.name.clone(),
            problem: format!("tenant {tenant:?} as a label: {e}"),
        })?;
        for r in &mut self.rules {
            r.plan.scope_to(label, tenant);
            r.labels.retain(|(k, _)| k != label);
            r.labels.push((label.to_string(), static_tenant.clone()));
        }
        Ok(())
    }
}

/// Prometheus' default group interval.
pub const DEFAULT_INTERVAL_MS: i64 = 60_000;

#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("{path}: group {group:?}, rule {rule:?}: {problem}")]
    Rule {
        path: PathBuf,
        group: String,
        rule: String,
        problem: String,
    },
    #[error("{path}: group {group:?}: {problem}")]
    Group {
        path: PathBuf,
        group: String,
        problem: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDef {
    groups: Vec<GroupDef>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupDef {
    name: String,
    interval: Option<String>,
    #[serde(default)]
    limit: Option<u64>,
    #[serde(default)]
    rules: Vec<RuleDef>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleDef {
    alert: Option<String>,
    record: Option<String>,
    expr: serde_yaml::Value,
    #[serde(rename = "for")]
    for_: Option<String>,
    keep_firing_for: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

/// One alerting rule, ready to evaluate.
#[derive(Debug, Clone)]
pub struct AlertRule {
    pub name: String,
    pub expr: String,
    pub plan: Plan,
    pub for_ms: i64,
    pub keep_firing_for_ms: i64,
    pub labels: Vec<(String, Template)>,
    pub annotations: Vec<(String, Template)>,
}

#[derive(Debug, Clone)]
pub struct Group {
    pub file: PathBuf,
    pub name: String,
    pub interval_ms: i64,
    pub rules: Vec<AlertRule>,
}

/// Parses a Prometheus duration (`90s`, `1h30m`, `2d`, `0m`): units `y w d h m s ms`,
/// each at most once, largest first. Not promql-parser's: it refuses zero durations such
/// as promtool's `eval_time: 0m`.
pub fn duration_ms(s: &str) -> Result<i64, String> {
    const UNITS: [(&str, i64); 7] = [
        ("y", 365 * 24 * 3_600_000),
        ("w", 7 * 24 * 3_600_000),
        ("d", 24 * 3_600_000),
        ("h", 3_600_000),
        ("ms", 1),
        ("m", 60_000),
        ("s", 1_000),
    ];
    let bad = || format!("bad duration {s:?} (e.g. 30s, 5m, 1h30m)");
    if s == "0" {
        return Ok(0);
    }
    let mut rest = s;
    let mut total: i64 = 0;
    let mut last_size = i64::MAX;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(bad());
        }
        let n: i64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let (unit, size) = UNITS
            .iter()
            .find(|(u, _)| rest.starts_with(u))
            .ok_or_else(bad)?;
        if *size >= last_size {
            return Err(bad());
        }
        last_size = *size;
        rest = &rest[unit.len()..];
        total = n
            .checked_mul(*size)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(bad)?;
    }
    Ok(total)
}

/// Loads one rule file.
pub fn load_file(path: &Path) -> Result<Vec<Group>, RuleError> {
    load_file_with_interval(path, DEFAULT_INTERVAL_MS)
}

/// Loads one rule file; groups without an `interval` get `default_interval_ms`.
pub fn load_file_with_interval(
    path: &Path,
    default_interval_ms: i64,
) -> Result<Vec<Group>, RuleError> {
    let text = std::fs::read_to_string(path).map_err(|source| RuleError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse_file_with_interval(path, &text, default_interval_ms)
}

/// Parses the text of a rule file (`path` is only for messages).
pub fn parse_file(path: &Path, text: &str) -> Result<Vec<Group>, RuleError> {
    parse_file_with_interval(path, text, DEFAULT_INTERVAL_MS)
}

fn parse_file_with_interval(
    path: &Path,
    text: &str,
    default_interval_ms: i64,
) -> Result<Vec<Group>, RuleError> {
    let def: FileDef = serde_yaml::from_str(text).map_err(|e| RuleError::Syntax {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let mut seen = Vec::new();
    let mut groups = Vec::new();
    for g in def.groups {
        let group_err = |problem: String| RuleError::Group {
            path: path.to_path_buf(),
            group: g.name.clone(),
            problem,
        };
        if seen.contains(&g.name) {
            return Err(group_err("a second group of that name".into()));
        }
        seen.push(g.name.clone());
        if g.limit.is_some_and(|l| l > 0) {
            return Err(group_err("`limit` is not supported".into()));
        }
        let interval_ms = match &g.interval {
            Some(i) => duration_ms(i).map_err(group_err)?,
            None => default_interval_ms,
        };
        if interval_ms <= 0 {
            return Err(group_err("the interval must be positive".into()));
        }
        let mut rules = Vec::new();
        for (i, r) in g.rules.into_iter().enumerate() {
            let name = r
                .alert
                .clone()
                .or(r.record.clone())
                .unwrap_or_else(|| format!("#{}", i + 1));
            let rule_err = |problem: String| RuleError::Rule {
                path: path.to_path_buf(),
                group: g.name.clone(),
                rule: name.clone(),
                problem,
            };
            if r.record.is_some() {
                return Err(rule_err(
                    "recording rules are not evaluated by the alerter (only `alert` rules)".into(),
                ));
            }
            if r.alert.is_none() {
                return Err(rule_err("a rule needs `alert`".into()));
            }
            rules.push(compile_rule(name.clone(), r).map_err(rule_err)?);
        }
        groups.push(Group {
            file: path.to_path_buf(),
            name: g.name,
            interval_ms,
            rules,
        });
    }
    Ok(groups)
}

fn compile_rule(name: String, r: RuleDef) -> Result<AlertRule, String> {
    let expr = match r.expr {
        serde_yaml::Value::String(s) => s,
        serde_yaml::Value::Number(n) => n.to_string(),
        _ => return Err("`expr` must be a string".into()),
    };
    let plan = Plan::parse(&expr).map_err(|e| match e {
        PlanError::Parse(m) => format!("cannot parse expression {expr:?}: {m}"),
        PlanError::Unsupported(m) => format!("expression {expr:?}: {m}"),
    })?;
    let dur = |s: &Option<String>| s.as_deref().map(duration_ms).transpose();
    let templates = |m: BTreeMap<String, String>, what: &str| {
        m.into_iter()
            .map(|(k, v)| {
                Template::parse(&v)
                    .map(|t| (k.clone(), t))
                    .map_err(|e: TemplateError| format!("{what} {k:?}: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()
    };
    Ok(AlertRule {
        name,
        expr,
        plan,
        for_ms: dur(&r.for_)?.unwrap_or(0),
        keep_firing_for_ms: dur(&r.keep_firing_for)?.unwrap_or(0),
        labels: templates(r.labels, "label")?,
        annotations: templates(r.annotations, "annotation")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_and_names_what_it_rejects() {
        let ok = "groups:\n- name: g\n  interval: 5s\n  rules:\n  - alert: Hot\n    expr: temp > 80\n    for: 1m\n    keep_firing_for: 30s\n    labels: {severity: page}\n    annotations: {summary: '{{ $labels.host }} at {{ $value }}'}\n";
        let g = parse_file(Path::new("a.yml"), ok).unwrap();
        assert_eq!(g[0].interval_ms, 5_000);
        assert_eq!(g[0].rules[0].for_ms, 60_000);
        assert_eq!(g[0].rules[0].keep_firing_for_ms, 30_000);
        assert_eq!(duration_ms("1h30m"), Ok(5_400_000));
        assert_eq!(duration_ms("0m"), Ok(0));
        assert_eq!(duration_ms("1m500ms"), Ok(60_500));
        assert!(duration_ms("5").is_err() && duration_ms("1m1h").is_err());
        let bad = "groups:\n- name: g\n  rules:\n  - alert: Ratio\n    expr: a / b > 1\n";
        let e = parse_file(Path::new("a.yml"), bad).unwrap_err().to_string();
        assert!(
            e.contains("\"Ratio\"") && e.contains("between two vectors"),
            "{e}"
        );
        let rec = "groups:\n- name: g\n  rules:\n  - record: x:sum\n    expr: sum(x)\n";
        assert!(parse_file(Path::new("a.yml"), rec)
            .unwrap_err()
            .to_string()
            .contains("recording rules"));
        let tmpl = "groups:\n- name: g\n  rules:\n  - alert: T\n    expr: x > 1\n    annotations: {a: '{{ query \"up\" }}'}\n";
        let e = parse_file(Path::new("a.yml"), tmpl)
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"T\"") && e.contains("query"), "{e}");
    }
}
