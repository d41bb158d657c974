//! Replay: reading a bounded slice of a topic — the records whose event times fall in a
//! range — beside the live consumer groups, resumably. The roles build their replays on
//! these parts:
//!
//! - [`range`]: the event-time range from RFC 3339 or relative times;
//! - [`locate`]: per partition, the offsets that hold the range, from record timestamps
//!   with a margin, verified against the records read;
//! - [`reader`]: a consumer outside any group that reads exactly those offsets;
//! - [`state`]: the replay's progress in a file, so a rerun with the same arguments
//!   resumes where an interrupted one stopped (the broker's group offsets are not used:
//!   a replay must never touch the live groups, and tansu drops commit metadata);
//! - [`progress`]: a progress bar on a terminal, JSON lines otherwise;
//! - [`rate`]: `--max-rate`, so a replay does not starve the live groups;
//! - [`redrive`]: the `topic` target, shared by no role: records copied into another
//!   topic, partitioned by series.
pub mod locate;
pub mod progress;
pub mod range;
pub mod rate;
pub mod reader;
pub mod redrive;
pub mod state;

pub use locate::{locate, Span};
pub use progress::{Counters, Reporter};
pub use range::{parse_time, EventRange};
pub use rate::RateLimit;
pub use reader::BoundedReader;
pub use state::{PartState, ReplayState, StateFile};
