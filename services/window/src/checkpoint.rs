//! Which offsets are safe to commit, and what is committed with them.
//!
//! A record may be committed past once every window it contributed to is *final*
//! (the frontier passed the window's end plus the allowed lateness) and the final
//! emissions of those windows were acknowledged by the sinks. Per partition the tracker
//! keeps runs of consecutive offsets with the latest such release time; because a run is
//! only started when the release time grows, the queue stays as short as the number of
//! distinct coarsest windows in flight (an hour of data in a handful of entries).
use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

/// Stored as the commit's metadata beside the offset.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Highest event time of the partition's records before the committed offset: the
    /// partition watermark restarts here, so lateness is judged as in the first run.
    #[serde(rename = "e", default, skip_serializing_if = "Option::is_none")]
    pub max_event: Option<i64>,
    /// The acknowledged watermark when committing: every window whose end plus allowed
    /// lateness is at or below it was emitted for good, and is not emitted again when the
    /// records after the offset are read again.
    #[serde(rename = "w", default, skip_serializing_if = "Option::is_none")]
    pub watermark: Option<i64>,
}

impl Checkpoint {
    pub fn encode(&self) -> String {
        // Serialising two optional integers cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// This checkpoint with times later than `latest` forgotten (see
    /// [`InputChecks::restored`](weir_runtime::input_checks::InputChecks::restored)).
    pub fn bounded(self, latest: i64) -> Self {
        Self {
            max_event: self.max_event.filter(|t| *t <= latest),
            watermark: self.watermark.filter(|t| *t <= latest),
        }
    }

    /// Missing or foreign metadata restores nothing (a group committed by other tools).
    pub fn decode(s: &str) -> Self {
        serde_json::from_str(s).unwrap_or_default()
    }
}

#[derive(Debug, Clone, Copy)]
struct Run {
    first_offset: i64,
    release_at: i64,
    max_event_before: Option<i64>,
}

/// Offsets of one partition not yet safe to commit.
#[derive(Debug, Clone)]
pub struct OffsetTracker {
    runs: VecDeque<Run>,
    next_offset: i64,
    max_event: Option<i64>,
}

impl OffsetTracker {
    /// Starting at `next_offset` with the checkpointed event time.
    pub fn new(next_offset: i64, max_event: Option<i64>) -> Self {
        Self {
            runs: VecDeque::new(),
            next_offset,
            max_event,
        }
    }

    /// Records that `offset` was read; its windows are final at `release_at`
    /// (`None`: it contributed to no window, e.g. all of it was late) and its highest
    /// event time is `max_event`.
    pub fn record(&mut self, offset: i64, release_at: Option<i64>, max_event: Option<i64>) {
        if let Some(r) = release_at {
            match self.runs.back_mut() {
                Some(back) if back.release_at >= r => {}
                _ => self.runs.push_back(Run {
                    first_offset: offset,
                    release_at: r,
                    max_event_before: self.max_event,
                }),
            }
        }
        if let Some(m) = max_event {
            self.max_event = Some(self.max_event.map_or(m, |x| x.max(m)));
        }
        self.next_offset = offset + 1;
    }

    /// Drops the runs released by `acked` and says what may be committed.
    pub fn committable(&mut self, acked: i64) -> (i64, Checkpoint) {
        while self.runs.front().is_some_and(|r| r.release_at <= acked) {
            self.runs.pop_front();
        }
        match self.runs.front() {
            Some(r) => (
                r.first_offset,
                Checkpoint {
                    max_event: r.max_event_before,
                    watermark: Some(acked),
                },
            ),
            None => (
                self.next_offset,
                Checkpoint {
                    max_event: self.max_event,
                    watermark: Some(acked),
                },
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commits_up_to_the_first_record_of_a_window_still_open() {
        let mut t = OffsetTracker::new(10, Some(500));
        t.record(10, Some(1_000), Some(900));
        t.record(11, Some(1_000), Some(950));
        t.record(12, Some(2_000), Some(1_500));
        t.record(13, Some(1_000), Some(800)); // out of order: covered by the 2_000 run
        assert_eq!(t.committable(999).0, 10);
        let (o, c) = t.committable(1_000);
        assert_eq!(o, 12);
        assert_eq!(c.max_event, Some(950), "event time before offset 12");
        assert_eq!(c.watermark, Some(1_000));
        let (o, c) = t.committable(2_000);
        assert_eq!((o, c.max_event), (14, Some(1_500)));
    }

    #[test]
    fn metadata_round_trips_and_foreign_metadata_restores_nothing() {
        let c = Checkpoint {
            max_event: Some(7),
            watermark: Some(-3),
        };
        assert_eq!(Checkpoint::decode(&c.encode()), c);
        assert_eq!(Checkpoint::decode("whatever"), Checkpoint::default());
        assert_eq!(Checkpoint::decode(""), Checkpoint::default());
    }
}
