//! Where a range of event times lies in each partition of a topic.
//!
//! Kafka's offsets-for-times gives, per partition, the first offset whose record
//! timestamp is at or after a time. Record timestamps are when a record was produced, not
//! the event times of its samples, so the look-up asks for the range widened by a margin
//! (samples produced a little late, or a little out of order) and the reader keeps only
//! the samples inside the range. The answer is verified against the records themselves —
//! tansu answers a time past the end with offset 0 — and where it is wrong the offset is
//! found by a binary search over record timestamps instead.
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::kafka::partition_count;

/// One partition's slice: records `[start, end)` hold the range; `[low, high)` is what
/// the partition holds now.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Span {
    pub partition: u32,
    pub low: i64,
    pub high: i64,
    pub start: i64,
    pub end: i64,
    /// Record timestamps of the first and last records held (None when empty).
    pub earliest_ms: Option<i64>,
    pub latest_ms: Option<i64>,
}

impl Span {
    pub fn records(&self) -> i64 {
        (self.end - self.start).max(0)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LocateError {
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error(transparent)]
    Metadata(#[from] crate::kafka::MetadataError),
    #[error("reading offset {offset} of {topic}/{partition}: no record within {timeout:?}")]
    NoRecord {
        topic: String,
        partition: u32,
        offset: i64,
        timeout: Duration,
    },
}

/// Reads single records by offset.
struct Prober {
    consumer: BaseConsumer,
    config: ClientConfig,
    topic: String,
    timeout: Duration,
}

impl Prober {
    /// The timestamp of the record at `offset` (or the first one after it, where
    /// compaction removed it). A read that brings nothing is tried again on a new
    /// connection: tansu now and then leaves a fetch unanswered.
    fn timestamp_at(&mut self, partition: u32, offset: i64) -> Result<i64, LocateError> {
        let mut attempt = 0;
        loop {
            match self.read_at(partition, offset) {
                Err(LocateError::NoRecord { .. }) if attempt < 2 => {
                    attempt += 1;
                    tracing::warn!(topic = %self.topic, partition, offset, attempt, "no record came back; reading again on a new connection");
                    self.consumer = self.config.create()?;
                }
                r => return r,
            }
        }
    }

    fn read_at(&self, partition: u32, offset: i64) -> Result<i64, LocateError> {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&self.topic, partition as i32, Offset::Offset(offset))?;
        self.consumer.assign(&tpl)?;
        let deadline = std::time::Instant::now() + self.timeout;
        while std::time::Instant::now() < deadline {
            match self.consumer.poll(Duration::from_millis(100)) {
                Some(Ok(m)) if m.partition() as u32 == partition && m.offset() >= offset => {
                    return Ok(m.timestamp().to_millis().unwrap_or(i64::MIN));
                }
                Some(Err(e)) => tracing::debug!(error = %e, "probe read"),
                _ => {}
            }
        }
        Err(LocateError::NoRecord {
            topic: self.topic.clone(),
            partition,
            offset,
            timeout: self.timeout,
        })
    }

    /// The first offset in `[low, high)` whose record timestamp is at or after `at`
    /// (`high` when none is), given the broker's answer `hint`.
    fn first_at_or_after(
        &mut self,
        partition: u32,
        low: i64,
        high: i64,
        at: i64,
        hint: Option<i64>,
    ) -> Result<i64, LocateError> {
        if low >= high {
            return Ok(high);
        }
        if let Some(h) = hint.filter(|h| (low..=high).contains(h)) {
            let after_ok = h == high || self.timestamp_at(partition, h)? >= at;
            let before_ok = h == low || self.timestamp_at(partition, h - 1)? < at;
            if after_ok && before_ok {
                return Ok(h);
            }
            tracing::debug!(
                partition,
                hint = h,
                at,
                "offsets-for-times answer does not match the records; searching"
            );
        }
        // Binary search: timestamps are in produce order up to small disorder, which the
        // margin absorbs.
        let (mut lo, mut hi) = (low, high);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.timestamp_at(partition, mid)? < at {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        Ok(lo)
    }
}

/// Locates `[from_ms - margin, to_ms + margin)` in every partition of `topic`.
pub fn locate(
    config: &ClientConfig,
    topic: &str,
    from_ms: i64,
    to_ms: i64,
    margin: Duration,
) -> Result<Vec<Span>, LocateError> {
    let timeout = Duration::from_secs(10);
    let consumer: BaseConsumer = config.create()?;
    let partitions = partition_count(consumer.client(), topic, timeout)?;
    let margin_ms = margin.as_millis().min(i64::MAX as u128 / 4) as i64;
    let (start_at, end_at) = (
        from_ms.saturating_sub(margin_ms),
        to_ms.saturating_add(margin_ms),
    );
    let ask = |at: i64| -> Result<Vec<Option<i64>>, LocateError> {
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition_offset(topic, p as i32, Offset::Offset(at))?;
        }
        let answer = consumer.offsets_for_times(tpl, timeout)?;
        Ok((0..partitions)
            .map(|p| {
                answer
                    .find_partition(topic, p as i32)
                    .and_then(|e| match e.offset() {
                        Offset::Offset(o) => Some(o),
                        _ => None,
                    })
            })
            .collect())
    };
    let starts = ask(start_at)?;
    let ends = ask(end_at)?;
    let mut prober = Prober {
        consumer,
        config: config.clone(),
        topic: topic.to_string(),
        timeout,
    };
    let mut spans = Vec::new();
    for p in 0..partitions {
        let (low, high) = prober.consumer.fetch_watermarks(topic, p as i32, timeout)?;
        let (earliest_ms, latest_ms) = if low < high {
            (
                Some(prober.timestamp_at(p, low)?),
                Some(prober.timestamp_at(p, high - 1)?),
            )
        } else {
            (None, None)
        };
        let start = prober.first_at_or_after(p, low, high, start_at, starts[p as usize])?;
        let end = prober
            .first_at_or_after(p, start, high, end_at, ends[p as usize])?
            .max(start);
        spans.push(Span {
            partition: p,
            low,
            high,
            start,
            end,
            earliest_ms,
            latest_ms,
        });
    }
    Ok(spans)
}

/// When retention already removed records of the range: a partition that lost records
/// (low offset above 0) whose earliest record is after `from_ms`. Returns the earliest
/// time every partition still holds.
pub fn outside_retention(spans: &[Span], from_ms: i64) -> Option<i64> {
    let cut = spans
        .iter()
        .any(|s| s.low > 0 && s.earliest_ms.is_some_and(|e| e > from_ms));
    cut.then(|| {
        spans
            .iter()
            .filter(|s| s.low > 0)
            .filter_map(|s| s.earliest_ms)
            .max()
            .unwrap_or(from_ms)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(partition: u32, low: i64, earliest_ms: Option<i64>) -> Span {
        Span {
            partition,
            low,
            high: low + 10,
            start: low,
            end: low + 10,
            earliest_ms,
            latest_ms: earliest_ms,
        }
    }

    #[test]
    fn a_range_is_outside_retention_only_where_records_were_removed() {
        // Nothing removed: a range before the first record is just empty.
        assert_eq!(outside_retention(&[span(0, 0, Some(5_000))], 1_000), None);
        // Records removed and the range starts before what is left: refused, with the
        // earliest time every partition still holds.
        let spans = [
            span(0, 40, Some(5_000)),
            span(1, 7, Some(9_000)),
            span(2, 0, Some(100)),
        ];
        assert_eq!(outside_retention(&spans, 1_000), Some(9_000));
        // Starting after the earliest record held is fine.
        assert_eq!(outside_retention(&spans, 10_000), None);
    }
}

#[cfg(test)]
mod against_a_broker {
    //! `locate` against librdkafka's in-process mock broker: real offsets-for-times and
    //! record reads. (Retention cannot be had here: tansu's storage dies on DeleteRecords
    //! and the mock broker accepts it without moving the log start, so the refusal of a
    //! cut range is tested on spans above.)
    use std::time::Duration;

    use rdkafka::mocking::MockCluster;
    use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
    use rdkafka::ClientConfig;

    use super::*;

    #[tokio::test]
    async fn offsets_follow_record_timestamps() {
        let mock = MockCluster::new(1).unwrap();
        mock.create_topic("t", 1, 1).unwrap();
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", mock.bootstrap_servers());
        let producer: ThreadedProducer<DefaultProducerContext> = config.create().unwrap();
        // Records at 1 000 s, 1 010 s, ... 1 090 s.
        for i in 0..10i64 {
            producer
                .send(
                    BaseRecord::<(), [u8]>::to("t")
                        .payload(b"x")
                        .timestamp(1_000_000 + i * 10_000),
                )
                .unwrap();
        }
        producer.flush(Duration::from_secs(10)).unwrap();
        let mut reader = config.clone();
        reader
            .set("group.id", "locate-test")
            .set("enable.auto.commit", "false");
        let (r, margin) = (reader, Duration::ZERO);
        let spans =
            tokio::task::spawn_blocking(move || locate(&r, "t", 1_020_000, 1_050_000, margin))
                .await
                .unwrap()
                .unwrap();
        assert_eq!((spans[0].start, spans[0].end), (2, 5), "{spans:?}");
        assert_eq!(spans[0].earliest_ms, Some(1_000_000));
        assert_eq!(outside_retention(&spans, 1_020_000), None);
    }
}
