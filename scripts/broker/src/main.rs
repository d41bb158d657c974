//! `tansu broker --listener-url URL --advertised-listener-url URL --storage-engine URL
//! [--authentication]`: the arguments of tansu's own CLI that the local stack uses, so the
//! same command line starts either binary. Options are parsed by hand: five flags do not
//! need clap. `--authentication` makes every client authenticate with SASL (SCRAM
//! credentials are created with the AlterUserScramCredentials API); the Kafka TLS/SASL
//! tests start a second broker with it.
use std::process::ExitCode;

use tansu_broker::broker::Broker;
use tansu_broker::coordinator::group::administrator::Controller;
use tansu_broker::{otel, TracingFormat, NODE_ID};
use tansu_storage::StorageContainer;
use url::Url;

struct Args {
    listener: Url,
    advertised: Url,
    storage: Url,
    authentication: bool,
}

fn parse() -> Result<Args, String> {
    let mut listener = "tcp://127.0.0.1:9092".to_string();
    let mut advertised = None;
    let mut storage = "sqlite://tansu.db".to_string();
    let mut authentication = false;
    let mut it = std::env::args().skip(1).peekable();
    if it.peek().map(String::as_str) == Some("broker") {
        it.next();
    }
    while let Some(flag) = it.next() {
        if flag == "--authentication" {
            authentication = true;
            continue;
        }
        let (name, inline) = match flag.split_once('=') {
            Some((n, v)) => (n.to_string(), Some(v.to_string())),
            None => (flag.clone(), None),
        };
        let value = inline
            .or_else(|| it.next())
            .ok_or_else(|| format!("{name} needs a value"))?;
        match name.as_str() {
            "--listener-url" => listener = value,
            "--advertised-listener-url" => advertised = Some(value),
            "--storage-engine" => storage = value,
            other => return Err(format!("unknown option {other} (this broker takes --listener-url, --advertised-listener-url, --storage-engine, --authentication)")),
        }
    }
    let url = |what: &str, s: &str| Url::parse(s).map_err(|e| format!("{what} {s}: {e}"));
    Ok(Args {
        advertised: url(
            "--advertised-listener-url",
            advertised.as_deref().unwrap_or(&listener),
        )?,
        listener: url("--listener-url", &listener)?,
        storage: url("--storage-engine", &storage)?,
        authentication,
    })
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let _guard = match otel::init(TracingFormat::Text) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("error: tracing: {e:?}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "tansu broker {} listening on: {} (advertised: {}) storage: {} authentication: {}",
        env!("CARGO_PKG_VERSION"),
        args.listener,
        args.advertised,
        args.storage,
        if args.authentication { "SASL" } else { "none" }
    );
    let broker = Broker::<Controller<StorageContainer>, StorageContainer>::builder()
        .node_id(NODE_ID)
        .cluster_id("tansu_cluster")
        .incarnation_id(uuid::Uuid::now_v7())
        .advertised_listener(args.advertised)
        .otlp_endpoint_url(None)
        .schema_registry(None)
        .storage(args.storage)
        .listener(args.listener)
        .authentication(args.authentication)
        .tls_server_config(None)
        .silent(false);
    let started = tokio::time::Instant::now();
    match broker.build().await {
        Ok(b) => match b.main(started).await {
            Ok(code) => {
                println!("tansu broker stopped: {code:?}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e:?}");
                ExitCode::FAILURE
            }
        },
        Err(e) => {
            eprintln!("error: starting the broker: {e:?}");
            ExitCode::FAILURE
        }
    }
}
