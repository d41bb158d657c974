//! Kafka outputs: rollup rows as Avro on `metrics.rollup.<tier>`, keyed by series (so a
//! series' rows share a partition, murmur2 as everywhere), and late samples on the
//! late-data topic in `metrics.raw`'s own format, ready to be replayed.
use std::time::Duration;

use anyhow::Context;
use rdkafka::producer::{FutureProducer, FutureRecord};
use weir_contract::avro::{encode_rollup, BatchEncoder, RollupRecord};
use weir_contract::series_key::parse_key;
use weir_contract::{MetricType, Sample, Series};
use weir_runtime::config::{KafkaConfig, TopicSpec};
use weir_runtime::kafka::producer_config;
use weir_window::Event;

use crate::dataflow::Key;

/// A topic and the producer writing it (compression follows each topic's spec).
struct Output {
    topic: String,
    producer: FutureProducer,
}

impl Output {
    fn new(kafka: &KafkaConfig, topic: &str, spec: &TopicSpec) -> anyhow::Result<Self> {
        let mut cfg = producer_config(kafka, spec);
        // Keyed by series: partitioned as a Java producer would (the data contract).
        cfg.set("partitioner", "murmur2_random");
        Ok(Self {
            topic: topic.to_string(),
            producer: cfg
                .create()
                .with_context(|| format!("creating the producer of {topic}"))?,
        })
    }
}

pub struct TopicSink {
    /// By tier index.
    tiers: Vec<Output>,
    late: Output,
}

impl TopicSink {
    /// `tiers` are the tier topics in tier order, `late` the late-data topic, each with
    /// its spec from the topology.
    pub fn new(
        kafka: &KafkaConfig,
        tiers: &[(String, TopicSpec)],
        late: (&str, &TopicSpec),
    ) -> anyhow::Result<Self> {
        Ok(Self {
            tiers: tiers
                .iter()
                .map(|(t, spec)| Output::new(kafka, t, spec))
                .collect::<anyhow::Result<_>>()?,
            late: Output::new(kafka, late.0, late.1)?,
        })
    }

    /// Produces the rows, keyed by series, and waits until Kafka acknowledged every one.
    pub async fn write(&self, tier: usize, rows: &[RollupRecord<'_>]) -> anyhow::Result<()> {
        let Some(out) = self.tiers.get(tier) else {
            return Ok(());
        };
        let records = rows
            .iter()
            .map(|r| (r.series.as_bytes().to_vec(), encode_rollup(r)))
            .collect();
        Self::send_all(out, records).await
    }

    /// Late samples, one record per series, in `metrics.raw`'s Avro.
    pub async fn write_late(&self, late: &[Event<Key, f64>]) -> anyhow::Result<()> {
        let mut by_key: std::collections::BTreeMap<&str, Vec<Sample>> = Default::default();
        for e in late {
            by_key
                .entry(e.key.as_str())
                .or_default()
                .push(Sample::new(e.ts, e.value));
        }
        let mut records = Vec::new();
        for (key, samples) in by_key {
            let Some((name, labels)) = parse_key(key) else {
                continue;
            };
            let mut enc = BatchEncoder::new();
            let mut s = Series::new(name, labels, samples);
            s.metric_type = MetricType::Unknown;
            enc.push(&s);
            records.push((key.as_bytes().to_vec(), enc.finish()));
        }
        Self::send_all(&self.late, records).await
    }

    /// Produces `(key, value)` records and waits for every acknowledgement.
    async fn send_all(out: &Output, records: Vec<(Vec<u8>, Vec<u8>)>) -> anyhow::Result<()> {
        let topic = out.topic.as_str();
        let pending = records.into_iter().map(|(key, value)| {
            let producer = out.producer.clone();
            async move {
                producer
                    .send(
                        FutureRecord::to(topic).key(&key).payload(&value),
                        Duration::from_secs(30),
                    )
                    .await
                    .map(|_| ())
                    .map_err(|(e, _)| anyhow::anyhow!("producing to {topic}: {e}"))
            }
        });
        for r in futures::future::join_all(pending).await {
            r?;
        }
        Ok(())
    }
}
