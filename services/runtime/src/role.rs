//! What every consumer role wires the same way: its consumer group and the group's sink
//! resolved from the topology, the topics it names checked against the declared ones,
//! and its ops endpoints (`/metrics`, `/healthz`, `/readyz`) served from start to
//! shutdown. A role's `run` then reads as what is particular to it.
use std::net::SocketAddr;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::config::{ConsumerGroupSpec, Role, SinkSpec, TopicSpec};
use crate::ops::{self, Health};
use crate::Topology;

/// A role's place in the topology: `section` is its section's name in errors
/// (`rollup`, `alerter`, `tsdb_writer`).
pub struct RoleSpec<'t> {
    pub topology: &'t Topology,
    pub section: &'static str,
    pub group: &'t str,
    pub group_spec: &'t ConsumerGroupSpec,
    pub sink: Option<&'t SinkSpec>,
}

impl<'t> RoleSpec<'t> {
    pub fn resolve(
        topology: &'t Topology,
        section: &'static str,
        group: &'t str,
        role: Role,
    ) -> anyhow::Result<Self> {
        let (group_spec, sink) = topology
            .group_of_role(group, role)
            .map_err(|e| anyhow::anyhow!("{section}.group: {e}"))?;
        Ok(Self {
            topology,
            section,
            group,
            group_spec,
            sink,
        })
    }

    /// The one topic the group reads.
    pub fn single_topic(&self) -> anyhow::Result<&'t str> {
        match self.group_spec.topics.as_slice() {
            [t] => Ok(t),
            _ => anyhow::bail!("consumer group {} must read exactly one topic", self.group),
        }
    }

    /// A topic the role's section names under `field`, which must be declared.
    pub fn declared(&self, field: &str, topic: &str) -> anyhow::Result<&'t TopicSpec> {
        self.topology.topic(topic).ok_or_else(|| {
            anyhow::anyhow!(
                "{}.{field}: topic {topic:?} is not declared under topics",
                self.section
            )
        })
    }
}

/// The ops endpoints of a running role, and its readiness.
pub struct RoleOps {
    pub health: Health,
    pub addr: SocketAddr,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl RoleOps {
    /// Binds `listen` and serves the ops routes; the role starts not ready (`why`).
    pub async fn serve(listen: SocketAddr, why: &str) -> anyhow::Result<Self> {
        let health = Health::new();
        health.set_not_ready(why);
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        let addr = listener.local_addr()?;
        let stop = CancellationToken::new();
        let task = ops::spawn(listener, health.clone(), stop.clone());
        Ok(Self {
            health,
            addr,
            stop,
            task,
        })
    }

    /// Stops serving, after the role drained.
    pub async fn close(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}
