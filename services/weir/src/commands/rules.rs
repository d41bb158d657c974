//! `weir rules check|test`: rule files validated, and promtool-format unit tests run
//! through the alerter's engine.
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use weir_alerter::promtool;
use weir_alerter::rules::load_file;

#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    /// Validate rule files: every expression within the streaming subset, every template
    /// parsed; names the file, group, rule and construct of what it rejects
    Check(FilesArgs),
    /// Run rule unit tests in promtool's format (`promtool test rules`)
    Test(FilesArgs),
}

#[derive(Debug, Args)]
pub struct FilesArgs {
    /// Files to read
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

pub fn run(c: RulesCommand) -> anyhow::Result<ExitCode> {
    match c {
        RulesCommand::Check(a) => {
            let mut ok = true;
            for f in &a.files {
                match load_file(f) {
                    Ok(groups) => {
                        let n: usize = groups.iter().map(|g| g.rules.len()).sum();
                        println!("Checking {}\n  SUCCESS: {n} rules found\n", f.display());
                    }
                    Err(e) => {
                        ok = false;
                        println!("Checking {}\n  FAILED:\n{e}\n", f.display());
                    }
                }
            }
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        RulesCommand::Test(a) => {
            let ok = promtool::run_files(&a.files, &mut std::io::stdout());
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}
