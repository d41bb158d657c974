//! Validation of series before they reach `metrics.raw`. A bad series or sample is
//! rejected on its own: the rest of the request is still written, and the answer names
//! the first problem and how many samples were rejected.
//!
//! Works on borrowed parts (`name`, `(label, value)` pairs, samples) so the remote-write
//! path can validate straight from the request buffer.
use weir_contract::names::{is_reserved_label_name, is_valid_label_name, is_valid_metric_name};
use weir_contract::series_key::write_key_parts;
use weir_contract::Sample;
use weir_runtime::config::{NonFinitePolicy, ValidationConfig};

/// A label as borrowed `(name, value)`.
pub type LabelRef<'a> = (&'a str, &'a str);

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

/// Longest series description or name put into an answer: a hostile request's 64 KiB
/// label value must not come back 64 KiB long in every message and log line.
const MAX_DESCRIBED: usize = 256;

/// The series key for messages (only built when something is wrong), cut to
/// [`MAX_DESCRIBED`] bytes.
pub fn describe(name: &str, labels: &[LabelRef<'_>]) -> String {
    let mut s = String::new();
    write_key_parts(&mut s, name, labels.iter().copied());
    if s.len() > MAX_DESCRIBED {
        let cut = truncate(&s).len();
        s.truncate(cut);
        s.push_str("...");
    }
    s
}

/// `s` cut to at most [`MAX_DESCRIBED`] bytes, on a character boundary.
fn truncate(s: &str) -> &str {
    if s.len() <= MAX_DESCRIBED {
        return s;
    }
    let mut end = MAX_DESCRIBED;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[derive(Debug, Clone)]
pub struct Validator {
    cfg: ValidationConfig,
    max_age_ms: i64,
    max_future_ms: i64,
}

impl Validator {
    pub fn new(cfg: ValidationConfig) -> Self {
        Self {
            max_age_ms: cfg.max_sample_age.as_millis().min(i64::MAX as u128) as i64,
            max_future_ms: cfg.max_sample_future.as_millis().min(i64::MAX as u128) as i64,
            cfg,
        }
    }

    /// Normalises the labels in place (drops empty values, which Prometheus treats as
    /// absent; sorts by name) and checks name and labels. `Err` is the reason the whole
    /// series is refused.
    pub fn check_series(&self, name: &str, labels: &mut Vec<LabelRef<'_>>) -> Result<(), String> {
        self.check_name(name, labels)?;
        self.check_labels(labels)
            .map_err(|why| format!("series {}: {why}", describe(name, labels)))
    }

    /// Checks a metric name (`labels` only for the message).
    pub fn check_name(&self, name: &str, labels: &[LabelRef<'_>]) -> Result<(), String> {
        if !is_valid_metric_name(name) {
            return Err(format!(
                "series {}: invalid metric name {:?}: must match [a-zA-Z_:][a-zA-Z0-9_:]*",
                describe(name, labels),
                truncate(name)
            ));
        }
        if name.len() > self.cfg.max_metric_name_length {
            return Err(format!(
                "series {}: metric name longer than {} bytes",
                truncate(name),
                self.cfg.max_metric_name_length
            ));
        }
        Ok(())
    }

    /// Normalises a label set in place and checks it, without the metric name: line
    /// protocol and JSON share one label set among many series and check it once.
    /// `Err` is the reason, without the series (the caller names it).
    pub fn check_labels(&self, labels: &mut Vec<LabelRef<'_>>) -> Result<(), String> {
        if labels.iter().any(|(_, v)| v.is_empty()) {
            labels.retain(|(_, v)| !v.is_empty());
        }
        if !labels.windows(2).all(|w| w[0].0 <= w[1].0) {
            labels.sort_unstable_by(|a, b| a.0.cmp(b.0));
        }
        if labels.len() > self.cfg.max_labels {
            return Err(format!(
                "{} labels, over the limit of {}",
                labels.len(),
                self.cfg.max_labels
            ));
        }
        for (i, (n, v)) in labels.iter().enumerate() {
            let bad = if !is_valid_label_name(n) {
                Some(format!(
                    "invalid label name {:?}: must match [a-zA-Z_][a-zA-Z0-9_]*",
                    truncate(n)
                ))
            } else if is_reserved_label_name(n) {
                Some(format!(
                    "label name {:?} is reserved (names starting with __)",
                    truncate(n)
                ))
            } else if n.len() > self.cfg.max_label_name_length {
                Some(format!(
                    "label name {:?} longer than {} bytes",
                    truncate(n),
                    self.cfg.max_label_name_length
                ))
            } else if v.len() > self.cfg.max_label_value_length {
                Some(format!(
                    "value of label {n:?} longer than {} bytes",
                    self.cfg.max_label_value_length
                ))
            } else if i > 0 && labels[i - 1].0 == *n {
                Some(format!("duplicate label name {n:?}"))
            } else {
                None
            };
            if let Some(why) = bad {
                return Err(why);
            }
        }
        Ok(())
    }

    /// Copies the acceptable samples of `samples` into `kept` (cleared first). Returns how
    /// many were rejected and the first reason; samples dropped by policy are counted in
    /// `dropped`.
    pub fn filter_samples(
        &self,
        samples: &[Sample],
        now_ms: i64,
        kept: &mut Vec<Sample>,
        dropped: &mut usize,
    ) -> (usize, Option<String>) {
        kept.clear();
        let (lo, hi) = (
            now_ms.saturating_sub(self.max_age_ms),
            now_ms.saturating_add(self.max_future_ms),
        );
        let mut rejected = 0;
        let mut first = None;
        for x in samples {
            if x.timestamp_ms < lo || x.timestamp_ms > hi {
                rejected += 1;
                first.get_or_insert_with(|| {
                    let which = if x.timestamp_ms < lo {
                        "older than max_sample_age"
                    } else {
                        "newer than max_sample_future"
                    };
                    format!(
                        "sample at {} ms is {which} (accepted: {lo}..={hi})",
                        x.timestamp_ms
                    )
                });
                continue;
            }
            if !x.value.is_finite() && !x.is_stale_marker() {
                match self.cfg.non_finite {
                    NonFinitePolicy::Accept => {}
                    NonFinitePolicy::Drop => {
                        *dropped += 1;
                        continue;
                    }
                    NonFinitePolicy::Reject => {
                        rejected += 1;
                        first.get_or_insert_with(|| {
                            format!(
                                "sample at {} ms has value {}: NaN and Inf are not accepted (validation.non_finite)",
                                x.timestamp_ms, x.value
                            )
                        });
                        continue;
                    }
                }
            }
            kept.push(*x);
        }
        (rejected, first)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000_000;

    fn validator() -> Validator {
        Validator::new(ValidationConfig {
            non_finite: NonFinitePolicy::Reject,
            ..ValidationConfig::default()
        })
    }

    #[test]
    fn good_series_pass_and_get_sorted() {
        let mut labels = vec![("b", "1"), ("a", "2"), ("empty", "")];
        validator().check_series("m", &mut labels).unwrap();
        assert_eq!(describe("m", &labels), r#"m{a="2",b="1"}"#);
    }

    #[test]
    fn names_and_duplicates_are_rejected_with_reason() {
        for (name, labels, want) in [
            ("cpu-usage", vec![], "invalid metric name"),
            ("m", vec![("a-b", "x")], "invalid label name"),
            ("m", vec![("__x", "x")], "reserved"),
            (
                "m",
                vec![("a", "x"), ("a", "y")],
                "duplicate label name \"a\"",
            ),
        ] {
            let mut labels = labels;
            let e = validator().check_series(name, &mut labels).unwrap_err();
            assert!(e.contains(want), "{e}");
        }
    }

    #[test]
    fn bad_samples_are_rejected_alone() {
        let stale = f64::from_bits(weir_contract::model::STALE_NAN_BITS);
        let samples: Vec<Sample> = [
            (NOW, 1.0),
            (NOW, f64::NAN),
            (NOW, f64::INFINITY),
            (0, 1.0),
            (NOW + 86_400_000, 1.0),
            (NOW, stale),
        ]
        .iter()
        .map(|(t, v)| Sample::new(*t, *v))
        .collect();
        let (mut kept, mut dropped) = (Vec::new(), 0);
        let (rejected, first) = validator().filter_samples(&samples, NOW, &mut kept, &mut dropped);
        assert_eq!(rejected, 4);
        assert!(first.unwrap().contains("NaN"));
        assert_eq!(kept.len(), 2);
        assert!(kept[1].is_stale_marker());
    }

    #[test]
    fn non_finite_policy_drop_and_accept() {
        let samples = [Sample::new(NOW, f64::NAN)];
        for (policy, kept_n, dropped_n) in [
            (NonFinitePolicy::Drop, 0, 1),
            (NonFinitePolicy::Accept, 1, 0),
        ] {
            let v = Validator::new(ValidationConfig {
                non_finite: policy,
                ..ValidationConfig::default()
            });
            let (mut kept, mut dropped) = (Vec::new(), 0);
            let (rejected, _) = v.filter_samples(&samples, NOW, &mut kept, &mut dropped);
            assert_eq!((rejected, kept.len(), dropped), (0, kept_n, dropped_n));
        }
    }

    #[test]
    fn long_names_are_cut_in_messages() {
        let long = "v".repeat(70_000);
        let mut labels = vec![("a", long.as_str())];
        let e = validator().check_series("m", &mut labels).unwrap_err();
        assert!(e.contains("longer than 2048 bytes"), "{e}");
        assert!(e.len() < 600, "message of {} bytes", e.len());
    }

    #[test]
    fn too_many_labels() {
        let names: Vec<String> = (0..31).map(|i| format!("l{i:02}")).collect();
        let mut labels: Vec<LabelRef<'_>> = names.iter().map(|n| (n.as_str(), "v")).collect();
        let e = validator().check_series("m", &mut labels).unwrap_err();
        assert!(e.contains("over the limit of 30"), "{e}");
    }
}
