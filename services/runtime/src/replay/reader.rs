//! A consumer outside any group that reads given offsets of given partitions and ends.
use std::collections::HashMap;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

/// What a poll found.
pub enum Polled<'c> {
    Record(BorrowedMessage<'c>),
    /// Nothing yet: poll again.
    Nothing,
    /// Every partition reached its end.
    Done,
}

struct Cursor {
    next: i64,
    end: i64,
}

pub struct BoundedReader {
    consumer: BaseConsumer,
    topic: String,
    cursors: HashMap<u32, Cursor>,
}

impl BoundedReader {
    /// Reads `[next, end)` of each `(partition, next, end)`.
    pub fn new(
        config: &ClientConfig,
        topic: &str,
        parts: &[(u32, i64, i64)],
    ) -> rdkafka::error::KafkaResult<Self> {
        let consumer: BaseConsumer = config.create()?;
        let mut tpl = TopicPartitionList::new();
        let mut cursors = HashMap::new();
        for &(p, next, end) in parts {
            if next < end {
                tpl.add_partition_offset(topic, p as i32, Offset::Offset(next))?;
                cursors.insert(p, Cursor { next, end });
            }
        }
        consumer.assign(&tpl)?;
        Ok(Self {
            consumer,
            topic: topic.to_string(),
            cursors,
        })
    }

    pub fn is_done(&self) -> bool {
        self.cursors.is_empty()
    }

    /// Whether `partition` still has records to read.
    pub fn is_reading(&self, partition: u32) -> bool {
        self.cursors.contains_key(&partition)
    }

    /// The next record of a partition not yet at its end. A record at or past a
    /// partition's end finishes it (and is not returned).
    pub fn poll(&mut self, timeout: Duration) -> Polled<'_> {
        let Self {
            consumer,
            topic,
            cursors,
        } = self;
        if cursors.is_empty() {
            return Polled::Done;
        }
        let m = match consumer.poll(timeout) {
            None => return Polled::Nothing,
            Some(Err(e)) => {
                tracing::warn!(%topic, error = %e, "replay read");
                return Polled::Nothing;
            }
            Some(Ok(m)) => m,
        };
        let p = m.partition() as u32;
        let Some(c) = cursors.get_mut(&p) else {
            return Polled::Nothing;
        };
        if m.offset() < c.next {
            return Polled::Nothing;
        }
        let past_end = m.offset() >= c.end;
        c.next = m.offset() + 1;
        if c.next >= c.end {
            cursors.remove(&p);
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition(topic, p as i32);
            if let Err(e) = consumer.pause(&tpl) {
                tracing::debug!(partition = p, error = %e, "pausing a finished partition");
            }
        }
        if past_end {
            Polled::Nothing
        } else {
            Polled::Record(m)
        }
    }

    /// Stops or resumes every partition not yet finished (sinks behind, or the rate).
    pub fn set_paused(&self, paused: bool) {
        let mut tpl = TopicPartitionList::new();
        for p in self.cursors.keys() {
            tpl.add_partition(&self.topic, *p as i32);
        }
        let r = if paused {
            self.consumer.pause(&tpl)
        } else {
            self.consumer.resume(&tpl)
        };
        if let Err(e) = r {
            tracing::warn!(topic = %self.topic, error = %e, "pausing or resuming the replay");
        }
    }
}

/// A replay's reading on a thread of its own (librdkafka's calls block), handing what it
/// read to the async side through a small bounded channel: the reader waits while the
/// target is behind.
pub struct ReadThread<B> {
    rx: tokio::sync::mpsc::Receiver<B>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<anyhow::Result<()>>,
    interrupted: bool,
}

impl<B: Send + 'static> ReadThread<B> {
    /// Runs `read(stop, tx)` on a thread; it returns when done, when `stop` is set, or
    /// when the receiving side is gone.
    pub fn spawn(
        read: impl FnOnce(
                &std::sync::atomic::AtomicBool,
                tokio::sync::mpsc::Sender<B>,
            ) -> anyhow::Result<()>
            + Send
            + 'static,
    ) -> std::io::Result<Self> {
        let (tx, rx) = tokio::sync::mpsc::channel(2);
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::Builder::new()
            .name("replay-reader".into())
            .spawn(move || read(&s, tx))?;
        Ok(Self {
            rx,
            stop,
            thread,
            interrupted: false,
        })
    }

    /// The next batch; once `interrupt` is cancelled reading stops, and what was read
    /// already still comes out, then `None`.
    pub async fn next(&mut self, interrupt: &tokio_util::sync::CancellationToken) -> Option<B> {
        loop {
            tokio::select! {
                b = self.rx.recv() => return b,
                _ = interrupt.cancelled(), if !self.interrupted => {
                    self.interrupted = true;
                    self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
                }
            }
        }
    }

    /// Stops reading and waits for the thread; its error, if it failed.
    pub async fn join(self) -> anyhow::Result<()> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        drop(self.rx);
        let thread = self.thread;
        tokio::task::spawn_blocking(move || thread.join())
            .await?
            .map_err(|_| anyhow::anyhow!("the replay reader panicked"))?
    }
}
