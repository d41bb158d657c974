//! Consumer-group plumbing every consuming role shares: a librdkafka context that
//! publishes per-partition lag from the brokers' high watermarks, tracks the work in
//! flight per partition, and on revocation waits for that work to be acknowledged and
//! commits before the partition moves to another member.
//!
//! Offsets are stored explicitly (`enable.auto.offset.store=false`) only once a sink
//! acknowledged everything up to them; librdkafka's auto-commit then commits what is
//! stored, and revocation and shutdown commit synchronously.
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaResult;
use rdkafka::statistics::Statistics;
use rdkafka::{Offset, TopicPartitionList};

pub type PartitionId = (String, i32);

/// Which partitions this member holds, the work in flight per partition, and the
/// revocations its workers have not yet seen.
#[derive(Debug, Default)]
pub struct Assignment {
    inner: Mutex<AssignmentState>,
    idle: Condvar,
}

#[derive(Debug, Default)]
struct AssignmentState {
    in_flight: HashMap<PartitionId, usize>,
    assigned: HashSet<PartitionId>,
    /// Revocations in order, kept even if the partition comes back before a worker
    /// looked: whatever it buffered before the revocation must go either way.
    revoked: Vec<PartitionId>,
}

impl Assignment {
    pub fn begin(&self, p: &PartitionId) {
        if let Ok(mut s) = self.inner.lock() {
            *s.in_flight.entry(p.clone()).or_default() += 1;
        }
    }

    pub fn end(&self, p: &PartitionId) {
        if let Ok(mut s) = self.inner.lock() {
            if let Some(n) = s.in_flight.get_mut(p) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    s.in_flight.remove(p);
                }
            }
        }
        self.idle.notify_all();
    }

    /// Whether this member holds the partition now. A delivery that outlived its
    /// partition's revocation must not store offsets for it.
    pub fn is_assigned(&self, p: &PartitionId) -> bool {
        self.inner
            .lock()
            .map(|s| s.assigned.contains(p))
            .unwrap_or(false)
    }

    /// Takes the revocations since the last call; workers drop what they buffered for
    /// those partitions (the next owner reads it again from the committed offset).
    pub fn take_revoked(&self) -> Vec<PartitionId> {
        self.inner
            .lock()
            .map(|mut s| std::mem::take(&mut s.revoked))
            .unwrap_or_default()
    }

    /// How many partitions this member holds now.
    pub fn assigned_count(&self) -> usize {
        self.inner.lock().map(|s| s.assigned.len()).unwrap_or(0)
    }

    fn revoke(&self, parts: &[PartitionId]) {
        if let Ok(mut s) = self.inner.lock() {
            for p in parts {
                s.assigned.remove(p);
                s.revoked.push(p.clone());
            }
        }
    }

    fn assign(&self, parts: &[PartitionId]) {
        if let Ok(mut s) = self.inner.lock() {
            s.assigned.extend(parts.iter().cloned());
        }
    }

    /// Waits until none of `parts` has work in flight, or `timeout`.
    pub fn wait_idle(&self, parts: &[PartitionId], timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let Ok(mut s) = self.inner.lock() else {
            return false;
        };
        loop {
            if parts.iter().all(|p| !s.in_flight.contains_key(p)) {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            s = match self.idle.wait_timeout(s, left) {
                Ok((g, _)) => g,
                Err(_) => return false,
            };
        }
    }
}

/// What a role does when its group rebalances; the rest of the librdkafka context —
/// lag from statistics, commit results, rebalance errors — is [`GroupContext`]'s, the
/// same for every consumer-group member weir runs.
pub trait Rebalancing: Send + Sync + Sized + 'static {
    /// Partitions are about to be revoked: finish or commit what they need before the
    /// next owner reads them (called inside librdkafka's rebalance callback).
    fn revoking(
        &self,
        consumer: &BaseConsumer<GroupContext<Self>>,
        group: &str,
        tpl: &TopicPartitionList,
    );
    /// Partitions were assigned.
    fn assigned(
        &self,
        consumer: &BaseConsumer<GroupContext<Self>>,
        group: &str,
        tpl: &TopicPartitionList,
    );
}

/// The librdkafka context of every consumer-group member weir runs.
pub struct GroupContext<R> {
    pub group: String,
    pub rebalancing: R,
}

impl<R: Rebalancing> ClientContext for GroupContext<R> {
    fn stats(&self, stats: Statistics) {
        publish_lag(&self.group, stats);
    }
}

impl<R: Rebalancing> ConsumerContext for GroupContext<R> {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            self.rebalancing.revoking(consumer, &self.group, tpl);
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => self.rebalancing.assigned(consumer, &self.group, tpl),
            Rebalance::Revoke(_) => {}
            Rebalance::Error(e) => {
                tracing::error!(group = %self.group, error = %e, "rebalance error")
            }
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, _offsets: &TopicPartitionList) {
        record_commit(&self.group, &result);
    }
}

/// The TSDB writer's rebalancing: a revoked partition's in-flight batches are waited for
/// (up to `drain_timeout`; the next owner then re-reads from the last commit:
/// duplicates, never loss) and the stored offsets committed before it moves.
pub struct Draining {
    pub assignment: Arc<Assignment>,
    pub drain_timeout: Duration,
}

fn parts(tpl: &TopicPartitionList) -> Vec<PartitionId> {
    tpl.elements()
        .iter()
        .map(|e| (e.topic().to_string(), e.partition()))
        .collect()
}

impl Rebalancing for Draining {
    fn revoking(
        &self,
        consumer: &BaseConsumer<GroupContext<Self>>,
        group: &str,
        tpl: &TopicPartitionList,
    ) {
        let revoked = parts(tpl);
        self.assignment.revoke(&revoked);
        publish_assigned(group, "0", self.assignment.assigned_count());
        let drained = self.assignment.wait_idle(&revoked, self.drain_timeout);
        if !drained {
            tracing::warn!(%group, "revocation did not drain in time; the next owner re-reads unacknowledged records");
        }
        match consumer.commit_consumer_state(CommitMode::Sync) {
            Ok(()) => {
                tracing::info!(%group, partitions = ?revoked, "revoked after draining and committing")
            }
            // Nothing stored yet is not a failure.
            Err(e) => tracing::debug!(%group, error = %e, "commit on revoke"),
        }
    }

    fn assigned(
        &self,
        consumer: &BaseConsumer<GroupContext<Self>>,
        group: &str,
        tpl: &TopicPartitionList,
    ) {
        let assigned = parts(tpl);
        self.assignment.assign(&assigned);
        publish_assigned(group, "0", self.assignment.assigned_count());
        // librdkafka keeps an application's pause across revoke and re-assign; a
        // partition paused for a full buffer would never be fetched again.
        if let Err(e) = consumer.resume(tpl) {
            tracing::warn!(%group, error = %e, "resuming newly assigned partitions");
        }
        tracing::info!(%group, partitions = ?assigned, "partitions assigned");
    }
}

/// Publishes lag and high watermark per partition from librdkafka's statistics.
pub fn publish_lag(group: &str, stats: Statistics) {
    for (topic, t) in stats.topics {
        for (p, part) in t.partitions {
            if p < 0 || !part.desired {
                continue;
            }
            // consumer_lag is librdkafka's high watermark (or last stable offset) minus
            // the committed offset, refreshed from the broker each interval.
            metrics::gauge!("weir_consumer_lag", "group" => group.to_string(), "topic" => topic.clone(), "partition" => p.to_string())
                .set(part.consumer_lag.max(0) as f64);
            metrics::gauge!("weir_consumer_high_watermark", "group" => group.to_string(), "topic" => topic.clone(), "partition" => p.to_string())
                .set(part.hi_offset as f64);
        }
    }
}

/// Counts an offset commit, logging a failed one.
pub fn record_commit(group: &str, result: &KafkaResult<()>) {
    let outcome = if result.is_ok() { "ok" } else { "failed" };
    metrics::counter!("weir_consumer_commits_total", "group" => group.to_string(), "outcome" => outcome).increment(1);
    if let Err(e) = result {
        tracing::warn!(group = %group, error = %e, "offset commit failed");
    }
}

/// How many partitions one member of a group holds now (a process may run several
/// members: the rollup's timely workers).
pub fn publish_assigned(group: &str, member: &str, count: usize) {
    metrics::gauge!("weir_consumer_assigned_partitions", "group" => group.to_string(), "member" => member.to_string())
        .set(count as f64);
}

/// Stores `next` (the offset of the first record not yet acknowledged) for commit.
pub fn store_next_offset<C: ConsumerContext, K: Consumer<C>>(
    consumer: &K,
    p: &PartitionId,
    next: i64,
) -> KafkaResult<()> {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&p.0, p.1, Offset::Offset(next))?;
    consumer.store_offsets(&tpl)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_for_in_flight_work_of_the_named_partitions_only() {
        let a = Arc::new(Assignment::default());
        let p0: PartitionId = ("t".into(), 0);
        let p1: PartitionId = ("t".into(), 1);
        a.begin(&p0);
        a.begin(&p1);
        assert!(!a.wait_idle(std::slice::from_ref(&p0), Duration::from_millis(20)));
        let a2 = a.clone();
        let p0b = p0.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            a2.end(&p0b);
        });
        assert!(a.wait_idle(std::slice::from_ref(&p0), Duration::from_secs(5)));
        t.join().unwrap();
        assert!(!a.wait_idle(&[p1], Duration::from_millis(10)));
    }

    #[test]
    fn revocations_are_kept_for_the_workers_even_when_the_partition_returns() {
        let a = Assignment::default();
        let p: PartitionId = ("t".into(), 3);
        a.assign(std::slice::from_ref(&p));
        assert!(a.is_assigned(&p));
        a.revoke(std::slice::from_ref(&p));
        assert!(!a.is_assigned(&p));
        a.assign(std::slice::from_ref(&p));
        assert!(a.is_assigned(&p));
        assert_eq!(
            a.take_revoked(),
            vec![p.clone()],
            "the revocation is not forgotten"
        );
        assert!(a.take_revoked().is_empty());
    }
}
