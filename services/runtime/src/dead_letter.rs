//! The dead-letter topic: records (or samples) no consumer can process go there with
//! the reason and their origin in headers, never dropped and never retried forever.
use std::time::Duration;

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::backoff::Backoff;
use crate::config::KafkaConfig;

/// Where a dead letter came from and why it is one.
#[derive(Debug, Clone)]
pub struct DeadLetter<'a> {
    pub source_topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<&'a [u8]>,
    pub payload: &'a [u8],
    /// Short machine-readable reason (`corrupt`, `unknown_fingerprint`, `sink_rejected`, ...).
    pub kind: &'a str,
    pub error: &'a str,
}

pub struct DeadLetters {
    producer: FutureProducer,
    topic: String,
    group: String,
}

impl DeadLetters {
    pub fn new(kafka: &KafkaConfig, topic: &str, group: &str) -> anyhow::Result<Self> {
        let mut cfg = crate::kafka::client_config(kafka);
        cfg.set("enable.idempotence", "true")
            .set("acks", "all")
            .set("compression.type", "lz4");
        for (k, v) in &kafka.producer {
            cfg.set(k, v);
        }
        Ok(Self {
            producer: cfg.create()?,
            topic: topic.to_string(),
            group: group.to_string(),
        })
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// From a thread outside the async runtime (a timely worker): writes one dead
    /// letter, retrying with backoff while the topic is unavailable, and returns once it
    /// is durable — its source offset is committed afterwards.
    pub fn send_blocking(&self, rt: &tokio::runtime::Handle, d: DeadLetter<'_>) {
        tracing::warn!(topic = d.source_topic, partition = d.partition, offset = d.offset, kind = d.kind, error = %d.error, "record to the dead-letter topic");
        let backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
        rt.block_on(self.send_retrying(d, backoff));
    }

    /// Writes one dead letter, retrying with `backoff` while the topic cannot be written,
    /// and returns once it is durable: a dead letter is never skipped.
    pub async fn send_retrying(&self, d: DeadLetter<'_>, mut backoff: Backoff) {
        while let Err(e) = self.send(d.clone()).await {
            tracing::warn!(group = %self.group, error = %e, "dead-letter write failed; retrying");
            backoff.wait().await;
        }
    }

    /// Writes one dead letter and waits for Kafka to acknowledge it: only then may the
    /// caller count the source offset as done. A payload Kafka refuses for its size (a
    /// record near the broker's limit, plus headers) is left out, with its size and a
    /// header saying so: the source record is still where the headers point, and a
    /// dead letter that can never be written must not stall its partition.
    pub async fn send(&self, d: DeadLetter<'_>) -> anyhow::Result<()> {
        match self.send_once(&d, false).await {
            Err(e) if crate::produce::is_permanent(&e) => {
                tracing::warn!(group = %self.group, error = %e, bytes = d.payload.len(), "dead letter too large for Kafka; writing it without its payload");
                self.send_once(&d, true).await
            }
            r => r,
        }
        .map_err(|e| anyhow::anyhow!("writing to dead-letter topic {}: {e}", self.topic))?;
        metrics::counter!("weir_dead_letters_total", "group" => self.group.clone(), "kind" => d.kind.to_string()).increment(1);
        tracing::warn!(
            group = %self.group, source_topic = d.source_topic, partition = d.partition, offset = d.offset,
            kind = d.kind, error = d.error, "sent to the dead-letter topic"
        );
        Ok(())
    }

    async fn send_once(
        &self,
        d: &DeadLetter<'_>,
        omit_payload: bool,
    ) -> Result<(), rdkafka::error::KafkaError> {
        let partition = d.partition.to_string();
        let offset = d.offset.to_string();
        let omitted = format!("{} bytes", d.payload.len());
        // The reason can quote outside input: keep the header small.
        let error = truncate(d.error, 4096);
        let mut headers = OwnedHeaders::new()
            .insert(Header {
                key: "weir.error.kind",
                value: Some(d.kind),
            })
            .insert(Header {
                key: "weir.error",
                value: Some(error),
            })
            .insert(Header {
                key: "weir.source.topic",
                value: Some(d.source_topic),
            })
            .insert(Header {
                key: "weir.source.partition",
                value: Some(&partition),
            })
            .insert(Header {
                key: "weir.source.offset",
                value: Some(&offset),
            })
            .insert(Header {
                key: "weir.consumer.group",
                value: Some(&self.group),
            });
        if omit_payload {
            headers = headers.insert(Header {
                key: "weir.payload.omitted",
                value: Some(&omitted),
            });
        }
        let payload: &[u8] = if omit_payload { &[] } else { d.payload };
        let mut rec: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&self.topic)
            .payload(payload)
            .headers(headers);
        if let Some(k) = d.key {
            rec = rec.key(&k[..k.len().min(4096)]);
        }
        self.producer
            .send(rec, Duration::from_secs(30))
            .await
            .map(|_| ())
            .map_err(|(e, _)| e)
    }
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}
