use std::process::ExitCode;

use clap::Args;

#[derive(Debug, Args)]
pub struct SchemaArgs {
    /// Print only the single-object header (hex) instead of the schema.
    #[arg(long)]
    header: bool,
}

pub fn run(a: SchemaArgs) -> anyhow::Result<ExitCode> {
    let v = weir_contract::avro::current();
    if a.header {
        let h = weir_contract::avro::single_object_header(v.fingerprint);
        println!(
            "{}",
            h.iter().map(|b| format!("{b:02x}")).collect::<String>()
        );
    } else {
        println!(
            "# {} — CRC-64-AVRO fingerprint {:016x}",
            v.name, v.fingerprint
        );
        print!("{}", v.source);
    }
    Ok(ExitCode::SUCCESS)
}
