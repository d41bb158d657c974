//! Relabeling as Prometheus does it (`relabel_configs`, `metric_relabel_configs`): every
//! action of Prometheus 2.42's `model/relabel`, regexes anchored at both ends, the
//! replacement expanded with `$1`, `${1}`, `$name`. Shared by `weir scrape` (target and
//! metric relabeling) and by any role that relabels on ingest.
//!
//! Rust's `regex` crate is RE2's syntax without backreferences or lookaround, as Go's
//! `regexp` is; `Captures::expand` takes the longest name after `$` as Go's `Expand`
//! does (`$1x` is the group named `1x`).
use std::fmt;

use md5::{Digest, Md5};
use regex::Regex;
use serde::Deserialize;

/// A label set: `(name, value)` sorted by name, `__name__` among them.
pub type Labels = Vec<(String, String)>;

/// What a rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    #[default]
    Replace,
    Keep,
    Drop,
    KeepEqual,
    DropEqual,
    HashMod,
    LabelMap,
    LabelDrop,
    LabelKeep,
    Lowercase,
    Uppercase,
}

/// One rule as it is written in YAML.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelabelSpec {
    #[serde(default)]
    pub source_labels: Vec<String>,
    #[serde(default = "default_separator")]
    pub separator: String,
    #[serde(default)]
    pub target_label: Option<String>,
    #[serde(default)]
    pub regex: Option<String>,
    #[serde(default)]
    pub modulus: Option<u64>,
    #[serde(default)]
    pub replacement: Option<String>,
    #[serde(default)]
    pub action: Action,
}

fn default_separator() -> String {
    ";".into()
}

/// A rule checked and compiled.
#[derive(Clone)]
pub struct Rule {
    source_labels: Vec<String>,
    separator: String,
    target_label: String,
    regex: Regex,
    /// The regex as written, for messages.
    pattern: String,
    modulus: u64,
    replacement: String,
    action: Action,
}

impl fmt::Debug for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} regex={:?}", self.action, self.pattern)
    }
}

/// A rule that cannot be compiled, with the reason as Prometheus would give it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RuleError(pub String);

fn valid_label_name(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

impl RelabelSpec {
    pub fn compile(&self) -> Result<Rule, RuleError> {
        let err = |m: String| Err(RuleError(m));
        let pattern = self.regex.clone().unwrap_or_else(|| "(.*)".into());
        let regex = Regex::new(&format!("^(?s:{pattern})$"))
            .map_err(|e| RuleError(format!("invalid regex {pattern:?}: {e}")))?;
        let target = self.target_label.clone().unwrap_or_default();
        let a = self.action;
        use Action::*;
        if matches!(
            a,
            Replace | HashMod | Lowercase | Uppercase | KeepEqual | DropEqual
        ) && target.is_empty()
        {
            return err(format!(
                "relabel configuration for {} action requires 'target_label' value",
                name(a)
            ));
        }
        if matches!(a, Lowercase | Uppercase | KeepEqual | DropEqual | HashMod)
            && !valid_label_name(&target)
        {
            return err(format!(
                "{target:?} is invalid 'target_label' for {} action",
                name(a)
            ));
        }
        if a == Replace && !target.contains('$') && !valid_label_name(&target) {
            return err(format!(
                "{target:?} is invalid 'target_label' for replace action"
            ));
        }
        if matches!(a, Lowercase | Uppercase | KeepEqual | DropEqual) && self.replacement.is_some()
        {
            return err(format!(
                "'replacement' can not be set for {} action",
                name(a)
            ));
        }
        if matches!(a, KeepEqual | DropEqual) && self.regex.is_some() {
            return err(format!("'regex' can not be set for {} action", name(a)));
        }
        if a == HashMod && self.modulus.unwrap_or(0) == 0 {
            return err("relabel configuration for hashmod requires non-zero modulus".into());
        }
        if matches!(a, LabelDrop | LabelKeep)
            && (!self.source_labels.is_empty()
                || self.target_label.is_some()
                || self.modulus.is_some()
                || self.replacement.is_some())
        {
            return err(format!(
                "{} action requires only 'regex', and no other fields",
                name(a)
            ));
        }
        if self.source_labels.iter().any(|l| !valid_label_name(l)) {
            return err(format!("invalid source label in {:?}", self.source_labels));
        }
        Ok(Rule {
            source_labels: self.source_labels.clone(),
            separator: self.separator.clone(),
            target_label: target,
            regex,
            pattern,
            modulus: self.modulus.unwrap_or(0),
            replacement: self.replacement.clone().unwrap_or_else(|| "$1".into()),
            action: a,
        })
    }
}

fn name(a: Action) -> &'static str {
    use Action::*;
    match a {
        Replace => "replace",
        Keep => "keep",
        Drop => "drop",
        KeepEqual => "keepequal",
        DropEqual => "dropequal",
        HashMod => "hashmod",
        LabelMap => "labelmap",
        LabelDrop => "labeldrop",
        LabelKeep => "labelkeep",
        Lowercase => "lowercase",
        Uppercase => "uppercase",
    }
}

/// Compiles a list of rules; the error names the rule's place (from 0).
pub fn compile_all(specs: &[RelabelSpec]) -> Result<Vec<Rule>, (usize, RuleError)> {
    specs
        .iter()
        .enumerate()
        .map(|(i, s)| s.compile().map_err(|e| (i, e)))
        .collect()
}

fn get<'a>(labels: &'a Labels, name: &str) -> &'a str {
    match labels.binary_search_by(|(n, _)| n.as_str().cmp(name)) {
        Ok(i) => &labels[i].1,
        Err(_) => "",
    }
}

/// Sets `name` to `value`; an empty value deletes the label, as in Prometheus.
pub fn set(labels: &mut Labels, name: &str, value: String) {
    match labels.binary_search_by(|(n, _)| n.as_str().cmp(name)) {
        Ok(i) if value.is_empty() => {
            labels.remove(i);
        }
        Ok(i) => labels[i].1 = value,
        Err(_) if value.is_empty() => {}
        Err(i) => labels.insert(i, (name.to_string(), value)),
    }
}

/// Applies `rules` in order. `false` when a rule dropped the whole set.
pub fn process(labels: &mut Labels, rules: &[Rule]) -> bool {
    rules.iter().all(|r| r.apply(labels))
}

impl Rule {
    fn source_value(&self, labels: &Labels) -> String {
        let mut v = String::new();
        for (i, n) in self.source_labels.iter().enumerate() {
            if i > 0 {
                v.push_str(&self.separator);
            }
            v.push_str(get(labels, n));
        }
        v
    }

    /// Applies this rule; `false` drops the label set.
    pub fn apply(&self, labels: &mut Labels) -> bool {
        use Action::*;
        match self.action {
            Drop => !self.regex.is_match(&self.source_value(labels)),
            Keep => self.regex.is_match(&self.source_value(labels)),
            DropEqual => self.source_value(labels) != get(labels, &self.target_label),
            KeepEqual => self.source_value(labels) == get(labels, &self.target_label),
            Replace => {
                let val = self.source_value(labels);
                let Some(caps) = self.regex.captures(&val) else {
                    return true;
                };
                let mut target = String::new();
                caps.expand(&self.target_label, &mut target);
                if !valid_label_name(&target) {
                    return true;
                }
                let mut res = String::new();
                caps.expand(&self.replacement, &mut res);
                set(labels, &target, res);
                true
            }
            Lowercase => {
                let v = self.source_value(labels).to_lowercase();
                set(labels, &self.target_label, v);
                true
            }
            Uppercase => {
                let v = self.source_value(labels).to_uppercase();
                set(labels, &self.target_label, v);
                true
            }
            HashMod => {
                let sum = Md5::digest(self.source_value(labels).as_bytes());
                let mut tail = [0u8; 8];
                tail.copy_from_slice(&sum[8..]);
                let m = u64::from_be_bytes(tail) % self.modulus;
                set(labels, &self.target_label, m.to_string());
                true
            }
            LabelMap => {
                let mut add = Vec::new();
                for (n, v) in labels.iter() {
                    if self.regex.is_match(n) {
                        let res = self.regex.replace_all(n, self.replacement.as_str());
                        add.push((res.into_owned(), v.clone()));
                    }
                }
                for (n, v) in add {
                    set(labels, &n, v);
                }
                true
            }
            LabelDrop => {
                labels.retain(|(n, _)| !self.regex.is_match(n));
                true
            }
            LabelKeep => {
                labels.retain(|(n, _)| self.regex.is_match(n));
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ls(pairs: &[(&str, &str)]) -> Labels {
        let mut v: Labels = pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        v.sort();
        v
    }

    fn rule(yaml: &str) -> Rule {
        serde_yaml::from_str::<RelabelSpec>(yaml)
            .unwrap()
            .compile()
            .unwrap()
    }

    #[test]
    fn replace_expands_groups_and_an_empty_result_deletes() {
        let r = rule(
            "{source_labels: [a, b], regex: '(.*);(.*)', target_label: c, replacement: '${2}-$1'}",
        );
        let mut l = ls(&[("a", "x"), ("b", "y")]);
        assert!(r.apply(&mut l));
        assert_eq!(get(&l, "c"), "y-x");
        let r = rule("{source_labels: [nothere], target_label: a}");
        assert!(r.apply(&mut l));
        assert_eq!(get(&l, "a"), "", "empty replacement deletes the target");
    }

    #[test]
    fn regexes_are_anchored() {
        let r = rule("{source_labels: [a], regex: 'b', action: keep}");
        assert!(!r.apply(&mut ls(&[("a", "abc")])));
        assert!(r.apply(&mut ls(&[("a", "b")])));
    }

    #[test]
    fn hashmod_matches_prometheus() {
        // Prometheus: md5("foo") = acbd18db4cc2f85cedef654fccc4a4d8; the last 8 bytes as
        // a big-endian u64 = 0xedef654fccc4a4d8; % 1000 = 576 (computed by hand here,
        // and checked against a Prometheus run in tests/e2e/scrape.rs).
        let r = rule("{source_labels: [a], target_label: h, modulus: 1000, action: hashmod}");
        let mut l = ls(&[("a", "foo")]);
        r.apply(&mut l);
        assert_eq!(get(&l, "h"), (0xedef_654f_ccc4_a4d8u64 % 1000).to_string());
    }

    #[test]
    fn labelmap_labeldrop_labelkeep() {
        let mut l = ls(&[("__meta_x_a", "1"), ("__meta_x_b", "2"), ("job", "j")]);
        rule("{regex: '__meta_x_(.+)', action: labelmap}").apply(&mut l);
        assert_eq!(get(&l, "a"), "1");
        assert_eq!(get(&l, "b"), "2");
        rule("{regex: '__meta_.*', action: labeldrop}").apply(&mut l);
        assert_eq!(l.len(), 3);
        rule("{regex: 'a|job', action: labelkeep}").apply(&mut l);
        assert_eq!(l, ls(&[("a", "1"), ("job", "j")]));
    }

    #[test]
    fn equal_actions_and_case() {
        let r = rule("{source_labels: [a], target_label: b, action: keepequal}");
        assert!(r.apply(&mut ls(&[("a", "1"), ("b", "1")])));
        assert!(!r.apply(&mut ls(&[("a", "1"), ("b", "2")])));
        let r = rule("{source_labels: [a], target_label: b, action: dropequal}");
        assert!(!r.apply(&mut ls(&[("a", "1"), ("b", "1")])));
        let mut l = ls(&[("a", "MiXed")]);
        rule("{source_labels: [a], target_label: lo, action: lowercase}").apply(&mut l);
        rule("{source_labels: [a], target_label: up, action: uppercase}").apply(&mut l);
        assert_eq!((get(&l, "lo"), get(&l, "up")), ("mixed", "MIXED"));
    }

    #[test]
    fn bad_rules_are_refused_with_prometheus_reasons() {
        let bad = |y: &str| {
            serde_yaml::from_str::<RelabelSpec>(y)
                .unwrap()
                .compile()
                .unwrap_err()
                .0
        };
        assert!(bad("{action: hashmod, target_label: x}").contains("modulus"));
        assert!(bad("{action: labeldrop, regex: a, target_label: x}").contains("only 'regex'"));
        assert!(bad("{regex: '(', target_label: x}").contains("invalid regex"));
        assert!(bad("{action: lowercase, source_labels: [a]}").contains("target_label"));
    }
}
