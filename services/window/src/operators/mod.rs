//! The engine's timely operators, as extension traits on streams (timely's own style).
pub mod rewindow;
pub mod sink;
pub mod source;
pub mod window;

/// Per-key state. foldhash: several times cheaper than SipHash on series keys and still
/// seeded per process, so crafted keys cannot aim at collisions.
pub(crate) type KeyMap<K, V> = hashbrown::HashMap<K, V, foldhash::fast::RandomState>;

/// Timely timestamps are watermarks in milliseconds since the epoch.
pub type Time = u64;

pub(crate) fn to_time(event_ms: i64) -> Time {
    event_ms.max(0) as Time
}

/// The smallest time in the frontier, as event time; `i64::MAX` once the input is done.
pub(crate) fn frontier_ms(frontier: &timely::progress::frontier::MutableAntichain<Time>) -> i64 {
    frontier
        .frontier()
        .first()
        .map_or(i64::MAX, |t| (*t).min(i64::MAX as u64) as i64)
}
