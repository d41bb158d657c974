//! An in-memory log: the engine without Kafka, for tests and the throughput benchmark.
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::checkpoint::Checkpoint;
use crate::operators::source::{EventLog, LogEvent, Progress};

/// Records of one partition, each a list of `(key, ts, value)`.
pub type Records<K, V> = Vec<Vec<(K, i64, V)>>;

/// Partitions of records, each record a list of `(key, ts, value)`; read round-robin,
/// `records_per_poll` records of each partition per poll.
pub struct MemoryLog<K, V> {
    partitions: Vec<(u32, Records<K, V>)>,
    positions: Vec<usize>,
    records_per_poll: usize,
    assigned: bool,
    progress: Arc<Mutex<Progress>>,
    /// The last commit per partition.
    pub committed: Arc<Mutex<HashMap<u32, (i64, Checkpoint)>>>,
}

impl<K, V> MemoryLog<K, V> {
    pub fn new(partitions: Vec<(u32, Records<K, V>)>, records_per_poll: usize) -> Self {
        let n = partitions.len();
        Self {
            partitions,
            positions: vec![0; n],
            records_per_poll: records_per_poll.max(1),
            assigned: false,
            progress: Arc::new(Mutex::new(Progress::default())),
            committed: Arc::new(Mutex::new(HashMap::new())),
        }
    }
}

impl<K: Clone + 'static, V: Clone + 'static> EventLog<K, V> for MemoryLog<K, V> {
    fn poll(&mut self, out: &mut Vec<LogEvent<K, V>>) -> bool {
        if !self.assigned {
            self.assigned = true;
            for (p, _) in &self.partitions {
                out.push(LogEvent::Assigned {
                    part: *p,
                    next_offset: 0,
                    checkpoint: Checkpoint::default(),
                });
            }
        }
        let mut open = false;
        for (i, (p, records)) in self.partitions.iter().enumerate() {
            let from = self.positions[i];
            let to = (from + self.records_per_poll).min(records.len());
            for (o, r) in records.iter().enumerate().take(to).skip(from) {
                out.push(LogEvent::Record {
                    part: *p,
                    offset: o as i64,
                    events: r.clone(),
                });
            }
            self.positions[i] = to;
            open |= to < records.len();
        }
        open
    }

    fn progress(&self) -> Arc<Mutex<Progress>> {
        self.progress.clone()
    }

    fn commit(&mut self, _force: bool) {
        let Ok(mut p) = self.progress.lock() else {
            return;
        };
        let commits = p.committable();
        if let Ok(mut c) = self.committed.lock() {
            for (part, o, cp) in commits {
                c.insert(part, (o, cp));
            }
        }
    }
}
