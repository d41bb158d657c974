//! Which targets this replica scrapes. A target's shard is its hash modulo the number of
//! shards; a replica owns the shards it was given:
//!
//! - by Kafka: every replica is a member of one consumer group on the shards topic (one
//!   partition per shard, nothing ever written). The group coordinator assigns the
//!   partitions; when a replica stops or its session times out, its partitions, and so
//!   its targets, go to the others at the next rebalance. No other coordination service,
//!   and the same failure detection the consumers already rely on;
//! - statically, as vmagent's `-promscrape.cluster.membersCount/memberNum/replicationFactor`:
//!   member `i` of `n` owns the targets whose hash modulo `n` is `i` (and the next
//!   `r - 1` members own them too, for redundancy).
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use weir_runtime::backoff::Backoff;
use weir_runtime::config::KafkaConfig;
use weir_runtime::kafka::consumer_config;

/// What this replica scrapes now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ownership {
    /// Every target (one replica).
    All,
    Static {
        members: u32,
        member: u32,
        replicas: u32,
    },
    /// The shards Kafka assigned (`total` partitions of the shards topic).
    Shards {
        total: u32,
        mine: Arc<BTreeSet<u32>>,
    },
    /// Not yet a member of the group: nothing.
    Waiting,
}

impl Ownership {
    pub fn owns(&self, target_hash: u64) -> bool {
        match self {
            Self::All => true,
            Self::Static {
                members,
                member,
                replicas,
            } => {
                let first = (target_hash % *members as u64) as u32;
                (member + members - first) % members < *replicas
            }
            Self::Shards { total, mine } => {
                *total > 0 && mine.contains(&((target_hash % *total as u64) as u32))
            }
            Self::Waiting => false,
        }
    }

    pub fn is_waiting(&self) -> bool {
        matches!(self, Self::Waiting)
    }

    /// Shards (or members' shares) this replica holds, for its metrics.
    pub fn owned_count(&self) -> usize {
        match self {
            Self::All | Self::Static { .. } => 1,
            Self::Shards { mine, .. } => mine.len(),
            Self::Waiting => 0,
        }
    }
}

/// Joins `group` on `topic` in a thread of its own (librdkafka's rebalance callbacks run
/// in `poll`) and publishes the assignment whenever it changes. On `stop` it leaves the
/// group, so the others take its shards at once rather than after the session timeout.
pub fn join_group(
    kafka: &KafkaConfig,
    group: &str,
    topic: &str,
    session_timeout: Duration,
    tx: watch::Sender<Ownership>,
    stop: CancellationToken,
) -> anyhow::Result<std::thread::JoinHandle<()>> {
    let mut c = consumer_config(kafka, group);
    let session = session_timeout.as_millis().max(1000);
    c.set("session.timeout.ms", session.to_string()).set(
        "heartbeat.interval.ms",
        (session / 5).clamp(100, 3000).to_string(),
    );
    let consumer: BaseConsumer = c
        .create()
        .map_err(|e| anyhow::anyhow!("creating the shard-membership consumer: {e}"))?;
    let topic = topic.to_string();
    let group = group.to_string();
    Ok(std::thread::Builder::new()
        .name("scrape-membership".into())
        .spawn(move || membership_loop(consumer, &group, &topic, tx, stop))?)
}

fn membership_loop(
    consumer: BaseConsumer,
    group: &str,
    topic: &str,
    tx: watch::Sender<Ownership>,
    stop: CancellationToken,
) {
    let mut total = 0u32;
    let mut subscribed = false;
    let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(5));
    while !stop.is_cancelled() {
        if total == 0 {
            match consumer.fetch_metadata(Some(topic), Duration::from_secs(5)) {
                Ok(md) => {
                    total = md
                        .topics()
                        .iter()
                        .find(|t| t.name() == topic)
                        .map_or(0, |t| t.partitions().len() as u32);
                    if total == 0 {
                        tracing::warn!(
                            topic,
                            "the shards topic has no partitions yet (weir topics apply creates it)"
                        );
                        backoff.sleep();
                        continue;
                    }
                }
                Err(e) => {
                    tracing::warn!(topic, error = %e, "cannot read the shards topic's metadata; retrying");
                    backoff.sleep();
                    continue;
                }
            }
        }
        if !subscribed {
            if let Err(e) = consumer.subscribe(&[topic]) {
                tracing::warn!(topic, error = %e, "cannot join the scrape group; retrying");
                backoff.sleep();
                continue;
            }
            subscribed = true;
            tracing::info!(group, topic, shards = total, "joining the scrape group");
        }
        // Serves the group protocol (join, sync, heartbeats, rebalance callbacks); the
        // topic holds nothing, and anything someone writes there is ignored.
        let _ = consumer.poll(Duration::from_millis(100));
        let mine: BTreeSet<u32> = match consumer.assignment() {
            Ok(tpl) => tpl
                .elements()
                .iter()
                .filter(|e| e.topic() == topic)
                .map(|e| e.partition() as u32)
                .collect(),
            Err(_) => continue,
        };
        let now = Ownership::Shards {
            total,
            mine: Arc::new(mine),
        };
        tx.send_if_modified(|cur| {
            if *cur == now {
                return false;
            }
            if let Ownership::Shards { mine, .. } = &now {
                tracing::info!(group, shards = ?mine, "shard assignment changed");
            }
            *cur = now.clone();
            true
        });
    }
    consumer.unsubscribe();
    tracing::info!(group, "left the scrape group");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_members_split_every_target_r_times() {
        for r in 1..=3 {
            for h in 0..1000u64 {
                let owners = (0..3)
                    .filter(|m| {
                        Ownership::Static {
                            members: 3,
                            member: *m,
                            replicas: r,
                        }
                        .owns(h.wrapping_mul(0x9e37_79b9_7f4a_7c15))
                    })
                    .count();
                assert_eq!(owners, r as usize);
            }
        }
    }

    #[test]
    fn shards_own_their_partitions_only() {
        let o = Ownership::Shards {
            total: 4,
            mine: Arc::new([1, 3].into_iter().collect()),
        };
        assert!(o.owns(5) && o.owns(7) && !o.owns(4) && !o.owns(6));
        assert!(!Ownership::Waiting.owns(1));
    }
}
