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
            // A relative scrape file is found from the working directory `weir scrape`
            // runs in, which need not be this one: said, not failed, when it is not here.
            let elsewhere = t
                .scrape
                .config_file
                .as_ref()
                .filter(|f| f.is_relative() && !f.exists());
            if let Some(f) = elsewhere {
                println!(
                    "scrape: {} is not found from here (relative to the working directory of weir scrape); not checked",
                    f.display()
                );
            } else if t.scrape.config_file.is_some() || t.scrape.prometheus.is_some() {
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
