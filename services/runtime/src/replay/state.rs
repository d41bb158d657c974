//! A replay's progress, kept in a file named after its arguments: a rerun with the same
//! arguments finds it and resumes (relative times like `-6h` keep the range they had on
//! the first run); once the replay completed, a rerun says so and changes nothing.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::range::EventRange;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PartState {
    pub start: i64,
    pub end: i64,
    /// The next offset to read on resume.
    pub next: i64,
    /// What the reader committed with `next` (the window engine's checkpoint), if any.
    #[serde(default)]
    pub checkpoint: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReplayState {
    /// The arguments that name this replay.
    pub id: String,
    pub args: Vec<String>,
    pub topic: String,
    pub range: EventRange,
    /// Recomputation generation: when the replay first started, in Unix seconds. Rows it
    /// writes replace those of every earlier generation; a resumed run keeps it.
    pub generation: u32,
    pub partitions: BTreeMap<u32, PartState>,
    pub done: bool,
    /// Totals of what earlier runs of this replay read and wrote.
    #[serde(default)]
    pub totals: BTreeMap<String, u64>,
}

impl ReplayState {
    pub fn remaining(&self) -> i64 {
        self.partitions
            .values()
            .map(|p| (p.end - p.next).max(0))
            .sum()
    }
}

/// The state and where it is kept, shared by the replay's readers.
#[derive(Clone)]
pub struct StateFile {
    path: PathBuf,
    pub state: Arc<Mutex<ReplayState>>,
}

/// The identity of a replay: a hash of its arguments (stable across runs and builds).
pub fn replay_id(args: &[String]) -> String {
    // FNV-1a: std's hasher is not stable across releases, and a file name needs no more.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for a in args {
        for b in a.as_bytes().iter().chain([0u8].iter()) {
            h ^= *b as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

impl StateFile {
    pub fn path_for(dir: &Path, id: &str) -> PathBuf {
        dir.join(format!("replay-{id}.json"))
    }

    /// The state of an earlier run, if there is one.
    pub fn open(dir: &Path, id: &str) -> anyhow::Result<Option<Self>> {
        let path = Self::path_for(dir, id);
        match std::fs::read(&path) {
            Ok(b) => {
                let state: ReplayState = serde_json::from_slice(&b)
                    .with_context(|| format!("reading replay state {}", path.display()))?;
                Ok(Some(Self {
                    path,
                    state: Arc::new(Mutex::new(state)),
                }))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading replay state {}", path.display())),
        }
    }

    pub fn create(dir: &Path, state: ReplayState) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating the replay state directory {}", dir.display()))?;
        let f = Self {
            path: Self::path_for(dir, &state.id),
            state: Arc::new(Mutex::new(state)),
        };
        f.save()?;
        Ok(f)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn snapshot(&self) -> Option<ReplayState> {
        self.state.lock().ok().map(|s| s.clone())
    }

    /// Updates the state and writes it (atomically: a kill mid-write keeps the old one).
    pub fn update(&self, f: impl FnOnce(&mut ReplayState)) -> anyhow::Result<()> {
        {
            let mut s = self
                .state
                .lock()
                .map_err(|_| anyhow::anyhow!("replay state lock poisoned"))?;
            f(&mut s);
        }
        self.save()
    }

    fn save(&self) -> anyhow::Result<()> {
        let body = {
            let s = self
                .state
                .lock()
                .map_err(|_| anyhow::anyhow!("replay state lock poisoned"))?;
            serde_json::to_vec_pretty(&*s)?
        };
        let tmp = self.path.with_extension("json.tmp");
        std::fs::write(&tmp, body).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &self.path)
            .with_context(|| format!("writing {}", self.path.display()))?;
        Ok(())
    }
}

/// Where replay state is kept unless `--state-dir` says: `$XDG_STATE_HOME/weir`, else
/// `~/.local/state/weir`, else the working directory.
pub fn default_dir() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_STATE_HOME").filter(|x| !x.is_empty()) {
        return PathBuf::from(x).join("weir").join("replay");
    }
    if let Some(h) = std::env::var_os("HOME").filter(|x| !x.is_empty()) {
        return PathBuf::from(h)
            .join(".local")
            .join("state")
            .join("weir")
            .join("replay");
    }
    PathBuf::from(".weir-replay")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_and_the_id_is_stable() {
        let dir = tempfile::tempdir().unwrap();
        let args: Vec<String> = ["--into", "rollup", "--from", "-1h"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let id = replay_id(&args);
        assert_eq!(id, replay_id(&args));
        assert_ne!(id, replay_id(&args[..3]));
        let state = ReplayState {
            id: id.clone(),
            args,
            topic: "metrics.raw".into(),
            range: EventRange::new(0, 60_000).unwrap(),
            generation: 7,
            partitions: [(
                0,
                PartState {
                    start: 1,
                    end: 9,
                    next: 1,
                    checkpoint: String::new(),
                },
            )]
            .into(),
            done: false,
            totals: BTreeMap::new(),
        };
        let f = StateFile::create(dir.path(), state).unwrap();
        f.update(|s| s.partitions.get_mut(&0).unwrap().next = 5)
            .unwrap();
        let back = StateFile::open(dir.path(), &id).unwrap().unwrap();
        let s = back.snapshot().unwrap();
        assert_eq!(s.partitions[&0].next, 5);
        assert_eq!(s.remaining(), 4);
        assert!(StateFile::open(dir.path(), "nope").unwrap().is_none());
    }
}
