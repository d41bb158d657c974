use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// `weir alerter` settings. What it reads comes from its consumer group; the group's
/// sink is the Alertmanager notified.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlerterConfig {
    /// A key of `consumer_groups` with `role: alerter`: stage one, which reads
    /// metrics.raw and evaluates each series.
    pub group: String,
    /// The consumer group of stage two, which reads `partials_topic`, merges and steps
    /// the alerts (a group of its own: it reads another topic).
    pub merge_group: String,
    /// `/metrics`, `/healthz`, `/readyz`.
    pub listen: SocketAddr,
    /// Timely workers of stage one in this process; each is a member of `group`.
    pub workers: usize,
    /// Prometheus alerting-rule files; relative paths from the working directory.
    pub rule_files: Vec<PathBuf>,
    /// Rule files of one tenant each (`acme: [rules/acme.yml]`). Every selector of
    /// their rules gets the matcher `<tenant_label>="<tenant>"` and every alert the
    /// label, so a tenant's rules see its series only, whatever they select.
    pub tenant_rule_files: BTreeMap<String, Vec<PathBuf>>,
    /// The label that carries the tenant (the gateway's `auth.tenant_label`).
    pub tenant_label: String,
    /// The step of groups that name no `interval` (Prometheus' evaluation_interval).
    #[serde(with = "humantime_serde")]
    pub evaluation_interval: Duration,
    /// How far behind the newest sample of a partition a sample may arrive and still
    /// count for the step it falls before.
    #[serde(with = "humantime_serde")]
    pub out_of_orderness: Duration,
    /// A partition without records this long stops holding steps back.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Samples dated later than the consumer's clock plus this are cut from their record
    /// before they reach the windows (they would move the watermark into the future) and
    /// go to the dead-letter topic; so do samples before the Unix epoch.
    #[serde(with = "humantime_serde")]
    pub max_sample_future: Duration,
    /// Whether each series is checked against the partition its key hashes to (a series
    /// elsewhere is dead-lettered, kind `wrong_partition`). Turn off only to replay a log
    /// written before partitions were added to its topic.
    pub check_partition: bool,
    /// A partition's first step is no earlier than this before its watermark: a first
    /// sample from long ago does not make the alerter evaluate every step since.
    #[serde(with = "humantime_serde")]
    pub max_catch_up: Duration,
    /// Added to every alert, and `$externalLabels` in templates.
    pub external_labels: BTreeMap<String, String>,
    pub partials_topic: String,
    pub state_topic: String,
    pub events_topic: String,
    pub dead_letter_topic: String,
    /// How often firing alerts are re-sent to Alertmanager (Prometheus'
    /// `--rules.alert.resend-delay`).
    #[serde(with = "humantime_serde")]
    pub resend_delay: Duration,
    /// Steps stage two holds while it waits for a lagging source partition's partials;
    /// past it the oldest is evaluated without them, counted in
    /// `weir_alerter_incomplete_steps_total` and logged with the partitions it lacked.
    pub max_pending_steps: usize,
    /// One Alertmanager request's timeout.
    #[serde(with = "humantime_serde")]
    pub alertmanager_timeout: Duration,
    /// Prefix of the `generatorURL` sent with alerts; empty sends none.
    pub external_url: String,
    #[serde(with = "humantime_serde")]
    pub retry_max: Duration,
}

impl Default for AlerterConfig {
    fn default() -> Self {
        Self {
            group: "alerting-engine".into(),
            merge_group: "alerting-engine-merge".into(),
            listen: SocketAddr::from(([127, 0, 0, 1], 9303)),
            workers: 2,
            rule_files: Vec::new(),
            tenant_rule_files: BTreeMap::new(),
            tenant_label: "tenant".into(),
            evaluation_interval: Duration::from_secs(60),
            out_of_orderness: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            max_sample_future: Duration::from_secs(600),
            check_partition: true,
            max_catch_up: Duration::from_secs(3600),
            external_labels: BTreeMap::new(),
            partials_topic: "alerts.partials".into(),
            state_topic: "alerts.state".into(),
            events_topic: "alerts.triggered".into(),
            dead_letter_topic: "metrics.dlq".into(),
            resend_delay: Duration::from_secs(60),
            max_pending_steps: 1_000,
            alertmanager_timeout: Duration::from_secs(10),
            external_url: String::new(),
            retry_max: Duration::from_secs(10),
        }
    }
}

impl AlerterConfig {
    pub(super) fn validate(&self) -> Result<(), (String, String)> {
        if self.workers == 0 {
            return Err(("workers".into(), "must be at least 1".into()));
        }
        if !self.tenant_rule_files.is_empty() && self.tenant_label.is_empty() {
            return Err(("tenant_label".into(), "must not be empty".into()));
        }
        for (t, files) in &self.tenant_rule_files {
            if t.is_empty() {
                return Err((
                    "tenant_rule_files".into(),
                    "a tenant must not be empty".into(),
                ));
            }
            if files.is_empty() {
                return Err((
                    format!("tenant_rule_files.{t}"),
                    "names no rule file".into(),
                ));
            }
        }
        if self.evaluation_interval.as_millis() == 0 {
            return Err(("evaluation_interval".into(), "must be positive".into()));
        }
        if self.resend_delay.as_millis() == 0 {
            return Err(("resend_delay".into(), "must be positive".into()));
        }
        if self.group == self.merge_group {
            return Err((
                "merge_group".into(),
                "must differ from group (the stages read different topics)".into(),
            ));
        }
        Ok(())
    }
}
