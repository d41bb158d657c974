//! Kafka outputs: rollup rows as Avro on `metrics.rollup.<tier>`, keyed by series (so a
//! series' rows share a partition, murmur2 as everywhere), and late samples on the
//! late-data topic in `metrics.raw`'s own format, ready to be replayed.
use std::time::Duration;

use anyhow::Context;
use rdkafka::producer::FutureProducer;
use weir_contract::avro::{
    encode_rollup, BatchEncoder, RollupRecord, MAX_SAMPLE_LEN, RECORD_OVERHEAD,
};
use weir_contract::series_key::parse_key;
use weir_contract::{MetricType, Sample, Series};
use weir_runtime::config::{KafkaConfig, TopicSpec};
use weir_runtime::kafka::producer_config;
use weir_runtime::produce::{send_pending, OutRecord};
use weir_window::Event;

use crate::dataflow::Key;

/// The largest late-sample record written: well below the producer's 1 MiB
/// `message.max.bytes`, so a burst of late samples of one series never makes a record
/// Kafka refuses (which would be retried forever).
pub const MAX_LATE_RECORD: usize = 512 << 10;

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

    /// The records of a tier's rows, keyed by series; none when the tier has no topic.
    pub fn tier_records(&self, tier: usize, rows: &[RollupRecord<'_>]) -> Vec<OutRecord> {
        if tier >= self.tiers.len() {
            return Vec::new();
        }
        rows.iter()
            .map(|r| OutRecord::keyed(r.series.as_bytes(), encode_rollup(r)))
            .collect()
    }

    /// Late samples in `metrics.raw`'s Avro, keyed by series: one record per series, or
    /// several for a series with more late samples than one record holds.
    pub fn late_records(&self, late: &[Event<Key, f64>]) -> Vec<OutRecord> {
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
            let head = BatchEncoder::series_head_bound(
                &name,
                labels.iter().map(|l| (l.name.as_str(), l.value.as_str())),
                None,
                None,
            );
            let per_record =
                (MAX_LATE_RECORD.saturating_sub(head + RECORD_OVERHEAD) / MAX_SAMPLE_LEN).max(1);
            for chunk in samples.chunks(per_record) {
                let mut enc = BatchEncoder::new();
                let mut s = Series::new(name.clone(), labels.clone(), chunk.to_vec());
                s.metric_type = MetricType::Unknown;
                enc.push(&s);
                records.push(OutRecord::keyed(key.as_bytes(), enc.finish()));
            }
        }
        records
    }

    /// Produces a tier's pending records; on return only those Kafka did not
    /// acknowledge are left in `pending`.
    pub async fn send_tier(&self, tier: usize, pending: &mut Vec<OutRecord>) -> anyhow::Result<()> {
        match self.tiers.get(tier) {
            Some(out) => Self::send(out, pending).await,
            None => Ok(()),
        }
    }

    /// Likewise for the late topic.
    pub async fn send_late(&self, pending: &mut Vec<OutRecord>) -> anyhow::Result<()> {
        Self::send(&self.late, pending).await
    }

    async fn send(out: &Output, pending: &mut Vec<OutRecord>) -> anyhow::Result<()> {
        send_pending(&out.producer, &out.topic, pending, Duration::from_secs(30))
            .await
            .map_err(anyhow::Error::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_contract::avro::Decoder;
    use weir_runtime::config::Topology;

    #[test]
    fn a_series_with_many_late_samples_is_split_into_records_that_fit() {
        let topology = Topology::local();
        let spec = topology.topic("metrics.late").cloned().expect("declared");
        let sink = TopicSink::new(&topology.kafka, &[], ("metrics.late", &spec)).unwrap();
        let key = weir_window::HashedKey::from(r#"m{host="a"}"#);
        let late: Vec<Event<Key, f64>> = (0..200_000)
            .map(|i| Event {
                key: key.clone(),
                part: 0,
                ts: i,
                value: 1.0,
                part_watermark: None,
            })
            .collect();
        let records = sink.late_records(&late);
        assert!(records.len() > 1);
        let mut n = 0;
        for r in &records {
            assert!(
                r.payload.len() <= MAX_LATE_RECORD,
                "{} bytes",
                r.payload.len()
            );
            n += Decoder::new().decode(&r.payload).unwrap().series[0]
                .samples
                .len();
        }
        assert_eq!(n, 200_000);
    }
}
