//! The topology file: topics, consumer groups, sinks and per-role settings of one
//! deployment. `topologies/local.yaml` is embedded as the default.
//!
//! Loading is strict: unknown fields are errors, and every error names the path of the
//! field at fault (`gateway.limits.max_body_bytes: ...`), so `weir check` can point at it.
mod alerter;
mod gateway;
mod kafka;
mod rollup;
mod scrape;
mod sinks;
mod tls;
mod topics;
mod tsdb_writer;

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

pub use alerter::AlerterConfig;
pub use gateway::{
    ApiKey, AuthConfig, GatewayConfig, GatewayLimits, KeysFile, NonFinitePolicy, OtlpConfig,
    OtlpTranslationStrategy, TenantLimitOverrides, TenantLimits, TenantsConfig, ValidationConfig,
};
pub use kafka::{KafkaConfig, SchemasConfig};
pub use rollup::{RollupConfig, TierConfig};
pub use scrape::{ScrapeLimits, ScrapeRoleConfig, ShardingConfig};
pub use sinks::{BasicAuth, SinkSpec};
pub use tls::{ClientAuthMode, ClientAuthOptions, TlsClientOptions, TlsServerOptions};
pub use topics::{CleanupPolicy, Compression, TopicSpec};
pub use tsdb_writer::{check_tenant_id, TenancyConfig, TsdbWriterConfig};

/// The topology the quick start runs, as committed in `topologies/local.yaml`.
pub const LOCAL_TOPOLOGY: &str = include_str!("../../../../topologies/local.yaml");

/// A topology that failed to load; the message names the field.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{origin}: {field}: {message}")]
    Invalid {
        origin: String,
        field: String,
        message: String,
    },
}

impl ConfigError {
    fn invalid(origin: &str, field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid {
            origin: origin.to_string(),
            field: field.into(),
            message: message.into(),
        }
    }

    /// The dotted path of the bad field, when there is one.
    pub fn field(&self) -> Option<&str> {
        match self {
            Self::Invalid { field, .. } => Some(field),
            Self::Read { .. } => None,
        }
    }
}

/// A consumer group and what it reads.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsumerGroupSpec {
    /// Which `weir` role runs as this group.
    pub role: Role,
    pub topics: Vec<String>,
    /// A key of `sinks`.
    #[serde(default)]
    pub sink: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
}

/// The consumer roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    TsdbWriter,
    Rollup,
    Alerter,
}

/// One deployment.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Topology {
    /// Format version of this file; 1.
    pub version: u32,
    pub kafka: KafkaConfig,
    #[serde(default)]
    pub schemas: SchemasConfig,
    pub topics: BTreeMap<String, TopicSpec>,
    #[serde(default)]
    pub consumer_groups: BTreeMap<String, ConsumerGroupSpec>,
    #[serde(default)]
    pub sinks: BTreeMap<String, SinkSpec>,
    #[serde(default)]
    pub gateway: GatewayConfig,
    #[serde(default)]
    pub tsdb_writer: TsdbWriterConfig,
    #[serde(default)]
    pub rollup: RollupConfig,
    #[serde(default)]
    pub alerter: AlerterConfig,
    #[serde(default)]
    pub scrape: ScrapeRoleConfig,
}

impl Topology {
    /// The embedded `topologies/local.yaml`.
    pub fn local() -> Self {
        Self::from_yaml_str(LOCAL_TOPOLOGY, "topologies/local.yaml")
            .expect("the embedded local topology is valid (checked by its test)")
    }

    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_yaml_str(&text, &path.display().to_string())
    }

    /// Loads `path`, or the embedded local topology when `None`.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        match path {
            Some(p) => Self::from_file(p),
            None => Ok(Self::local()),
        }
    }

    pub fn from_yaml_str(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let de = serde_yaml::Deserializer::from_str(text);
        let topo: Topology = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let field = if path == "." {
                "(top level)".to_string()
            } else {
                path
            };
            let msg = e.into_inner().to_string();
            // serde_yaml already prefixes nested errors with the path; say it once.
            let msg = msg
                .strip_prefix(&format!("{field}: "))
                .unwrap_or(&msg)
                .to_string();
            ConfigError::invalid(origin, field, msg)
        })?;
        topo.validate(origin)?;
        Ok(topo)
    }

    /// Checks what the types cannot: references between sections and value ranges.
    fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        let err = |field: String, msg: String| ConfigError::invalid(origin, field, msg);
        if self.version != 1 {
            return Err(err(
                "version".into(),
                format!("unsupported version {} (this weir reads 1)", self.version),
            ));
        }
        if self.kafka.bootstrap_servers.trim().is_empty() {
            return Err(err(
                "kafka.bootstrap_servers".into(),
                "must not be empty".into(),
            ));
        }
        for (section, props) in [
            ("client", &self.kafka.client),
            ("producer", &self.kafka.producer),
            ("consumer", &self.kafka.consumer),
        ] {
            for (key, v) in props {
                resolve_secret(v).map_err(|m| err(format!("kafka.{section}.{key}"), m))?;
            }
        }
        for (id, name) in &self.schemas.confluent_ids {
            if weir_contract::avro::version_by_name(name).is_none() {
                return Err(err(
                    format!("schemas.confluent_ids.{id}"),
                    format!(
                        "unknown schema version {name:?} (known: {})",
                        known_versions()
                    ),
                ));
            }
        }
        for (name, t) in &self.topics {
            t.validate()
                .map_err(|(f, m)| err(format!("topics.{name}.{f}"), m))?;
        }
        for (name, g) in &self.consumer_groups {
            if g.topics.is_empty() {
                return Err(err(
                    format!("consumer_groups.{name}.topics"),
                    "names no topic".into(),
                ));
            }
            for (i, t) in g.topics.iter().enumerate() {
                if !self.topics.contains_key(t) {
                    return Err(err(
                        format!("consumer_groups.{name}.topics[{i}]"),
                        format!("topic {t:?} is not declared under topics"),
                    ));
                }
            }
            if let Some(s) = &g.sink {
                if !self.sinks.contains_key(s) {
                    return Err(err(
                        format!("consumer_groups.{name}.sink"),
                        format!("sink {s:?} is not declared under sinks"),
                    ));
                }
            }
        }
        for (name, s) in &self.sinks {
            s.validate()
                .map_err(|(f, m)| err(format!("sinks.{name}.{f}"), m))?;
        }
        if !self.topics.contains_key(&self.gateway.topic) {
            return Err(err(
                "gateway.topic".into(),
                format!(
                    "topic {:?} is not declared under topics",
                    self.gateway.topic
                ),
            ));
        }
        self.gateway
            .validate()
            .map_err(|(f, m)| err(format!("gateway.{f}"), m))?;
        self.scrape
            .validate()
            .map_err(|(f, m)| err(format!("scrape.{f}"), m))?;
        // Checked only where scrape is set up: other topologies need not declare its topic.
        let scrapes = self.scrape.config_file.is_some() || self.scrape.prometheus.is_some();
        if scrapes && !self.topics.contains_key(&self.scrape.topic) {
            return Err(err(
                "scrape.topic".into(),
                format!("topic {:?} is not declared under topics", self.scrape.topic),
            ));
        }
        self.tsdb_writer
            .validate()
            .map_err(|(f, m)| err(format!("tsdb_writer.{f}"), m))?;
        self.validate_tenancy()
            .map_err(|(f, m)| err(format!("tsdb_writer.tenancy.{f}"), m))?;
        self.rollup
            .validate()
            .map_err(|(f, m)| err(format!("rollup.{f}"), m))?;
        self.alerter
            .validate()
            .map_err(|(f, m)| err(format!("alerter.{f}"), m))?;
        Ok(())
    }

    /// The writer's tenant sinks exist and are remote-write sinks, and tenancy on does
    /// something: a sink names `{tenant}` or a tenant has a sink of its own.
    fn validate_tenancy(&self) -> Result<(), (String, String)> {
        let t = &self.tsdb_writer.tenancy;
        let templated = |s: &SinkSpec| match s {
            SinkSpec::PrometheusRemoteWrite { url, headers, .. } => {
                url.contains("{tenant}") || headers.values().any(|v| v.contains("{tenant}"))
            }
            _ => false,
        };
        let group_sink = self
            .consumer_groups
            .get(&self.tsdb_writer.group)
            .and_then(|g| g.sink.as_ref())
            .and_then(|s| self.sinks.get(s));
        if !t.enabled {
            if group_sink.is_some_and(templated) {
                return Err((
                    "enabled".into(),
                    "is false, but the writer's sink holds {tenant}: turn tenancy on".into(),
                ));
            }
            return Ok(());
        }
        for (tenant, sink) in &t.sinks {
            match self.sinks.get(sink) {
                Some(SinkSpec::PrometheusRemoteWrite { .. }) => {}
                Some(_) => {
                    return Err((
                        format!("sinks.{tenant}"),
                        format!("sink {sink:?} is not of type prometheus_remote_write"),
                    ))
                }
                None => {
                    return Err((
                        format!("sinks.{tenant}"),
                        format!("sink {sink:?} is not declared under sinks"),
                    ))
                }
            }
        }
        if t.sinks.is_empty() && !group_sink.is_some_and(templated) {
            return Err((
                "enabled".into(),
                "is true, but the writer's sink holds no {tenant} in its url or headers and tenancy.sinks is empty: every tenant would be written alike".into(),
            ));
        }
        Ok(())
    }

    /// The Confluent schema-id map as a decoder.
    pub fn decoder(&self) -> weir_contract::avro::Decoder {
        let mut d = weir_contract::avro::Decoder::new();
        for (id, name) in &self.schemas.confluent_ids {
            if let Some(v) = weir_contract::avro::version_by_name(name) {
                d = d.with_confluent_id(*id, v);
            }
        }
        d
    }

    pub fn topic(&self, name: &str) -> Option<&TopicSpec> {
        self.topics.get(name)
    }

    /// A consumer group of the given role, with its sink resolved.
    pub fn group_of_role(
        &self,
        group: &str,
        role: Role,
    ) -> Result<(&ConsumerGroupSpec, Option<&SinkSpec>), String> {
        let g = self.consumer_groups.get(group).ok_or_else(|| {
            format!("consumer group {group:?} is not declared under consumer_groups")
        })?;
        if g.role != role {
            return Err(format!(
                "consumer group {group:?} has role {:?}, not {role:?}",
                g.role
            ));
        }
        let sink = g.sink.as_ref().and_then(|s| self.sinks.get(s));
        Ok((g, sink))
    }
}

/// A secret from config: the value itself, `env:VAR` to read it from the environment,
/// or `file:PATH` to read it from a file (a mounted Kubernetes secret; one trailing
/// newline is dropped).
pub fn resolve_secret(value: &str) -> Result<String, String> {
    if let Some(var) = value.strip_prefix("env:") {
        return std::env::var(var).map_err(|_| format!("environment variable {var} is not set"));
    }
    if let Some(path) = value.strip_prefix("file:") {
        let s = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
        let s = s.strip_suffix('\n').unwrap_or(&s);
        return Ok(s.strip_suffix('\r').unwrap_or(s).to_string());
    }
    Ok(value.to_string())
}

fn known_versions() -> String {
    weir_contract::avro::versions()
        .iter()
        .map(|v| v.name)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests;
