//! `weir replay --into topic`: copies the samples of a range (optionally of a selector,
//! or of dead letters of one error kind) from one topic into another, each series on the
//! partition its key hashes to, as the gateway writes them — e.g. redriving
//! `metrics.late` or `metrics.dlq` into `metrics.raw` after a fix.
//!
//! Records are decoded and their series re-encoded into one record per destination
//! partition; what cannot be decoded (a dead letter that never was a metrics record) is
//! counted and left. Each flush is acknowledged by Kafka (`acks=all`) before the source
//! offsets it covers are saved, so a rerun after a kill sends again at most the flush
//! in flight when it stopped.
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use rdkafka::message::{Headers, Message};
use rdkafka::producer::FutureProducer;
use weir_contract::avro::{BatchEncoder, Decoder};
use weir_contract::partitioner::partition_for_key;
use weir_contract::series_key::write_key_parts;

use super::reader::{Polled, ReadThread};
use super::{BoundedReader, Counters, EventRange, RateLimit, StateFile};
use crate::backoff::Backoff;
use crate::config::TopicSpec;
use crate::kafka::{partition_count, producer_config, reader_config};
use crate::produce::{send_pending, OutRecord};
use crate::selector::Selector;
use crate::Topology;

/// Records are cut below this, well under the broker's 1 MiB default.
const MAX_RECORD_BYTES: usize = 512 * 1024;
/// Source records read between flushes at most.
const FLUSH_EVERY: usize = 2_000;

pub struct Redrive {
    pub range: EventRange,
    pub state: StateFile,
    pub to_topic: String,
    pub selector: Option<Selector>,
    /// Only dead letters whose `weir.error.kind` header is one of these.
    pub kinds: Vec<String>,
    pub counters: Arc<Counters>,
    pub max_rate: Option<u64>,
}

/// The dead-letter kind a record carries, if it is a dead letter.
pub fn dead_letter_kind<M: Message>(m: &M) -> Option<String> {
    let headers = m.headers()?;
    headers
        .iter()
        .find(|h| h.key == "weir.error.kind")
        .and_then(|h| h.value)
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

pub async fn run(
    topology: &Topology,
    r: Redrive,
    interrupt: tokio_util::sync::CancellationToken,
) -> anyhow::Result<bool> {
    let spec: TopicSpec = topology.topic(&r.to_topic).cloned().ok_or_else(|| {
        anyhow::anyhow!("--to-topic {:?} is not declared under topics", r.to_topic)
    })?;
    let producer: FutureProducer = producer_config(&topology.kafka, &spec)
        .create()
        .context("creating the producer")?;
    let snapshot = r.state.snapshot().context("replay state lock poisoned")?;
    if snapshot.topic == r.to_topic {
        anyhow::bail!("--to-topic is the topic read: a replay into itself would never end");
    }
    let destinations = {
        let p = producer.clone();
        let t = r.to_topic.clone();
        tokio::task::spawn_blocking(move || {
            partition_count(
                rdkafka::producer::Producer::client(&p),
                &t,
                Duration::from_secs(10),
            )
        })
        .await??
    };
    let parts: Vec<(u32, i64, i64)> = snapshot
        .partitions
        .iter()
        .map(|(p, s)| (*p, s.next, s.end))
        .collect();
    let reader = BoundedReader::new(
        &reader_config(&topology.kafka, "weir-replay-topic"),
        &snapshot.topic,
        &parts,
    )?;
    let mut read = {
        let (decoder, counters) = (topology.decoder(), r.counters.clone());
        let (range, selector, kinds, max_rate) =
            (r.range, r.selector.clone(), r.kinds.clone(), r.max_rate);
        ReadThread::spawn(move |stop, tx| {
            read_loop(
                reader,
                decoder,
                Filter {
                    range,
                    selector,
                    kinds,
                },
                destinations,
                max_rate,
                counters,
                stop,
                tx,
            )
        })?
    };
    // Once interrupted, what was read already is still produced, then progress saved.
    while let Some(mut flush) = read.next(&interrupt).await {
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
        let samples = flush.samples;
        loop {
            match send_pending(
                &producer,
                &r.to_topic,
                &mut flush.records,
                Duration::from_secs(30),
            )
            .await
            {
                Ok(()) => break,
                Err(e) if e.is_permanent() => return Err(e).context("redriving"),
                Err(e) => {
                    tracing::warn!(error = %e, "redriving: producing failed; retrying what was not acknowledged");
                    if !backoff.wait_unless(&interrupt).await {
                        break;
                    }
                }
            }
        }
        if !flush.records.is_empty() {
            break;
        }
        Counters::add(&r.counters.written, samples as u64);
        r.state.update(|s| {
            for (p, next) in &flush.next {
                if let Some(ps) = s.partitions.get_mut(p) {
                    ps.next = ps.next.max(*next);
                }
            }
        })?;
    }
    read.join().await?;
    Ok(!interrupt.is_cancelled())
}

struct Filter {
    range: EventRange,
    selector: Option<Selector>,
    kinds: Vec<String>,
}

/// Records for the destination, and the source offsets they cover.
struct Flush {
    records: Vec<OutRecord>,
    samples: usize,
    next: HashMap<u32, i64>,
}

#[allow(clippy::too_many_arguments)]
fn read_loop(
    mut reader: BoundedReader,
    decoder: Decoder,
    filter: Filter,
    destinations: u32,
    max_rate: Option<u64>,
    counters: Arc<Counters>,
    stop: &AtomicBool,
    tx: tokio::sync::mpsc::Sender<Flush>,
) -> anyhow::Result<()> {
    let mut encoders: Vec<BatchEncoder> = (0..destinations).map(|_| BatchEncoder::new()).collect();
    // Each record is stamped with its newest sample, so a later replay finds it by time.
    let mut newest: Vec<i64> = vec![i64::MIN; destinations as usize];
    let mut flush = Flush {
        records: Vec::new(),
        samples: 0,
        next: HashMap::new(),
    };
    let mut rate = max_rate.map(RateLimit::new);
    let (mut key, mut kept, mut since) = (String::new(), Vec::new(), 0usize);
    let finish =
        |enc: &mut BatchEncoder, newest: &mut i64, part: usize, out: &mut Vec<OutRecord>| {
            if enc.is_empty() {
                return;
            }
            let payload = enc.finish();
            out.push(OutRecord {
                key: None,
                payload,
                partition: Some(part as i32),
                headers: None,
                timestamp: (*newest != i64::MIN).then_some(*newest),
            });
            *newest = i64::MIN;
        };
    loop {
        if stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        if rate.as_mut().is_some_and(RateLimit::pace_blocking) {
            continue;
        }
        let polled = reader.poll(Duration::from_millis(100));
        let done = matches!(polled, Polled::Done);
        let idle = matches!(polled, Polled::Nothing);
        if let Polled::Record(m) = polled {
            Counters::add(&counters.records, 1);
            flush.next.insert(m.partition() as u32, m.offset() + 1);
            since += 1;
            let wanted_kind = filter.kinds.is_empty()
                || dead_letter_kind(&m).is_some_and(|k| filter.kinds.contains(&k));
            if wanted_kind {
                let (mut read, mut moved) = (0usize, 0usize);
                let visited = decoder.visit(m.payload().unwrap_or_default(), |s| {
                    read += s.samples.len();
                    if filter
                        .selector
                        .as_ref()
                        .is_some_and(|sel| !sel.matches(s.name, s.labels))
                    {
                        return;
                    }
                    kept.clear();
                    kept.extend(
                        s.samples
                            .iter()
                            .filter(|x| filter.range.contains(x.timestamp_ms))
                            .copied(),
                    );
                    if kept.is_empty() {
                        return;
                    }
                    key.clear();
                    write_key_parts(&mut key, s.name, s.labels.iter().copied());
                    let p = partition_for_key(key.as_bytes(), destinations) as usize;
                    if encoders[p].approx_len() > MAX_RECORD_BYTES {
                        finish(&mut encoders[p], &mut newest[p], p, &mut flush.records);
                    }
                    encoders[p].push_parts(
                        s.name,
                        s.labels.iter().copied(),
                        &kept,
                        s.metric_type,
                        s.unit,
                        s.tenant,
                    );
                    if let Some(t) = kept.iter().map(|x| x.timestamp_ms).max() {
                        newest[p] = newest[p].max(t);
                    }
                    moved += kept.len();
                });
                if visited.is_err() {
                    Counters::add(&counters.undecodable, 1);
                }
                Counters::add(&counters.samples_read, read as u64);
                Counters::add(&counters.samples_kept, moved as u64);
                flush.samples += moved;
                if let Some(r) = rate.as_mut() {
                    r.take(read);
                }
            }
        }
        if done || since >= FLUSH_EVERY || (idle && since > 0) {
            for (p, enc) in encoders.iter_mut().enumerate() {
                finish(enc, &mut newest[p], p, &mut flush.records);
            }
            let f = std::mem::replace(
                &mut flush,
                Flush {
                    records: Vec::new(),
                    samples: 0,
                    next: HashMap::new(),
                },
            );
            since = 0;
            if (!f.records.is_empty() || !f.next.is_empty()) && tx.blocking_send(f).is_err() {
                return Ok(());
            }
        }
        if done {
            return Ok(());
        }
    }
}
