//! Producing a batch of records and keeping what Kafka did not acknowledge: a retry
//! sends again only the records that failed, so a partial failure duplicates nothing
//! that already landed (rollup rows, late samples, alert events, dead letters).
use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::OwnedHeaders;
use rdkafka::producer::{FutureProducer, FutureRecord};

/// One record to produce: keyed (partitioned by the producer's partitioner) or sent to
/// an explicit partition.
#[derive(Debug, Clone)]
pub struct OutRecord {
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    pub partition: Option<i32>,
    pub headers: Option<OwnedHeaders>,
    /// The record's timestamp (ms); the producer's clock when `None`.
    pub timestamp: Option<i64>,
}

impl OutRecord {
    pub fn keyed(key: impl Into<Vec<u8>>, payload: Vec<u8>) -> Self {
        Self {
            key: Some(key.into()),
            payload,
            partition: None,
            headers: None,
            timestamp: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("producing to {topic}: {failed} of {total} records not acknowledged: {first}")]
pub struct ProduceError {
    pub topic: String,
    pub failed: usize,
    pub total: usize,
    pub first: KafkaError,
}

impl ProduceError {
    /// A failure that sending the same record again cannot cure (the record is larger
    /// than the broker or the client accepts, or invalid).
    pub fn is_permanent(&self) -> bool {
        is_permanent(&self.first)
    }
}

/// See [`ProduceError::is_permanent`].
pub fn is_permanent(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::MessageSizeTooLarge
                | RDKafkaErrorCode::InvalidMessageSize
                | RDKafkaErrorCode::InvalidRecord
                | RDKafkaErrorCode::InvalidMessage
        )
    )
}

/// Produces every record of `pending` to `topic` and waits for each acknowledgement. On
/// return `pending` holds only the records Kafka did not acknowledge, in their order.
pub async fn send_pending(
    producer: &FutureProducer,
    topic: &str,
    pending: &mut Vec<OutRecord>,
    timeout: Duration,
) -> Result<(), ProduceError> {
    if pending.is_empty() {
        return Ok(());
    }
    let total = pending.len();
    let sends = pending.iter().map(|r| {
        let mut rec: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic).payload(&r.payload);
        if let Some(k) = &r.key {
            rec = rec.key(k);
        }
        if let Some(p) = r.partition {
            rec = rec.partition(p);
        }
        if let Some(h) = &r.headers {
            rec = rec.headers(h.clone());
        }
        if let Some(t) = r.timestamp {
            rec = rec.timestamp(t);
        }
        producer.send(rec, timeout)
    });
    let results = futures::future::join_all(sends).await;
    let mut first = None;
    let mut i = 0;
    pending.retain(|_| {
        let failed = match &results[i] {
            Ok(_) => false,
            Err((e, _)) => {
                first.get_or_insert_with(|| e.clone());
                true
            }
        };
        i += 1;
        failed
    });
    match first {
        None => Ok(()),
        Some(first) => Err(ProduceError {
            topic: topic.to_string(),
            failed: pending.len(),
            total,
            first,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::mocking::MockCluster;
    use rdkafka::ClientConfig;

    /// A batch where one record cannot be produced: the others land once, the failed one
    /// is all that is left to retry, and a retry sends only it.
    #[tokio::test]
    async fn a_partial_failure_leaves_only_the_failed_records_to_retry() {
        let mock = MockCluster::new(1).unwrap();
        mock.create_topic("t", 2, 1).unwrap();
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", mock.bootstrap_servers())
            .set("message.max.bytes", "10000")
            .create()
            .unwrap();
        let rec = |p: i32, len: usize| OutRecord {
            key: None,
            payload: vec![b'x'; len],
            partition: Some(p),
            headers: None,
            timestamp: None,
        };
        let mut pending = vec![rec(0, 10), rec(1, 20_000), rec(1, 30)];
        let e = send_pending(&producer, "t", &mut pending, Duration::from_secs(10))
            .await
            .unwrap_err();
        assert_eq!((e.failed, e.total), (1, 3));
        assert!(e.is_permanent(), "{e}");
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].payload.len(), 20_000);
        // Again: only the failed record is sent, so nothing lands twice.
        assert!(
            send_pending(&producer, "t", &mut pending, Duration::from_secs(10))
                .await
                .is_err()
        );
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", mock.bootstrap_servers())
            .set("group.id", "check")
            .create()
            .unwrap();
        let landed: i64 = (0..2)
            .map(|p| {
                let (low, high) = consumer
                    .fetch_watermarks("t", p, Duration::from_secs(10))
                    .unwrap();
                high - low
            })
            .sum();
        assert_eq!(landed, 2, "each acknowledged record once");
    }
}
