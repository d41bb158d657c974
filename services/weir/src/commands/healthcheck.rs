//! `weir healthcheck`: exits 0 when a service's `/readyz` answers 2xx, 1 otherwise. The
//! image's HEALTHCHECK and compose's `depends_on: condition: service_healthy` run it, so
//! a container is healthy only while the role can do its work (Kafka reachable, sinks
//! answering), not merely while the process exists. It lives in the binary because the
//! image has no curl or wget (a smaller image, nothing else to patch).
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, ValueEnum};
use weir_runtime::Topology;

use crate::TopologyArgs;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum HealthRole {
    Gateway,
    TsdbWriter,
    Rollup,
    Alerter,
}

#[derive(Debug, Args)]
pub struct HealthcheckArgs {
    /// The URL to check, e.g. http://127.0.0.1:8080/readyz. When absent, the `/readyz`
    /// of --role at its listen address in the topology; with no --role either, of the
    /// `weir <role>` process running beside this one (as in a container), at the
    /// address its own `--listen` / `--topology` arguments give.
    url: Option<String>,
    /// The role whose listen address (from the topology) is checked when no URL is given.
    #[arg(long, env = "WEIR_ROLE", value_enum)]
    role: Option<HealthRole>,
    /// How long to wait for the answer.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    #[command(flatten)]
    topology: TopologyArgs,
}

/// Where `role` listens in `t` (the topology section its `--listen` overrides).
fn listen_of(t: &Topology, role: HealthRole) -> SocketAddr {
    match role {
        HealthRole::Gateway => t.gateway.listen,
        HealthRole::TsdbWriter => t.tsdb_writer.listen,
        HealthRole::Rollup => t.rollup.listen,
        HealthRole::Alerter => t.alerter.listen,
    }
}

/// The `/readyz` URL of a service listening at `listen`. A wildcard listen address (0.0.0.0, ::) is asked
/// on loopback: the check runs beside the service, in its network namespace.
pub fn ready_url(listen: SocketAddr) -> String {
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}/readyz", SocketAddr::new(ip, listen.port()))
}

/// A `weir <role>` command line: the role, and its `--listen` and `--topology` arguments.
#[derive(Debug, PartialEq)]
struct RunningRole {
    role: HealthRole,
    listen: Option<SocketAddr>,
    topology: Option<std::path::PathBuf>,
}

fn parse_role_cmdline(args: &[String]) -> Option<RunningRole> {
    let (program, rest) = args.split_first()?;
    if program.rsplit('/').next() != Some("weir") {
        return None;
    }
    let mut found: Option<RunningRole> = None;
    let mut it = rest.iter();
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (arg.as_str(), None),
        };
        let mut value = || inline.clone().or_else(|| it.next().cloned());
        match (flag, found.as_mut()) {
            ("--listen", Some(r)) => r.listen = value().and_then(|v| v.parse().ok()),
            ("-f" | "--topology", Some(r)) => r.topology = value().map(Into::into),
            ("--listen" | "-f" | "--topology" | "--log-format", None) => {
                value();
            }
            (word, None) if !word.starts_with('-') => {
                let role = HealthRole::from_str(word, false).ok()?;
                found = Some(RunningRole {
                    role,
                    listen: None,
                    topology: None,
                });
            }
            _ => {}
        }
    }
    found
}

/// The first `weir <role>` process this one can see (in a container: the service).
fn running_role() -> Option<RunningRole> {
    let mut pids: Vec<u32> = std::fs::read_dir("/proc")
        .ok()?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    pids.sort_unstable();
    pids.into_iter().find_map(|pid| {
        let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let args: Vec<String> = raw
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        parse_role_cmdline(&args)
    })
}

pub async fn run(a: HealthcheckArgs) -> anyhow::Result<ExitCode> {
    let url = match (&a.url, a.role) {
        (Some(u), _) => u.clone(),
        (None, Some(role)) => ready_url(listen_of(&a.topology.load()?, role)),
        (None, None) => {
            let Some(r) = running_role() else {
                anyhow::bail!(
                    "no `weir <role>` process to check here: give the URL, or --role (or WEIR_ROLE) to check that role's /readyz from the topology"
                );
            };
            // The process's own --listen wins over its topology, as it does for the role.
            let listen = match r.listen {
                Some(l) => l,
                None => {
                    let mut topo = a.topology.clone();
                    if r.topology.is_some() {
                        topo.file = r.topology;
                    }
                    listen_of(&topo.load()?, r.role)
                }
            };
            ready_url(listen)
        }
    };
    let http = reqwest::Client::builder()
        .timeout(a.timeout)
        .build()
        .context("building the HTTP client")?;
    match http.get(&url).send().await {
        Ok(r) => {
            let status = r.status();
            // The body says why a service is not ready (which dependency); print it so
            // `podman healthcheck run` and `docker inspect` show the reason.
            let body = r.text().await.unwrap_or_default();
            let body = body.trim();
            if status.is_success() {
                println!("{url}: {status} {body}");
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!("{url}: {status} {body}");
                Ok(ExitCode::FAILURE)
            }
        }
        Err(e) => {
            eprintln!("{url}: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split(' ').map(String::from).collect()
    }

    #[test]
    fn the_role_and_its_addresses_are_read_from_its_command_line() {
        assert_eq!(
            parse_role_cmdline(&args("/usr/local/bin/weir --log-format json rollup -f /etc/weir/t.yaml --listen 0.0.0.0:9402")),
            Some(RunningRole {
                role: HealthRole::Rollup,
                listen: Some("0.0.0.0:9402".parse().unwrap()),
                topology: Some("/etc/weir/t.yaml".into()),
            })
        );
        assert_eq!(
            parse_role_cmdline(&args("weir tsdb-writer --topology=/t.yaml")),
            Some(RunningRole {
                role: HealthRole::TsdbWriter,
                listen: None,
                topology: Some("/t.yaml".into()),
            })
        );
        // Not a role: another subcommand, or another program.
        assert_eq!(
            parse_role_cmdline(&args("/usr/local/bin/weir healthcheck")),
            None
        );
        assert_eq!(
            parse_role_cmdline(&args("/usr/local/bin/weir topics apply")),
            None
        );
        assert_eq!(
            parse_role_cmdline(&args("/usr/bin/catatonit -- weir gateway")),
            None
        );
    }

    #[test]
    fn wildcard_listen_addresses_are_checked_on_loopback() {
        let mut t = Topology::local();
        assert_eq!(
            ready_url(listen_of(&t, HealthRole::Gateway)),
            "http://127.0.0.1:8080/readyz"
        );
        t.rollup.listen = "0.0.0.0:9402".parse().unwrap();
        assert_eq!(
            ready_url(listen_of(&t, HealthRole::Rollup)),
            "http://127.0.0.1:9402/readyz"
        );
        t.alerter.listen = "[::]:9403".parse().unwrap();
        assert_eq!(
            ready_url(listen_of(&t, HealthRole::Alerter)),
            "http://[::1]:9403/readyz"
        );
        t.tsdb_writer.listen = "10.1.2.3:9301".parse().unwrap();
        assert_eq!(
            ready_url(listen_of(&t, HealthRole::TsdbWriter)),
            "http://10.1.2.3:9301/readyz"
        );
    }
}
