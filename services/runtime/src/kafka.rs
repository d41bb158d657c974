//! Kafka client plumbing shared by every role: configs built from the topology, and
//! metadata look-ups done off the async runtime (librdkafka's calls block).
use std::time::Duration;

use rdkafka::client::{Client, ClientContext};
use rdkafka::config::ClientConfig;

use crate::config::{KafkaConfig, TopicSpec};

/// Base config: bootstrap servers plus the topology's `kafka.client` properties.
/// TLS and SASL are librdkafka's own properties (`security.protocol: SASL_SSL`,
/// `ssl.ca.location`, `sasl.mechanism: SCRAM-SHA-512`, ...; see
/// docs/topology.md); a value `env:VAR` or `file:PATH` is read from there, so
/// passwords stay out of the topology.
pub fn client_config(k: &KafkaConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &k.bootstrap_servers);
    set_all(&mut c, &k.client);
    c
}

/// Sets each property, resolving `env:`/`file:` values. The topology's check already
/// resolved every one of them at start, so a failure here is a secret that vanished
/// since; librdkafka then reports the bad value itself.
fn set_all(c: &mut ClientConfig, props: &std::collections::BTreeMap<String, String>) {
    for (key, v) in props {
        let value = crate::config::resolve_secret(v).unwrap_or_else(|_| v.clone());
        c.set(key, value);
    }
}

/// A producer that never loses or duplicates on retry: idempotent with `acks=all`.
/// Compression follows the topic's codec; batching settings favour throughput while
/// keeping the added latency small.
pub fn producer_config(k: &KafkaConfig, topic: &TopicSpec) -> ClientConfig {
    let mut c = client_config(k);
    c.set("enable.idempotence", "true")
        .set("acks", "all")
        .set("compression.type", topic.compression.producer_codec())
        .set("linger.ms", "5")
        .set("batch.size", "1000000")
        .set("message.max.bytes", "1048576")
        .set("queue.buffering.max.kbytes", "262144")
        .set("queue.buffering.max.messages", "100000")
        .set("message.timeout.ms", "30000");
    set_all(&mut c, &k.producer);
    c
}

/// A consumer in `group` that commits only what the caller stores.
pub fn consumer_config(k: &KafkaConfig, group: &str) -> ClientConfig {
    let mut c = client_config(k);
    c.set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        // Eager rebalancing: every member revokes everything, drains and commits, then
        // gets its new share. Incremental (cooperative-sticky) rebalancing left
        // partitions orphaned on tansu when a member died (seen in the two-writer test).
        .set("partition.assignment.strategy", "roundrobin");
    set_all(&mut c, &k.consumer);
    // After the overrides: offsets are stored only once a sink acknowledged them, and
    // no topology setting may turn that off.
    c.set("enable.auto.offset.store", "false");
    c
}

/// A reader outside any consumer group (a replay, a time look-up): partitions are
/// assigned by hand, nothing is committed to the broker, so live groups never see it.
/// `group.id` only names the client in the broker's logs.
pub fn reader_config(k: &KafkaConfig, name: &str) -> ClientConfig {
    let mut c = client_config(k);
    c.set("group.id", name)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false")
        // Look-ups read one record at a time: a broker holding each fetch for the
        // default 500 ms would make a binary search over a partition take seconds.
        .set("fetch.wait.max.ms", "20");
    set_all(&mut c, &k.consumer);
    c.set("enable.auto.offset.store", "false");
    c
}

/// Errors from metadata look-ups.
#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    #[error("kafka metadata for {topic}: {source}")]
    Kafka {
        topic: String,
        source: rdkafka::error::KafkaError,
    },
    #[error("topic {0} does not exist (run `weir topics apply`)")]
    NoSuchTopic(String),
    #[error("topic {topic}: {error}")]
    TopicError { topic: String, error: String },
}

/// The partition count of `topic`, as the brokers report it now.
pub fn partition_count<C: ClientContext>(
    client: &Client<C>,
    topic: &str,
    timeout: Duration,
) -> Result<u32, MetadataError> {
    let md = client
        .fetch_metadata(Some(topic), timeout)
        .map_err(|source| MetadataError::Kafka {
            topic: topic.to_string(),
            source,
        })?;
    let t = md
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .ok_or_else(|| MetadataError::NoSuchTopic(topic.to_string()))?;
    if let Some(e) = t.error() {
        if e == rdkafka::types::RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART {
            return Err(MetadataError::NoSuchTopic(topic.to_string()));
        }
        return Err(MetadataError::TopicError {
            topic: topic.to_string(),
            error: format!("{e:?}"),
        });
    }
    if t.partitions().is_empty() {
        return Err(MetadataError::NoSuchTopic(topic.to_string()));
    }
    Ok(t.partitions().len() as u32)
}
