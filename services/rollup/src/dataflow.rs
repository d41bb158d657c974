//! One worker's rollup dataflow: source → first tier from samples → each further tier
//! from the one before → a sink callback.
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use timely::dataflow::Scope;
use weir_window::{
    log_source, Checkpoint, Event, EventLog, HashedKey, Item, RewindowConfig, RewindowExt, SinkExt,
    SourceConfig, SourceHandles, Time, Window, WindowConfig, WindowExt, WindowSpec,
};

use crate::aggregate::{Rollup, RollupAgg, RollupCombine};
use crate::tiers::Tiers;

/// A series key in canonical text form, hashed once when read.
pub type Key = HashedKey;
/// Results travel boxed in an `Arc`: items are an enum, and an inline row would make
/// every sample on the stream as large as a row (and cascades clone rows).
pub type Out = Arc<Rollup>;
pub type RollupItem = Item<Key, f64, Out>;

/// Watermark settings of the source.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub out_of_orderness: Duration,
    pub idle_timeout: Duration,
    /// See `rollup.max_sample_future`.
    pub max_future: Duration,
}

/// Builds the dataflow in `scope`; `flush(items, frontier)` receives everything the
/// frontier passed.
pub fn build<'s, L, F>(
    scope: Scope<'s, Time>,
    log: L,
    tiers: &Tiers,
    timing: Timing,
    handles: SourceHandles,
    flush: F,
) where
    L: EventLog<Key, f64>,
    F: FnMut(Vec<RollupItem>, i64) + 'static,
{
    let t = tiers.clone();
    let cfg = SourceConfig {
        out_of_orderness: timing.out_of_orderness,
        idle_timeout: timing.idle_timeout,
        max_future: timing.max_future,
        release_at: Rc::new(move |ts| t.release_at(ts)),
    };
    let mut stream = log_source::<Key, f64, Out, L>(scope, "MetricsRaw", log, cfg, handles).window(
        WindowConfig {
            spec: WindowSpec::tumbling(tiers.sizes_ms[0]),
            allowed_lateness_ms: tiers.allowed_lateness_ms,
            stage: 0,
        },
        RollupAgg,
    );
    for (i, size) in tiers.sizes_ms.iter().enumerate().skip(1) {
        stream = stream.rewindow(
            RewindowConfig {
                size_ms: *size,
                allowed_lateness_ms: tiers.allowed_lateness_ms,
                from_stage: (i - 1) as u8,
                stage: i as u8,
            },
            RollupCombine,
        );
    }
    stream.sink_frontier("RollupSink", flush);
}

/// A row ready for the sinks.
#[derive(Debug, Clone)]
pub struct TierRow {
    pub tier: usize,
    pub key: Key,
    pub part: u32,
    pub window: Window,
    pub rollup: Out,
    /// 0 when first emitted, then one more per correction.
    pub revision: u32,
}

/// What one flush hands the sinks.
#[derive(Debug, Default)]
pub struct Emission {
    pub rows: Vec<TierRow>,
    pub late: Vec<Event<Key, f64>>,
    /// Rows left out because an earlier run already emitted them for good.
    pub suppressed: usize,
    /// Partition watermarks that reached the end: once this emission is durable, every
    /// window of the partition final by then is.
    pub watermarks: Vec<(u32, i64)>,
}

impl Emission {
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
            && self.late.is_empty()
            && self.watermarks.is_empty()
            && self.suppressed == 0
    }

    /// Records, once the emission is durable, what it made final.
    pub fn acknowledge(&self, acked: &std::sync::Mutex<std::collections::HashMap<u32, i64>>) {
        if let Ok(mut a) = acked.lock() {
            for (p, wm) in &self.watermarks {
                let e = a.entry(*p).or_insert(*wm);
                *e = (*e).max(*wm);
            }
        }
    }
}

/// Turns flushed items into rows, leaving out windows that a checkpoint says were
/// emitted for good before a restart or rebalance.
#[derive(Debug, Default)]
pub struct Emitter {
    restored: HashMap<u32, i64>,
    allowed_lateness_ms: i64,
}

impl Emitter {
    pub fn new(allowed_lateness_ms: i64) -> Self {
        Self {
            restored: HashMap::new(),
            allowed_lateness_ms,
        }
    }

    pub fn absorb(&mut self, items: Vec<RollupItem>) -> Emission {
        let mut out = Emission::default();
        for item in items {
            match item {
                Item::Result(r) => {
                    let done_before = self.restored.get(&r.part).copied();
                    if done_before
                        .is_some_and(|w| r.window.end.saturating_add(self.allowed_lateness_ms) <= w)
                    {
                        out.suppressed += 1;
                        continue;
                    }
                    out.rows.push(TierRow {
                        tier: r.stage as usize,
                        key: r.key,
                        part: r.part,
                        window: r.window,
                        rollup: r.output,
                        revision: r.revision,
                    });
                }
                Item::Late(e) => out.late.push(e),
                Item::Assigned(part, Checkpoint { watermark, .. }) => match watermark {
                    Some(w) => {
                        self.restored.insert(part, w);
                    }
                    None => {
                        self.restored.remove(&part);
                    }
                },
                Item::Revoked(part) => {
                    self.restored.remove(&part);
                }
                Item::Watermark(p, wm) => out.watermarks.push((p, wm)),
                Item::Event(_) => {}
            }
        }
        out
    }
}
