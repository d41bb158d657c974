//! `weir keys`: make and hash gateway API keys. The topology and the keys file hold
//! only hashes, so a leaked topology leaks no key.
use std::io::{BufRead, IsTerminal};
use std::process::ExitCode;

use clap::Subcommand;
use rand::RngCore;
use weir_gateway::auth::hash_hex;

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Print the SHA-256 of a key (`sha256:<hex>`) for `gateway.auth.keys` or the keys
    /// file. The key is read from stdin (one line), so it stays out of shell history;
    /// or given as the argument.
    Hash {
        /// The key; read from stdin when left out.
        key: Option<String>,
    },
    /// Make a new random key (32 bytes, hex) and print it and its keys-file entry.
    New {
        /// The tenant the key is for.
        #[arg(long)]
        tenant: String,
    },
}

pub fn run(c: KeysCommand) -> anyhow::Result<ExitCode> {
    match c {
        KeysCommand::Hash { key } => {
            let key = match key {
                Some(k) => k,
                None => {
                    if std::io::stdin().is_terminal() {
                        eprintln!("key (one line, then Enter):");
                    }
                    let mut line = String::new();
                    std::io::stdin().lock().read_line(&mut line)?;
                    line
                }
            };
            let key = key.trim();
            if key.len() < 16 {
                anyhow::bail!("a key must be at least 16 characters (got {})", key.len());
            }
            println!("sha256:{}", hash_hex(key));
        }
        KeysCommand::New { tenant } => {
            let mut bytes = [0u8; 32];
            rand::rng().fill_bytes(&mut bytes);
            let key: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            println!("key: {key}");
            println!("# keys file entry (the key itself is not stored):");
            println!("  - tenant: {tenant}\n    sha256: {}", hash_hex(&key));
        }
    }
    Ok(ExitCode::SUCCESS)
}
