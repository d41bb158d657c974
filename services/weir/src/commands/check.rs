use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use weir_runtime::Topology;

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The topology file to validate.
    #[arg(short = 'f', long = "topology")]
    file: PathBuf,
}

pub fn run(a: CheckArgs) -> anyhow::Result<ExitCode> {
    match Topology::from_file(&a.file) {
        Ok(t) => {
            if t.scrape.config_file.is_some() || t.scrape.prometheus.is_some() {
                match weir_scrape::service::check(&t) {
                    Ok(c) => println!("scrape: ok ({} jobs)", c.jobs.len()),
                    Err(e) => {
                        eprintln!("error: {e:#}");
                        return Ok(ExitCode::from(2));
                    }
                }
            }
            println!(
                "{}: ok ({} topics, {} consumer groups, {} sinks)",
                a.file.display(),
                t.topics.len(),
                t.consumer_groups.len(),
                t.sinks.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("error: {e}");
            Ok(ExitCode::from(2))
        }
    }
}
