//! `weir replay --into tsdb-writer`: writes the raw samples of a range (and of a
//! selector) to the writer group's sink or another one — e.g. a fresh VictoriaMetrics
//! after data loss — beside the live writer.
//!
//! A reader thread (librdkafka's calls block) reads the range's records outside any
//! consumer group and transcodes the samples inside the range into one remote-write
//! body per partition batch; the writer sends each batch (retrying while the sink fails,
//! splitting a refused batch down to the series it refuses, which are counted and left
//! out), and only then saves the partition's next offset in the replay's state. A rerun
//! resends at most the batch in flight when it was stopped; the receiver's deduplication
//! of identical samples makes that invisible.
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use rdkafka::message::Message;
use tokio_util::sync::CancellationToken;
use weir_contract::remote_write::push_timeseries;
use weir_runtime::backoff::Backoff;
use weir_runtime::config::{Role, SinkSpec};
use weir_runtime::input_checks::{InputChecks, Placement};
use weir_runtime::kafka::reader_config;
use weir_runtime::replay::reader::{Polled, ReadThread};
use weir_runtime::replay::{BoundedReader, Counters, EventRange, RateLimit, StateFile};
use weir_runtime::role::{RoleOps, RoleSpec};
use weir_runtime::selector::Selector;
use weir_runtime::Topology;

use crate::sink::{RemoteWriteSink, SendError};

pub struct TsdbReplay {
    pub range: EventRange,
    pub state: StateFile,
    pub partitions: u32,
    pub counters: Arc<Counters>,
    pub max_rate: Option<u64>,
    pub selector: Option<Selector>,
    /// Instead of the group's sink.
    pub sink: Option<SinkSpec>,
}

/// One partition's batch: remote-write `timeseries` entries back to back, where each
/// entry ends, and the offset after the last record read into it.
struct Batch {
    partition: u32,
    body: Vec<u8>,
    ends: Vec<usize>,
    samples: usize,
    next: i64,
}

pub async fn run(
    topology: Topology,
    r: TsdbReplay,
    ops: &RoleOps,
    interrupt: CancellationToken,
) -> anyhow::Result<bool> {
    let cfg = topology.tsdb_writer.clone();
    // With --sink the writer group need not exist: a fresh TSDB is often not in the
    // topology at all.
    let spec = match &r.sink {
        Some(s) => s.clone(),
        // Replay writes one sink; routing tenants apart is the live writer's.
        None if cfg.tenancy.enabled => anyhow::bail!(
            "tsdb_writer.tenancy is on: replay one tenant at a time with --sink (that tenant's sink) and --select '{}=\"<tenant>\"'",
            cfg.tenancy.label
        ),
        None => {
            let role = RoleSpec::resolve(&topology, "tsdb_writer", &cfg.group, Role::TsdbWriter)?;
            role.sink.cloned().with_context(|| {
                format!("consumer group {} names no sink; give --sink", cfg.group)
            })?
        }
    };
    let sink = RemoteWriteSink::new(&spec, cfg.request_timeout)?;
    tracing::info!(
        sink = sink.shown_url(),
        "replaying into the remote-write sink"
    );
    ops.health.set_ready();

    let snapshot = r.state.snapshot().context("replay state lock poisoned")?;
    let parts: Vec<(u32, i64, i64)> = snapshot
        .partitions
        .iter()
        .map(|(p, s)| (*p, s.next, s.end))
        .collect();
    let reader = BoundedReader::new(
        &reader_config(&topology.kafka, &format!("weir-replay-{}", cfg.group)),
        &snapshot.topic,
        &parts,
    )
    .context("creating the replay reader")?;
    let mut read = {
        let (counters, decoder) = (r.counters.clone(), topology.decoder());
        let (range, selector, max_rate) = (r.range, r.selector.clone(), r.max_rate);
        let checks = InputChecks::new(cfg.max_sample_future).check_partition(cfg.check_partition);
        let (max_samples, partitions) = (cfg.max_batch_samples, r.partitions);
        let max_bytes = cfg.max_batch_bytes.as_u64() as usize;
        ReadThread::spawn(move |stop, tx| {
            read_loop(
                reader,
                decoder,
                checks,
                range,
                selector,
                max_rate,
                max_samples,
                max_bytes,
                partitions,
                counters,
                stop,
                tx,
            )
        })?
    };
    // Once interrupted, what was read already is still written, then progress saved.
    while let Some(batch) = read.next(&interrupt).await {
        let written = deliver(
            &sink,
            &batch,
            cfg.retry_initial,
            cfg.retry_max,
            &r.counters,
            &interrupt,
        )
        .await;
        if !written {
            break;
        }
        Counters::add(&r.counters.written, batch.samples as u64);
        r.state.update(|s| {
            if let Some(p) = s.partitions.get_mut(&batch.partition) {
                p.next = p.next.max(batch.next);
            }
        })?;
    }
    read.join().await?;
    Ok(!interrupt.is_cancelled())
}

/// Reads every record of the state's spans into per-partition batches.
#[allow(clippy::too_many_arguments)]
fn read_loop(
    mut reader: BoundedReader,
    decoder: weir_contract::avro::Decoder,
    mut checks: InputChecks,
    range: EventRange,
    selector: Option<Selector>,
    max_rate: Option<u64>,
    max_samples: usize,
    max_bytes: usize,
    partitions: u32,
    counters: Arc<Counters>,
    stop: &AtomicBool,
    tx: tokio::sync::mpsc::Sender<Batch>,
) -> anyhow::Result<()> {
    let mut batches: std::collections::HashMap<u32, Batch> = Default::default();
    let mut rate = max_rate.map(RateLimit::new);
    let mut kept = Vec::new();
    let mut last_flush = Instant::now();
    let send = |b: Batch| tx.blocking_send(b).is_ok();
    loop {
        if stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        if rate.as_mut().is_some_and(RateLimit::pace_blocking) {
            continue;
        }
        let polled = reader.poll(Duration::from_millis(100));
        let idle = matches!(polled, Polled::Nothing);
        let done = matches!(polled, Polled::Done);
        if let Polled::Record(m) = polled {
            let partition = m.partition() as u32;
            let b = batches.entry(partition).or_insert_with(|| Batch {
                partition,
                body: Vec::new(),
                ends: Vec::new(),
                samples: 0,
                next: m.offset() + 1,
            });
            b.next = m.offset() + 1;
            let (mut read, mut in_range) = (0u64, 0usize);
            checks.start(Some(Placement {
                partition,
                partitions,
            }));
            let visited = decoder.visit(m.payload().unwrap_or_default(), |s| {
                let all = checks.within(&s);
                read += all.len() as u64;
                if selector
                    .as_ref()
                    .is_some_and(|sel| !sel.matches(s.name, s.labels))
                {
                    return;
                }
                kept.clear();
                kept.extend(
                    all.iter()
                        .filter(|x| range.contains(x.timestamp_ms))
                        .copied(),
                );
                if kept.is_empty() {
                    return;
                }
                push_timeseries(&mut b.body, s.name, s.labels, &kept);
                b.ends.push(b.body.len());
                in_range += kept.len();
            });
            match visited {
                // What the checks cut, the live groups dead-lettered already.
                Ok(_) => drop(checks.finish()),
                Err(_) => {
                    checks.reset();
                    Counters::add(&counters.undecodable, 1);
                }
            }
            b.samples += in_range;
            Counters::add(&counters.records, 1);
            Counters::add(&counters.samples_read, read);
            Counters::add(&counters.samples_kept, in_range as u64);
            if let Some(r) = rate.as_mut() {
                r.take(read as usize);
            }
            if b.samples >= max_samples || b.body.len() >= max_bytes {
                if let Some(b) = batches.remove(&partition) {
                    if !send(b) {
                        return Ok(());
                    }
                }
                last_flush = Instant::now();
            }
        }
        // Batches of partitions that went quiet (or at the end) go out as they are.
        if done || (idle && last_flush.elapsed() > Duration::from_millis(500)) {
            for (_, b) in batches.drain() {
                if !send(b) {
                    return Ok(());
                }
            }
            last_flush = Instant::now();
        }
        if done {
            return Ok(());
        }
    }
}

/// Sends a batch until written, splitting what the receiver refuses; `false` when
/// interrupted while the sink was failing (the batch is read again on resume).
async fn deliver(
    sink: &RemoteWriteSink,
    b: &Batch,
    first: Duration,
    max: Duration,
    counters: &Counters,
    interrupt: &CancellationToken,
) -> bool {
    if b.ends.is_empty() {
        return true;
    }
    let start_of = |i: usize| if i == 0 { 0 } else { b.ends[i - 1] };
    let mut stack = vec![(0usize, b.ends.len())];
    while let Some((i, j)) = stack.pop() {
        let body = &b.body[start_of(i)..b.ends[j - 1]];
        let compressed = bytes::Bytes::from(
            snap::raw::Encoder::new()
                .compress_vec(body)
                .unwrap_or_default(),
        );
        let mut backoff = Backoff::new(first, max);
        loop {
            match sink.send(compressed.clone()).await {
                Ok(()) => break,
                Err(SendError::Retryable(why)) => {
                    tracing::warn!(error = %why, "replay: sink write failed; retrying");
                    if !backoff.wait_unless(interrupt).await {
                        return false;
                    }
                }
                Err(SendError::Rejected { status, body }) => {
                    if j - i > 1 {
                        let mid = i + (j - i) / 2;
                        stack.push((mid, j));
                        stack.push((i, mid));
                    } else {
                        tracing::warn!(status, error = %body, "replay: the receiver refused a series; left out");
                        Counters::add(&counters.refused, 1);
                    }
                    break;
                }
            }
        }
    }
    true
}
