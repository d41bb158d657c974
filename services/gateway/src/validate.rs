//! Validation of series before they reach `metrics.raw`. A bad series or sample is
//! rejected on its own: the rest of the request is still written, and the answer names
//! the first problem and how many samples were rejected.
use weir_contract::names::{is_reserved_label_name, is_valid_label_name, is_valid_metric_name};
use weir_contract::Series;
use weir_runtime::config::{NonFinitePolicy, ValidationConfig};

/// Samples rejected so far in one request, and the first reason.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Rejections {
    pub samples: usize,
    pub first: Option<String>,
}

impl Rejections {
    /// Records `n` rejected samples; `why` is only built for the first one.
    pub fn add(&mut self, n: usize, why: impl FnOnce() -> String) {
        if self.first.is_none() {
            self.first = Some(why());
        }
        self.samples += n.max(1);
    }

    pub fn is_empty(&self) -> bool {
        self.samples == 0
    }
}

#[derive(Debug, Clone)]
pub struct Validator {
    cfg: ValidationConfig,
    max_age_ms: i64,
    max_future_ms: i64,
}

/// Samples dropped (not rejected) by policy, e.g. `non_finite: drop`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Dropped(pub usize);

impl Validator {
    pub fn new(cfg: ValidationConfig) -> Self {
        Self {
            max_age_ms: cfg.max_sample_age.as_millis().min(i64::MAX as u128) as i64,
            max_future_ms: cfg.max_sample_future.as_millis().min(i64::MAX as u128) as i64,
            cfg,
        }
    }

    /// Normalises and checks one series in place: sorts labels, drops empty-valued ones
    /// (Prometheus treats them as absent), removes bad samples. Returns false when nothing
    /// of the series is left to write.
    pub fn check(
        &self,
        s: &mut Series,
        now_ms: i64,
        rej: &mut Rejections,
        dropped: &mut Dropped,
    ) -> bool {
        let n = s.samples.len();
        if !is_valid_metric_name(&s.name) {
            rej.add(n, || {
                format!(
                    "series {}: invalid metric name {:?}: must match [a-zA-Z_:][a-zA-Z0-9_:]*",
                    s.key(),
                    s.name
                )
            });
            return false;
        }
        if s.name.len() > self.cfg.max_metric_name_length {
            rej.add(n, || {
                format!(
                    "series {}: metric name longer than {} bytes",
                    s.name, self.cfg.max_metric_name_length
                )
            });
            return false;
        }
        if s.labels.iter().any(|l| l.value.is_empty()) {
            s.labels.retain(|l| !l.value.is_empty());
        }
        s.sort_labels();
        if s.labels.len() > self.cfg.max_labels {
            rej.add(n, || {
                format!(
                    "series {}: {} labels, over the limit of {}",
                    s.key(),
                    s.labels.len(),
                    self.cfg.max_labels
                )
            });
            return false;
        }
        for (i, l) in s.labels.iter().enumerate() {
            let bad = if !is_valid_label_name(&l.name) {
                Some(format!(
                    "invalid label name {:?}: must match [a-zA-Z_][a-zA-Z0-9_]*",
                    l.name
                ))
            } else if is_reserved_label_name(&l.name) {
                Some(format!(
                    "label name {:?} is reserved (names starting with __)",
                    l.name
                ))
            } else if l.name.len() > self.cfg.max_label_name_length {
                Some(format!(
                    "label name {:?} longer than {} bytes",
                    l.name, self.cfg.max_label_name_length
                ))
            } else if l.value.len() > self.cfg.max_label_value_length {
                Some(format!(
                    "value of label {:?} longer than {} bytes",
                    l.name, self.cfg.max_label_value_length
                ))
            } else if i > 0 && s.labels[i - 1].name == l.name {
                Some(format!("duplicate label name {:?}", l.name))
            } else {
                None
            };
            if let Some(why) = bad {
                rej.add(n, || format!("series {}: {why}", s.key()));
                return false;
            }
        }
        let (lo, hi) = (
            now_ms.saturating_sub(self.max_age_ms),
            now_ms.saturating_add(self.max_future_ms),
        );
        let policy = self.cfg.non_finite;
        let before = s.samples.len();
        let mut first_bad: Option<String> = None;
        let mut rejected = 0;
        s.samples.retain(|x| {
            if x.timestamp_ms < lo || x.timestamp_ms > hi {
                rejected += 1;
                first_bad.get_or_insert_with(|| {
                    let which = if x.timestamp_ms < lo { "older than max_sample_age" } else { "newer than max_sample_future" };
                    format!("sample at {} ms is {which} (accepted: {lo}..={hi})", x.timestamp_ms)
                });
                return false;
            }
            if !x.value.is_finite() && !x.is_stale_marker() {
                match policy {
                    NonFinitePolicy::Accept => {}
                    NonFinitePolicy::Drop => {
                        dropped.0 += 1;
                        return false;
                    }
                    NonFinitePolicy::Reject => {
                        rejected += 1;
                        first_bad.get_or_insert_with(|| {
                            format!("sample at {} ms has value {}: NaN and Inf are not accepted (validation.non_finite)", x.timestamp_ms, x.value)
                        });
                        return false;
                    }
                }
            }
            true
        });
        if rejected > 0 {
            let key = s.key();
            rej.add(rejected, || {
                format!("series {key}: {}", first_bad.unwrap_or_default())
            });
        }
        debug_assert!(s.samples.len() <= before);
        !s.samples.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_contract::{Label, Sample};

    const NOW: i64 = 1_700_000_000_000;

    fn check(s: &mut Series) -> (bool, Rejections, Dropped) {
        let v = Validator::new(ValidationConfig {
            non_finite: NonFinitePolicy::Reject,
            ..ValidationConfig::default()
        });
        let (mut r, mut d) = (Rejections::default(), Dropped::default());
        let keep = v.check(s, NOW, &mut r, &mut d);
        (keep, r, d)
    }

    fn series(name: &str, labels: &[(&str, &str)], samples: &[(i64, f64)]) -> Series {
        Series {
            name: name.into(),
            labels: labels.iter().map(|(a, b)| Label::new(*a, *b)).collect(),
            samples: samples.iter().map(|(t, v)| Sample::new(*t, *v)).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn good_series_pass_and_get_sorted() {
        let mut s = series("m", &[("b", "1"), ("a", "2"), ("empty", "")], &[(NOW, 1.0)]);
        let (keep, r, _) = check(&mut s);
        assert!(keep && r.is_empty());
        assert_eq!(s.key(), r#"m{a="2",b="1"}"#);
    }

    #[test]
    fn names_and_duplicates_are_rejected_with_reason() {
        for (s, want) in [
            (
                series("cpu-usage", &[], &[(NOW, 1.0)]),
                "invalid metric name",
            ),
            (
                series("m", &[("a-b", "x")], &[(NOW, 1.0)]),
                "invalid label name",
            ),
            (series("m", &[("__x", "x")], &[(NOW, 1.0)]), "reserved"),
            (
                series("m", &[("a", "x"), ("a", "y")], &[(NOW, 1.0), (NOW, 2.0)]),
                "duplicate label name \"a\"",
            ),
        ] {
            let mut s = s;
            let n = s.samples.len();
            let (keep, r, _) = check(&mut s);
            assert!(!keep);
            assert_eq!(r.samples, n);
            assert!(r.first.as_deref().unwrap().contains(want), "{:?}", r.first);
        }
    }

    #[test]
    fn bad_samples_are_rejected_alone() {
        let stale = f64::from_bits(weir_contract::model::STALE_NAN_BITS);
        let mut s = series(
            "m",
            &[],
            &[
                (NOW, 1.0),
                (NOW, f64::NAN),
                (NOW, f64::INFINITY),
                (0, 1.0),
                (NOW + 86_400_000, 1.0),
                (NOW, stale),
            ],
        );
        let (keep, r, _) = check(&mut s);
        assert!(keep);
        assert_eq!(r.samples, 4);
        assert!(r.first.as_deref().unwrap().contains("NaN"), "{:?}", r.first);
        assert_eq!(s.samples.len(), 2);
        assert!(s.samples[1].is_stale_marker());
    }

    #[test]
    fn too_many_labels() {
        let labels: Vec<(String, String)> = (0..31)
            .map(|i| (format!("l{i:02}"), "v".to_string()))
            .collect();
        let refs: Vec<(&str, &str)> = labels
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        let mut s = series("m", &refs, &[(NOW, 1.0)]);
        let (keep, r, _) = check(&mut s);
        assert!(!keep);
        assert!(r.first.unwrap().contains("over the limit of 30"));
    }
}
