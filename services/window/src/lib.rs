//! weir's event-time window engine, as timely dataflow operators.
//!
//! ```text
//!  EventLog (Kafka partitions) ──▶ log_source ──▶ window(1m) ──▶ rewindow(5m) ──▶ rewindow(1h) ──▶ sink_frontier
//!                                   holds its capability at the watermark
//! ```
//!
//! # Time
//! Timely timestamps are watermarks in event-time milliseconds. A worker's source
//! tracks, per partition, the highest event time read minus a bounded out-of-orderness;
//! its watermark is the minimum over its partitions, leaving out partitions idle for
//! longer than a timeout. The source holds its capability at that watermark, so the
//! frontier downstream is the minimum watermark over the process's workers, and a window
//! fires when the frontier passes its end. A worker holding no active partition follows
//! the highest watermark of its peers instead of holding everything back.
//!
//! # Lateness and finality
//! A record arriving after its window fired, but before its partition's watermark passed
//! the window's end plus the allowed lateness, updates the window, which is emitted
//! again with the next revision. Later records are "late": they come out of the window
//! operator as [`Item::Late`] for the caller to count and publish. Whether a record is
//! too late is judged against *its own partition's* watermark when it was read, which
//! depends only on the order of that partition in the log — so a replay, or a restart
//! from a checkpoint, makes exactly the same decisions as the first run, however
//! partitions interleave.
//!
//! For the same reason a window's state is dropped (its result is *final*) when its own
//! partition's watermark passes its end plus lateness: the source announces each
//! partition's watermark downstream ([`Item::Watermark`]) after the records that moved
//! it, and every stage emits the partition's final results *before* forwarding the
//! watermark. A partition read again after a rebalance may be far behind the frontier
//! (which never goes back); its windows fire at once and are corrected as its records
//! come in, and only its own watermark closes them. A partition that goes silent keeps
//! its open windows until it speaks again.
//!
//! # Checkpoints
//! Nothing but offsets is stored; the log is the source of truth. For each partition the
//! source remembers, per record, when every window the record fed is final (the end of
//! its coarsest window plus lateness: [`SourceConfig::release_at`]). When a partition's
//! watermark reaches the sink and the sink wrote everything before it, the sink
//! acknowledges that watermark for the partition ([`SourceHandles::partition_acked`]):
//! every window of the partition final by then is durable. The committed offset is the
//! first record with a window not yet final-and-durable. The commit's metadata
//! ([`Checkpoint`]) carries the partition's highest event time before that offset and the
//! acknowledged watermark. After a restart or a rebalance the new reader:
//! - resumes the partition's watermark from the checkpoint, so lateness is judged as
//!   before;
//! - reads again from the offset, which rebuilds every window that was not yet final —
//!   each completely, since none of its records lies before the offset;
//! - suppresses results of windows final by the checkpointed watermark (emitted and
//!   written already; their partial rebuilds still feed coarser stages, which are then
//!   final too and suppressed as well).
//!
//! A broker that drops commit metadata (tansu 0.6 answers offset fetches with empty
//! metadata) restores no checkpoint: the partition watermark restarts at the committed
//! offset and nothing is suppressed. Rows stay right (windows are rebuilt from their first
//! record); only samples that were late before may be judged on time, and late samples
//! re-read are sent to the late topic again (it is at least once, like every sink).
//!
//! Re-emitted windows carry the same content as before or more, so idempotent sinks
//! (rows keyed by series and window, the most complete winning) end up exactly as after
//! an uninterrupted run.
//!
//! # Workers
//! Every timely worker owns its own consumer in the group, so the group's partitions
//! spread over every worker of every process, and a worker's windows never need data
//! from another worker (a series lives in one partition).
pub mod checkpoint;
pub mod event;
pub mod kafka;
pub mod key;
pub mod memory;
pub mod operators;
pub mod pool;
pub mod replay;
pub mod spec;
pub mod watermark;
pub mod worker;

pub use checkpoint::{Checkpoint, OffsetTracker};
pub use event::{Event, Item, WindowResult};
pub use key::{HashedKey, WindowKey};
pub use operators::rewindow::{Combine, RewindowConfig, RewindowExt};
pub use operators::sink::SinkExt;
pub use operators::source::{
    log_source, EventLog, LogEvent, PeerWatermarks, Progress, SourceConfig, SourceHandles,
};
pub use operators::window::{prefetch, Aggregate, WindowConfig, WindowExt};
pub use operators::Time;
pub use pool::{Handoff, PoolConfig, PoolHandle, Running, WorkerPool};
pub use spec::{Window, WindowSpec};
pub use weir_runtime::input_checks::{Cut, InputChecks, Placement};
pub use worker::{run_then_drain, WorkerLink};
