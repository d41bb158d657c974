use std::collections::BTreeMap;

use serde::Deserialize;

/// How to reach Kafka.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// `host:port[,host:port...]`.
    pub bootstrap_servers: String,
    /// Extra librdkafka properties for every client (e.g. `security.protocol`).
    #[serde(default)]
    pub client: BTreeMap<String, String>,
    /// Extra properties for producers only.
    #[serde(default)]
    pub producer: BTreeMap<String, String>,
    /// Extra properties for consumers only.
    #[serde(default)]
    pub consumer: BTreeMap<String, String>,
}

/// Schema settings for readers.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchemasConfig {
    /// Confluent wire format: schema id → known version (`metrics_batch.v1`).
    #[serde(default)]
    pub confluent_ids: BTreeMap<u32, String>,
}
