//! What every consumer checks on each series it decodes, before the window engine sees
//! it: the data contract's naming rules (a direct producer may write anything), and event
//! time bounded against the consumer's clock. A series that breaks the contract is cut
//! from its record whole, with the rule it breaks as the reason (`invalid_label_name`,
//! `unsorted_labels`, ...): read anyway, unsorted labels would split one series into
//! several keys, and a `__name__` label would collide with the name.
//!
//! Event time is bounded against the consumer's clock. A sample dated further ahead
//! than `max_future` (a device with a wrong clock, a direct producer's bug) would move
//! its partition's watermark into the future: every later sample of the partition would
//! count as late, windows would close at once, and the alerter would step its rules
//! towards that date. Such samples, and samples before the Unix epoch (which no TSDB
//! keeps, and which keep window and step arithmetic far from `i64::MIN`), are cut out of
//! a record while it is decoded, before they reach the window engine: they move no
//! watermark and create no steps, and go to the dead-letter topic as a record of their
//! own (the same schema, only the cut samples), with the reason.
//!
//! The partition is checked too: a series must be in the partition its key hashes to
//! (docs/producing.md). Found in another, its samples would meet a second copy of its
//! state on another worker (two partial windows, two alert states for one series), so it
//! is cut like a broken name, kind `wrong_partition`. After partitions are added to a
//! topic, records written before the increase hash differently: a consumer replaying
//! such a log turns the check off (`check_partition: false` in its role's config).
//!
//! Samples far in the past but after the epoch are not cut: they are what a backfill or a
//! replay sends. They move no watermark forward (it is a maximum) and are late where a
//! window already closed (see the late topic); the alerter starts a partition's steps no
//! earlier than its catch-up bound.
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use weir_contract::avro::{BatchEncoder, SeriesRef};
use weir_contract::names::{check_series, Violation};
use weir_contract::partitioner::partition_for_key;
use weir_contract::series_key::write_key_parts;
use weir_contract::Sample;

/// The earliest event time accepted: the Unix epoch.
pub const MIN_EVENT_TIME: i64 = 0;

/// Samples cut from one record, ready for the dead-letter topic.
#[derive(Debug)]
pub struct Cut {
    /// The cut samples as a record of the data contract (single-object encoding).
    pub payload: Vec<u8>,
    pub kind: &'static str,
    pub error: String,
}

/// Where a record was read: its partition among the topic's partitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    pub partition: u32,
    pub partitions: u32,
}

/// Cuts what breaks the contract or the event-time bound from records as they are
/// decoded (see the module docs).
#[derive(Debug)]
pub struct InputChecks {
    max_future_ms: i64,
    now_ms: i64,
    cut: BatchEncoder,
    future: usize,
    before_epoch: usize,
    first: Option<i64>,
    /// Samples of series that break the contract, and the first such violation.
    broken: usize,
    violation: Option<Violation>,
    kept: Vec<Sample>,
    /// The record's placement, when the partition is to be checked.
    placement: Option<Placement>,
    check_partition: bool,
    key: String,
}

impl InputChecks {
    pub fn new(max_future: Duration) -> Self {
        Self {
            max_future_ms: max_future.as_millis().min(i64::MAX as u128 / 2) as i64,
            now_ms: 0,
            cut: BatchEncoder::new(),
            future: 0,
            before_epoch: 0,
            first: None,
            broken: 0,
            violation: None,
            kept: Vec::new(),
            placement: None,
            check_partition: true,
            key: String::new(),
        }
    }

    /// Whether series are checked against the partition their key hashes to (see the
    /// module docs); on by default.
    pub fn check_partition(mut self, on: bool) -> Self {
        self.check_partition = on;
        self
    }

    /// The latest event time accepted now.
    pub fn latest(&self, now_ms: i64) -> i64 {
        now_ms.saturating_add(self.max_future_ms)
    }

    /// Starts a record read at `placement` (`None`: the partition count is not known,
    /// and the partition is not checked). The clock is read once per record.
    pub fn start(&mut self, placement: Option<Placement>) {
        self.start_at(wall_clock_ms(), placement);
    }

    /// [`start`](Self::start) at a given clock (tests).
    pub fn start_at(&mut self, now_ms: i64, placement: Option<Placement>) {
        self.now_ms = now_ms;
        self.placement = placement.filter(|p| self.check_partition && p.partitions > 0);
    }

    /// Where the series should have been, when that is not where it is.
    fn misplaced(&mut self, s: &SeriesRef<'_, '_>, key: Option<&str>) -> Option<Violation> {
        let p = self.placement?;
        let key = match key {
            Some(k) => k,
            None => {
                self.key.clear();
                write_key_parts(&mut self.key, s.name, s.labels.iter().copied());
                &self.key
            }
        };
        let home = partition_for_key(key.as_bytes(), p.partitions);
        (home != p.partition).then(|| Violation {
            kind: "wrong_partition",
            message: format!(
                "series {:?} hashes to partition {home} of {}, read from partition {}",
                weir_contract::names::cut(key),
                p.partitions,
                p.partition
            ),
        })
    }

    /// The samples of `s` to use: none when the series breaks the contract, else those
    /// inside the bound. The others are kept aside for [`finish`](Self::finish). In the
    /// common case (all good) this is `s.samples`.
    pub fn within<'x>(&'x mut self, s: &SeriesRef<'x, '_>) -> &'x [Sample] {
        self.within_keyed(s, None)
    }

    /// [`within`](Self::within) for a caller that built the series key already
    /// (`write_key_parts`): the partition check hashes it instead of building it again.
    pub fn within_keyed<'x>(
        &'x mut self,
        s: &SeriesRef<'x, '_>,
        key: Option<&str>,
    ) -> &'x [Sample] {
        let checked = check_series(s.name, s.labels.iter().copied())
            .err()
            .or_else(|| self.misplaced(s, key));
        if let Some(v) = checked {
            self.broken += s.samples.len();
            self.violation.get_or_insert(v);
            self.cut.push_parts(
                s.name,
                s.labels.iter().copied(),
                s.samples,
                s.metric_type,
                s.unit,
                s.tenant,
            );
            return &[];
        }
        let latest = self.latest(self.now_ms);
        let inside = |x: &Sample| (MIN_EVENT_TIME..=latest).contains(&x.timestamp_ms);
        if s.samples.iter().all(inside) {
            return s.samples;
        }
        self.kept.clear();
        let mut cut = Vec::new();
        for x in s.samples {
            if inside(x) {
                self.kept.push(*x);
            } else {
                if x.timestamp_ms > latest {
                    self.future += 1;
                } else {
                    self.before_epoch += 1;
                }
                self.first.get_or_insert(x.timestamp_ms);
                cut.push(*x);
            }
        }
        self.cut.push_parts(
            s.name,
            s.labels.iter().copied(),
            &cut,
            s.metric_type,
            s.unit,
            s.tenant,
        );
        &self.kept
    }

    /// Ends a record: what was cut from it, if anything. The kind is the first reason
    /// (a broken contract before time); the message counts every reason.
    pub fn finish(&mut self) -> Option<Cut> {
        let (future, before, broken) = (self.future, self.before_epoch, self.broken);
        if future + before + broken == 0 {
            return None;
        }
        self.future = 0;
        self.before_epoch = 0;
        self.broken = 0;
        let first = self.first.take().unwrap_or_default();
        let latest = self.latest(self.now_ms);
        if let Some(v) = self.violation.take() {
            metrics::counter!("weir_consumer_samples_out_of_contract_total", "kind" => v.kind)
                .increment(broken as u64);
            let mut error = format!(
                "{broken} sample(s) of series that break the data contract, first: {}",
                v.message
            );
            if future + before > 0 {
                error.push_str(&format!(
                    "; {future} later than max_sample_future, {before} before the epoch"
                ));
            }
            return Some(Cut {
                payload: self.cut.finish(),
                kind: v.kind,
                error,
            });
        }
        let (kind, error) = if future > 0 {
            metrics::counter!("weir_consumer_samples_out_of_range_total", "reason" => "future")
                .increment(future as u64);
            (
                "future_timestamp",
                format!(
                    "{future} sample(s) later than the consumer's clock plus max_sample_future (latest accepted {latest} ms), first at {first} ms; {before} before the epoch"
                ),
            )
        } else {
            (
                "timestamp_before_epoch",
                format!("{before} sample(s) before the Unix epoch, first at {first} ms"),
            )
        };
        if before > 0 {
            metrics::counter!("weir_consumer_samples_out_of_range_total", "reason" => "before_epoch")
                .increment(before as u64);
        }
        Some(Cut {
            payload: self.cut.finish(),
            kind,
            error,
        })
    }

    /// Discards what was cut from a record that then failed to decode (the whole record
    /// goes to the dead-letter topic instead).
    pub fn reset(&mut self) {
        if self.future + self.before_epoch + self.broken > 0 {
            self.cut.finish();
        }
        self.future = 0;
        self.before_epoch = 0;
        self.broken = 0;
        self.first = None;
        self.violation = None;
    }

    /// A restored watermark or maximum event time beyond the bound (written by a version
    /// that had none) is forgotten rather than trusted: it would hold every window of the
    /// partition closed until that date.
    pub fn restored(&self, t: Option<i64>, now_ms: i64) -> Option<i64> {
        t.filter(|t| *t <= self.latest(now_ms))
    }
}

pub fn wall_clock_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_contract::avro::Decoder;
    use weir_contract::MetricType;

    fn series<'s>(samples: &'s [Sample], labels: &'s [(&'s str, &'s str)]) -> SeriesRef<'s, 's> {
        SeriesRef {
            name: "m",
            labels,
            samples,
            metric_type: MetricType::Gauge,
            unit: None,
            tenant: None,
        }
    }

    #[test]
    fn samples_inside_pass_untouched() {
        let mut b = InputChecks::new(Duration::from_secs(600));
        b.start_at(1_000_000, None);
        let s = [Sample::new(1, 1.0), Sample::new(1_000_000 + 600_000, 2.0)];
        assert_eq!(b.within(&series(&s, &[])), &s);
        assert!(b.finish().is_none());
    }

    #[test]
    fn far_future_and_pre_epoch_samples_are_cut_into_a_record_of_their_own() {
        let mut b = InputChecks::new(Duration::from_secs(600));
        let now = 1_700_000_000_000;
        b.start_at(now, None);
        let year_2100 = 4_102_444_800_000;
        let s = [
            Sample::new(now, 1.0),
            Sample::new(year_2100, 2.0),
            Sample::new(i64::MIN, 3.0),
            Sample::new(i64::MAX, 4.0),
            Sample::new(now + 1, 5.0),
        ];
        let labels = [("host", "a")];
        assert_eq!(
            b.within(&series(&s, &labels)),
            &[Sample::new(now, 1.0), Sample::new(now + 1, 5.0)]
        );
        let cut = b.finish().expect("cut");
        assert_eq!(cut.kind, "future_timestamp");
        assert!(cut.error.contains("2 sample(s) later"), "{}", cut.error);
        let batch = Decoder::new().decode(&cut.payload).unwrap();
        assert_eq!(batch.series.len(), 1);
        assert_eq!(batch.series[0].key(), r#"m{host="a"}"#);
        assert_eq!(
            batch.series[0].samples,
            vec![
                Sample::new(year_2100, 2.0),
                Sample::new(i64::MIN, 3.0),
                Sample::new(i64::MAX, 4.0)
            ]
        );
        // The next record starts clean.
        b.start_at(now, None);
        assert_eq!(b.within(&series(&s[..1], &labels)), &s[..1]);
        assert!(b.finish().is_none());
    }

    #[test]
    fn a_series_that_breaks_the_contract_is_cut_whole_with_its_rule() {
        let mut b = InputChecks::new(Duration::from_secs(600));
        b.start_at(1_000_000, None);
        let s = [Sample::new(1, 1.0), Sample::new(2, 2.0)];
        let unsorted = [("b", "1"), ("a", "2")];
        assert!(b.within(&series(&s, &unsorted)).is_empty());
        assert_eq!(b.within(&series(&s, &[("a", "1")])), &s);
        let cut = b.finish().expect("cut");
        assert_eq!(cut.kind, "unsorted_labels");
        let batch = Decoder::new().decode(&cut.payload).unwrap();
        assert_eq!(batch.series.len(), 1);
        assert_eq!(batch.series[0].samples, s.to_vec());
    }

    #[test]
    fn a_series_outside_the_partition_its_key_hashes_to_is_cut() {
        let labels = [("host", "a")];
        let home = partition_for_key(br#"m{host="a"}"#, 4);
        let s = [Sample::new(1, 1.0)];
        let mut b = InputChecks::new(Duration::from_secs(600));
        let at = |partition| {
            Some(Placement {
                partition,
                partitions: 4,
            })
        };
        b.start_at(1_000, at(home));
        assert_eq!(b.within(&series(&s, &labels)), &s);
        assert!(b.finish().is_none());
        b.start_at(1_000, at((home + 1) % 4));
        assert!(b.within(&series(&s, &labels)).is_empty());
        let cut = b.finish().expect("cut");
        assert_eq!(cut.kind, "wrong_partition");
        assert!(
            cut.error
                .contains(&format!("hashes to partition {home} of 4")),
            "{}",
            cut.error
        );
        // The same with the key the caller built.
        b.start_at(1_000, at((home + 1) % 4));
        assert!(b
            .within_keyed(&series(&s, &labels), Some(r#"m{host="a"}"#))
            .is_empty());
        assert_eq!(b.finish().expect("cut").kind, "wrong_partition");
        // Unknown partition count, or the check turned off: not checked.
        b.start_at(1_000, None);
        assert_eq!(b.within(&series(&s, &labels)), &s);
        let mut off = InputChecks::new(Duration::from_secs(600)).check_partition(false);
        off.start_at(1_000, at((home + 1) % 4));
        assert_eq!(off.within(&series(&s, &labels)), &s);
        assert!(off.finish().is_none());
    }

    #[test]
    fn restored_times_past_the_bound_are_forgotten() {
        let b = InputChecks::new(Duration::from_secs(600));
        assert_eq!(b.restored(Some(5), 10), Some(5));
        assert_eq!(b.restored(Some(4_102_444_800_000), 10), None);
        assert_eq!(b.restored(None, 10), None);
    }
}
