//! Kafka outputs: rollup rows as Avro on `metrics.rollup.<tier>`, keyed by series (so a
//! series' rows share a partition, murmur2 as everywhere), and late samples on the
//! late-data topic in `metrics.raw`'s own format, ready to be replayed.
use std::time::Duration;

use anyhow::Context;
use rdkafka::producer::{FutureProducer, FutureRecord};
use weir_contract::avro::{encode_rollup, BatchEncoder, RollupRecord};
use weir_contract::series_key::parse_key;
use weir_contract::{MetricType, Sample, Series};
use weir_runtime::config::KafkaConfig;
use weir_window::Event;

use crate::dataflow::{Key, TierRow};

pub struct TopicSink {
    producer: FutureProducer,
    tier_topics: Vec<(String, String)>,
    late_topic: String,
}

impl TopicSink {
    pub fn new(
        kafka: &KafkaConfig,
        tiers: &[(String, String)],
        late_topic: &str,
    ) -> anyhow::Result<Self> {
        let mut cfg = weir_runtime::kafka::client_config(kafka);
        cfg.set("enable.idempotence", "true")
            .set("acks", "all")
            .set("compression.type", "lz4")
            .set("linger.ms", "20")
            .set("partitioner", "murmur2_random");
        for (k, v) in &kafka.producer {
            cfg.set(k, v);
        }
        Ok(Self {
            producer: cfg.create().context("creating the rollup producer")?,
            tier_topics: tiers.to_vec(),
            late_topic: late_topic.to_string(),
        })
    }

    /// Produces the rows and waits until Kafka acknowledged every one.
    pub async fn write(&self, tier: usize, rows: &[TierRow]) -> anyhow::Result<()> {
        let Some((name, topic)) = self.tier_topics.get(tier) else {
            return Ok(());
        };
        let mut pending = Vec::with_capacity(rows.len());
        for r in rows {
            let x = &r.rollup;
            let value = encode_rollup(&RollupRecord {
                series: &r.key,
                tier: name,
                window_start: r.window.start,
                window_end: r.window.end,
                count: x.count as i64,
                sum: x.sum,
                min: x.min,
                max: x.max,
                first: x.first,
                first_ts: x.first_ts,
                last: x.last,
                last_ts: x.last_ts,
                increase: x.increase,
                p50: x.quantile(0.5),
                p90: x.quantile(0.9),
                p95: x.quantile(0.95),
                p99: x.quantile(0.99),
            });
            let key = r.key.as_str().as_bytes().to_vec();
            let producer = self.producer.clone();
            let topic = topic.clone();
            pending.push(async move {
                producer
                    .send(
                        FutureRecord::to(&topic).key(&key).payload(&value),
                        Duration::from_secs(30),
                    )
                    .await
                    .map_err(|(e, _)| anyhow::anyhow!("producing to {topic}: {e}"))
            });
        }
        for r in futures::future::join_all(pending).await {
            r?;
        }
        Ok(())
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
        let mut pending = Vec::new();
        for (key, samples) in by_key {
            let Some((name, labels)) = parse_key(key) else {
                continue;
            };
            let mut enc = BatchEncoder::new();
            let mut s = Series::new(name, labels, samples);
            s.metric_type = MetricType::Unknown;
            enc.push(&s);
            let value = enc.finish();
            let key = key.as_bytes().to_vec();
            let producer = self.producer.clone();
            let topic = self.late_topic.clone();
            pending.push(async move {
                producer
                    .send(
                        FutureRecord::to(&topic).key(&key).payload(&value),
                        Duration::from_secs(30),
                    )
                    .await
                    .map_err(|(e, _)| anyhow::anyhow!("producing to {topic}: {e}"))
            });
        }
        for r in futures::future::join_all(pending).await {
            r?;
        }
        Ok(())
    }
}
