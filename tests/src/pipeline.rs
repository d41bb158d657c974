//! A TSDB-writer pipeline of a test's own: a topic, a dead-letter topic, a writer group
//! and a gateway on an ephemeral port, writing to a VictoriaMetrics (`Vm`) of the test.
use std::time::Duration;

use crate::{bootstrap, unique, Service, TestTopology, Vm};

/// One pipeline's topology and names; `run` is a label value unique to it.
pub struct Pipeline {
    pub topo: TestTopology,
    pub raw: String,
    pub dlq: String,
    pub group: String,
    pub run: String,
}

impl Pipeline {
    pub fn new(vm: &Vm, partitions: u32) -> Self {
        Self::with_sink(&vm.url("/api/v1/write"), partitions)
    }

    pub fn with_sink(sink_url: &str, partitions: u32) -> Self {
        let p = Self::on_kafka(&bootstrap(), sink_url, partitions);
        p.topo.apply();
        p
    }

    /// A pipeline on the given brokers; its topics are not created.
    pub fn on_kafka(bootstrap: &str, sink_url: &str, partitions: u32) -> Self {
        Self::with_sinks(
            bootstrap,
            partitions,
            &format!("vm: {{type: prometheus_remote_write, url: '{sink_url}'}}"),
            "max_batch_samples: 500, max_buffered_samples: 1000, retry_max: 2s",
            "",
        )
    }

    /// A pipeline into `vm` whose gateway also gets `gateway` (YAML flow entries); its
    /// topics are created.
    pub fn with_gateway(vm: &Vm, partitions: u32, gateway: &str) -> Self {
        let p = Self::with_sinks(
            &bootstrap(),
            partitions,
            &format!(
                "vm: {{type: prometheus_remote_write, url: '{}'}}",
                vm.url("/api/v1/write")
            ),
            "max_batch_samples: 500, max_buffered_samples: 1000, retry_max: 2s",
            gateway,
        );
        p.topo.apply();
        p
    }

    /// A pipeline whose writer writes to the sink `vm` of `sinks` (YAML, one sink a
    /// line at two spaces), with `writer` and `gateway` (YAML flow entries, each empty
    /// or ending in no comma) added to their settings.
    pub fn with_sinks(
        bootstrap: &str,
        partitions: u32,
        sinks: &str,
        writer: &str,
        gateway: &str,
    ) -> Self {
        let gateway = if gateway.is_empty() {
            String::new()
        } else {
            format!(", {gateway}")
        };
        let raw = unique("test.raw");
        let dlq = unique("test.dlq");
        let group = unique("test.tsdb-writers");
        let run = unique("run").replace('.', "_");
        let yaml = format!(
            "version: 1\nkafka: {{bootstrap_servers: '{bootstrap}', consumer: {{session.timeout.ms: '4000', heartbeat.interval.ms: '1000', max.poll.interval.ms: '20000'}}}}\ntopics:\n  {raw}: {{partitions: {partitions}, compression: lz4}}\n  {dlq}: {{partitions: 1}}\nconsumer_groups:\n  {group}: {{role: tsdb-writer, topics: [{raw}], sink: vm}}\nsinks:\n  {sinks}\ngateway: {{listen: '127.0.0.1:0', topic: {raw}{gateway}}}\ntsdb_writer: {{group: {group}, listen: '127.0.0.1:0', dead_letter_topic: {dlq}, max_batch_delay: 200ms, {writer}}}\n",
        );
        let topo = TestTopology::from_yaml(&yaml, raw.clone(), partitions);
        Self {
            topo,
            raw,
            dlq,
            group,
            run,
        }
    }

    /// A pipeline into `vm` whose topology also runs `weir scrape` on the Prometheus
    /// configuration `config_file`, into the pipeline's raw topic: scrape replicas share
    /// the consumer group `<group>.scrape` on a shards topic of `shards` partitions, and
    /// `scrape` (YAML flow entries, empty or ending in no comma) is added to the section.
    /// Its topics are created.
    pub fn with_scrape(
        vm: &Vm,
        partitions: u32,
        config_file: &std::path::Path,
        shards: u32,
        scrape: &str,
    ) -> Self {
        let p = Self::scrape_on_kafka(
            &bootstrap(),
            &vm.url("/api/v1/write"),
            partitions,
            config_file,
            shards,
            scrape,
        );
        p.topo.apply();
        p
    }

    /// [`Pipeline::with_scrape`] on the given brokers; its topics (and the shards topic,
    /// [`Pipeline::shards_topic`]) are not created.
    pub fn scrape_on_kafka(
        bootstrap: &str,
        sink_url: &str,
        partitions: u32,
        config_file: &std::path::Path,
        shards: u32,
        scrape: &str,
    ) -> Self {
        let mut p = Self::with_sinks(
            bootstrap,
            partitions,
            &format!("vm: {{type: prometheus_remote_write, url: '{sink_url}'}}"),
            "max_batch_samples: 5000, max_buffered_samples: 100000, retry_max: 2s",
            "",
        );
        let shards_topic = p.shards_topic();
        let group = format!("{}.scrape", p.group);
        let extra = if scrape.is_empty() {
            String::new()
        } else {
            format!(", {scrape}")
        };
        let yaml = std::fs::read_to_string(&p.topo.path).unwrap();
        let yaml = yaml.replacen(
            &format!("  {}: {{partitions: 1}}\n", p.dlq),
            &format!("  {}: {{partitions: 1}}\n  {shards_topic}: {{partitions: {shards}}}\n", p.dlq),
            1,
        ) + &format!(
            "scrape: {{listen: '127.0.0.1:0', topic: {}, config_file: '{}', sharding: {{group: {group}, topic: {shards_topic}, session_timeout: 6s}}{extra}}}\n",
            p.raw,
            config_file.display()
        );
        p.topo = TestTopology::from_yaml(&yaml, p.raw.clone(), partitions);
        p
    }

    /// The topic whose partitions are the scrape replicas' shards.
    pub fn shards_topic(&self) -> String {
        format!("{}.shards", self.raw)
    }

    /// Starts a `weir scrape` replica of this pipeline and waits until it is ready
    /// (Kafka reached, shards assigned).
    pub fn scrape(&self) -> Service {
        let s = self.spawn_scrape();
        s.wait_ready(Duration::from_secs(60));
        s
    }

    /// Starts a `weir scrape` replica and waits only until it listens.
    pub fn spawn_scrape(&self) -> Service {
        Service::spawn(
            &["scrape", "-f", self.topo.path.to_str().unwrap()],
            "scrape ops and /api/v1/targets listening",
        )
    }

    pub fn writer(&self) -> Service {
        let s = Service::spawn(
            &["tsdb-writer", "-f", self.topo.path.to_str().unwrap()],
            "tsdb-writer listening",
        );
        s.wait_ready(Duration::from_secs(30));
        s
    }

    pub fn selector(&self) -> String {
        format!("{{run=\"{}\"}}", self.run)
    }
}
