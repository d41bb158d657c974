//! What flows between the engine's operators.
use crate::checkpoint::Checkpoint;
use crate::spec::Window;

/// One keyed value at an event time, read from partition `part`.
#[derive(Debug, Clone)]
pub struct Event<K, V> {
    pub key: K,
    pub part: u32,
    pub ts: i64,
    pub value: V,
    /// The partition's watermark before this record was read: lateness is judged
    /// against it (see the crate docs on determinism).
    pub part_watermark: Option<i64>,
}

/// A window's result. Emitted when the frontier passes the window's end, and again,
/// corrected, for every record that arrives within the allowed lateness.
#[derive(Debug, Clone)]
pub struct WindowResult<K, O> {
    pub key: K,
    pub part: u32,
    pub window: Window,
    pub output: O,
    /// 0 for the first emission, then 1, 2, ... for corrections.
    pub revision: u32,
    /// Which windowing stage produced it.
    pub stage: u8,
}

/// An operator's output: results, records later than the allowed lateness (counted and
/// sent to a side topic by the caller), and partition revocations passed downstream so
/// every stage drops that partition's state.
#[derive(Debug, Clone)]
pub enum Item<K, V, O> {
    Event(Event<K, V>),
    Result(WindowResult<K, O>),
    Late(Event<K, V>),
    /// This worker now reads the partition, resuming from this checkpoint.
    Assigned(u32, Checkpoint),
    /// The partition's own watermark advanced to this: its windows whose end plus
    /// lateness it passed are final (a partition read again after a rebalance may be far
    /// behind the frontier, so finality is per partition).
    Watermark(u32, i64),
    Revoked(u32),
}
