//! `weir topics apply`: make the brokers hold the topics a topology declares. Creates
//! what is missing; reports drift (partition count, configs) and never deletes or
//! shrinks anything, so applying is always safe on a live cluster.
use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;

use crate::config::Topology;
use crate::kafka::client_config;

/// One difference between the topology and the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drift {
    pub topic: String,
    pub field: String,
    pub want: String,
    pub have: String,
}

impl std::fmt::Display for Drift {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} is {} on the cluster, the topology wants {}",
            self.topic, self.field, self.have, self.want
        )
    }
}

#[derive(Debug, Default)]
pub struct ApplyReport {
    pub created: Vec<String>,
    pub unchanged: Vec<String>,
    pub drift: Vec<Drift>,
    /// Things that could not be checked (e.g. the broker does not describe configs).
    pub notes: Vec<String>,
}

const TIMEOUT: Duration = Duration::from_secs(15);

/// Applies the topology's topics. With `dry_run`, only reports.
pub async fn apply(topology: &Topology, dry_run: bool) -> anyhow::Result<ApplyReport> {
    let admin: AdminClient<DefaultClientContext> = client_config(&topology.kafka)
        .create()
        .context("creating the Kafka admin client")?;
    let existing = existing_partitions(&admin).await?;
    let mut report = ApplyReport::default();
    let opts = AdminOptions::new().operation_timeout(Some(TIMEOUT));

    let missing: Vec<(&String, _)> = topology
        .topics
        .iter()
        .filter(|(name, _)| !existing.contains_key(*name))
        .collect();
    if !missing.is_empty() && !dry_run {
        let configs: Vec<BTreeMap<String, String>> =
            missing.iter().map(|(_, s)| s.configs()).collect();
        let new: Vec<NewTopic> = missing
            .iter()
            .zip(&configs)
            .map(|((name, spec), cfg)| {
                let mut t = NewTopic::new(
                    name,
                    spec.partitions as i32,
                    TopicReplication::Fixed(spec.replication_factor as i32),
                );
                for (k, v) in cfg {
                    t = t.set(k, v);
                }
                t
            })
            .collect();
        for r in admin
            .create_topics(&new, &opts)
            .await
            .context("creating topics")?
        {
            match r {
                Ok(name) => report.created.push(name),
                // Another process created it meanwhile: fine, it is checked next run.
                Err((name, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {
                    report.unchanged.push(name)
                }
                Err((name, code)) => anyhow::bail!("creating topic {name}: {code}"),
            }
        }
    } else if dry_run {
        report.created.extend(
            missing
                .iter()
                .map(|(n, _)| format!("{n} (dry run: would create)")),
        );
    }

    let present: Vec<&String> = topology
        .topics
        .keys()
        .filter(|n| existing.contains_key(*n))
        .collect();
    for name in &present {
        let spec = &topology.topics[*name];
        let have = existing[*name];
        if have != spec.partitions {
            report.drift.push(Drift {
                topic: (*name).clone(),
                field: "partitions".into(),
                want: spec.partitions.to_string(),
                have: have.to_string(),
            });
        }
    }
    if !present.is_empty() {
        let specs: Vec<ResourceSpecifier> = present
            .iter()
            .map(|n| ResourceSpecifier::Topic(n))
            .collect();
        match admin.describe_configs(&specs, &opts).await {
            Ok(results) => {
                for (name, res) in present.iter().zip(results) {
                    match res {
                        Ok(resource) => {
                            let want = topology.topics[*name].configs();
                            for (k, v) in &want {
                                match resource.get(k).and_then(|e| e.value.as_deref()) {
                                    Some(have) if have == v => {}
                                    Some(have) => report.drift.push(Drift {
                                        topic: (*name).clone(),
                                        field: k.clone(),
                                        want: v.clone(),
                                        have: have.to_string(),
                                    }),
                                    None => report
                                        .notes
                                        .push(format!("{name}: the broker does not report {k}")),
                                }
                            }
                        }
                        Err(e) => report
                            .notes
                            .push(format!("{name}: configs not checked: {e}")),
                    }
                }
            }
            Err(e) => report.notes.push(format!("topic configs not checked: {e}")),
        }
        for name in present {
            if !report.drift.iter().any(|d| &d.topic == name) {
                report.unchanged.push(name.clone());
            }
        }
    }
    Ok(report)
}

async fn existing_partitions(
    admin: &AdminClient<DefaultClientContext>,
) -> anyhow::Result<BTreeMap<String, u32>> {
    let md = admin
        .inner()
        .fetch_metadata(None, TIMEOUT)
        .context("reading cluster metadata")?;
    Ok(md
        .topics()
        .iter()
        .filter(|t| t.error().is_none() && !t.partitions().is_empty())
        .map(|t| (t.name().to_string(), t.partitions().len() as u32))
        .collect())
}

/// Records held per partition of a topic: `(partition, low watermark, high watermark)`.
#[derive(Debug)]
pub struct TopicStats {
    pub topic: String,
    pub partitions: Vec<(i32, i64, i64)>,
}

impl TopicStats {
    pub fn records(&self) -> i64 {
        self.partitions.iter().map(|(_, lo, hi)| hi - lo).sum()
    }
}

/// Watermarks of every topic of the topology that exists on the cluster. Blocking.
pub fn describe(topology: &Topology) -> anyhow::Result<Vec<TopicStats>> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = client_config(&topology.kafka)
        .create()
        .context("creating the Kafka client")?;
    let md = consumer
        .fetch_metadata(None, TIMEOUT)
        .context("reading cluster metadata")?;
    let mut out = Vec::new();
    for name in topology.topics.keys() {
        let Some(t) = md
            .topics()
            .iter()
            .find(|t| t.name() == name && !t.partitions().is_empty())
        else {
            continue;
        };
        let mut parts = Vec::new();
        for p in t.partitions() {
            let (lo, hi) = consumer
                .fetch_watermarks(name, p.id(), TIMEOUT)
                .with_context(|| format!("watermarks of {name}/{}", p.id()))?;
            parts.push((p.id(), lo, hi));
        }
        parts.sort_unstable();
        out.push(TopicStats {
            topic: name.clone(),
            partitions: parts,
        });
    }
    Ok(out)
}
