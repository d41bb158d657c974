//! Watermarks: per partition the maximum event time seen minus a bounded
//! out-of-orderness; over a worker's partitions the minimum, leaving out partitions that
//! have been idle longer than a timeout so one silent partition does not stall every
//! window.
use std::collections::HashMap;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
struct PartitionClock {
    /// Highest event time read from the partition, if any.
    max_event: Option<i64>,
    last_seen: Instant,
}

/// Tracks event time per partition of one worker.
#[derive(Debug)]
pub struct Watermarks {
    out_of_orderness: i64,
    idle_timeout: Duration,
    parts: HashMap<u32, PartitionClock>,
    /// Never goes back: a partition that wakes up from idleness with old data does not
    /// pull the frontier back (its late records are judged late instead).
    emitted: Option<i64>,
}

impl Watermarks {
    pub fn new(out_of_orderness: Duration, idle_timeout: Duration) -> Self {
        Self {
            out_of_orderness: out_of_orderness.as_millis() as i64,
            idle_timeout,
            parts: HashMap::new(),
            emitted: None,
        }
    }

    /// A partition joins, with the highest event time read before its starting offset
    /// (from the checkpoint), so a restart judges lateness exactly as the first run did.
    pub fn add_partition(&mut self, part: u32, max_event: Option<i64>, now: Instant) {
        self.parts.insert(
            part,
            PartitionClock {
                max_event,
                last_seen: now,
            },
        );
    }

    pub fn remove_partition(&mut self, part: u32) {
        self.parts.remove(&part);
    }

    pub fn partitions(&self) -> impl Iterator<Item = u32> + '_ {
        self.parts.keys().copied()
    }

    /// The partition's own watermark before `ts` is observed: what lateness is judged
    /// against, so that whether a record is late depends only on its partition's order
    /// in the log, not on how partitions interleave.
    pub fn partition_watermark(&self, part: u32) -> Option<i64> {
        self.parts
            .get(&part)
            .and_then(|c| c.max_event)
            .map(|m| m.saturating_sub(self.out_of_orderness))
    }

    /// The highest event time read from the partition so far (checkpointed).
    pub fn max_event(&self, part: u32) -> Option<i64> {
        self.parts.get(&part).and_then(|c| c.max_event)
    }

    pub fn observe(&mut self, part: u32, ts: i64, now: Instant) {
        let c = self.parts.entry(part).or_insert(PartitionClock {
            max_event: None,
            last_seen: now,
        });
        c.max_event = Some(c.max_event.map_or(ts, |m| m.max(ts)));
        c.last_seen = now;
    }

    /// Marks the partition as alive without data (it was polled and is at its end is not
    /// enough: only records count, so a partition without records goes idle).
    pub fn touch(&mut self, part: u32, now: Instant) {
        if let Some(c) = self.parts.get_mut(&part) {
            c.last_seen = now;
        }
    }

    /// The worker's watermark: the minimum over active partitions. `None` while an
    /// active partition has not produced a record yet, or when there are no active
    /// partitions at all (the caller decides what an idle worker does).
    pub fn current(&mut self, now: Instant) -> Option<i64> {
        let mut min: Option<i64> = None;
        let mut active = 0;
        for c in self.parts.values() {
            if now.duration_since(c.last_seen) > self.idle_timeout {
                continue;
            }
            active += 1;
            let wm = c.max_event?.saturating_sub(self.out_of_orderness);
            min = Some(min.map_or(wm, |m: i64| m.min(wm)));
        }
        if active == 0 {
            return self.emitted;
        }
        let wm = min?;
        let wm = self.emitted.map_or(wm, |e| e.max(wm));
        self.emitted = Some(wm);
        Some(wm)
    }

    /// Whether every partition is idle (or there are none).
    pub fn all_idle(&self, now: Instant) -> bool {
        self.parts
            .values()
            .all(|c| now.duration_since(c.last_seen) > self.idle_timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimum_over_partitions_minus_out_of_orderness() {
        let t0 = Instant::now();
        let mut w = Watermarks::new(Duration::from_millis(500), Duration::from_secs(10));
        w.add_partition(0, None, t0);
        w.add_partition(1, None, t0);
        w.observe(0, 10_000, t0);
        assert_eq!(w.current(t0), None, "partition 1 has no records yet");
        w.observe(1, 4_000, t0);
        assert_eq!(w.current(t0), Some(3_500));
        w.observe(1, 2_000, t0);
        assert_eq!(
            w.current(t0),
            Some(3_500),
            "an older record does not go back"
        );
        assert_eq!(w.partition_watermark(0), Some(9_500));
    }

    #[test]
    fn idle_partitions_stop_holding_the_watermark_back() {
        let t0 = Instant::now();
        let mut w = Watermarks::new(Duration::ZERO, Duration::from_secs(5));
        w.add_partition(0, Some(1_000), t0);
        w.add_partition(1, Some(50_000), t0);
        assert_eq!(w.current(t0), Some(1_000));
        let later = t0 + Duration::from_secs(6);
        w.touch(1, later);
        assert_eq!(w.current(later), Some(50_000));
        // It comes back with old data: the watermark does not go back.
        w.observe(0, 2_000, later);
        assert_eq!(w.current(later), Some(50_000));
    }
}
