//! The producer behind an [`Ingest`], fitted to its limits, and the watcher that keeps
//! readiness and the partition count current.
use std::time::Duration;

use anyhow::Context;
use rdkafka::producer::{FutureProducer, Producer};
use weir_runtime::config::{KafkaConfig, TopicSpec};
use weir_runtime::kafka::{partition_count, producer_config};
use weir_runtime::ops::Health;
use weir_runtime::shutdown::Shutdown;

use crate::Ingest;

/// The limits the producer must hold (see [`producer`]).
pub struct ProducerLimits<'a> {
    /// The caller's in-flight budget.
    pub max_inflight_bytes: u64,
    /// The largest record the ingest builds.
    pub max_record_bytes: u64,
    /// The setting that sets `max_record_bytes`, for the error.
    pub record_bytes_setting: &'a str,
}

/// A producer (acks=all, idempotent: see `weir_runtime::kafka`) whose queue holds
/// whatever the caller admits, and whose `message.max.bytes` takes the largest record
/// it builds: admission (the in-flight budget) is then what refuses load, before a
/// request is read, and a full queue or an oversized record can no longer fail a request
/// half-way. Returns it with the queue's record limit, which requests are checked
/// against whole before any record is enqueued.
pub fn producer(
    kafka: &KafkaConfig,
    topic: &TopicSpec,
    l: &ProducerLimits<'_>,
) -> anyhow::Result<(FutureProducer, usize)> {
    let mut c = producer_config(kafka, topic);
    let num = |c: &rdkafka::ClientConfig, key: &str| -> anyhow::Result<u64> {
        c.get(key)
            .unwrap_or("0")
            .parse::<u64>()
            .with_context(|| format!("kafka.producer.{key} is not a number"))
    };
    let budget_kib = l.max_inflight_bytes.div_ceil(1024) + 1024;
    if num(&c, "queue.buffering.max.kbytes")? < budget_kib {
        c.set("queue.buffering.max.kbytes", budget_kib.to_string());
    }
    let max_message = num(&c, "message.max.bytes")?;
    if l.max_record_bytes + 1024 > max_message {
        anyhow::bail!(
            "{} ({}) must be at least 1KiB below the producer's message.max.bytes ({max_message}): records that large would be refused by Kafka",
            l.record_bytes_setting,
            l.max_record_bytes
        );
    }
    let queue = num(&c, "queue.buffering.max.messages")?.max(1) as usize;
    let producer = c.create().context("creating the Kafka producer")?;
    Ok((producer, queue))
}

/// Keeps readiness and the partition count current: every second until Kafka first
/// answers, then every 5 s. Exports `weir_<role>_partitions` and `weir_<role>_kafka_up`.
pub async fn watch_metadata(ingest: &Ingest, health: &Health, role: &str, shutdown: Shutdown) {
    let (partitions_gauge, up_gauge) = (
        format!("weir_{role}_partitions"),
        format!("weir_{role}_kafka_up"),
    );
    let mut first = true;
    loop {
        if !first {
            let every = if ingest.partitions() == 0 { 1 } else { 5 };
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(every)) => {}
            }
        }
        first = false;
        let p = ingest.producer().clone();
        let topic = ingest.topic().to_string();
        let r = tokio::task::spawn_blocking(move || {
            partition_count(p.client(), &topic, Duration::from_secs(5))
        })
        .await;
        match r {
            Ok(Ok(n)) => {
                ingest.set_partitions(n);
                metrics::gauge!(partitions_gauge.clone()).set(n as f64);
                metrics::gauge!(up_gauge.clone()).set(1.0);
                if !health.is_ready() {
                    tracing::info!(topic = %ingest.topic(), partitions = n, "connected to Kafka");
                }
                health.set_ready();
            }
            Ok(Err(e)) => {
                metrics::gauge!(up_gauge.clone()).set(0.0);
                if health.is_ready() || ingest.partitions() == 0 {
                    tracing::warn!(error = %e, "Kafka unreachable; answering 503 until it is back");
                }
                health.set_not_ready(e.to_string());
            }
            Err(e) => tracing::error!(error = %e, "metadata task failed"),
        }
    }
}

/// Flushes what is still queued (on shutdown, after every write was answered).
pub async fn flush(producer: &FutureProducer) -> anyhow::Result<()> {
    let p = producer.clone();
    tokio::task::spawn_blocking(move || p.flush(Duration::from_secs(30)))
        .await
        .context("flush task")?
        .context("flushing the Kafka producer")
}
