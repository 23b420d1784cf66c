//! Logging set-up shared by every subcommand: `tracing` to stderr, text or JSON.

use std::io::IsTerminal as _;

use clap::{Args, ValueEnum};
use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log pipelines.
    Json,
}

/// Global logging options.
#[derive(Args, Debug)]
pub struct LogArgs {
    /// Log format.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "CAUSEWAY_LOG_FORMAT"
    )]
    pub log_format: LogFormat,
    /// Log filter, e.g. `info`, `debug`, `causeway_dns=debug,info` (RUST_LOG syntax).
    #[arg(long, global = true, default_value = "info", env = "CAUSEWAY_LOG")]
    pub log: String,
}

/// Installs the global subscriber.
pub fn init(args: &LogArgs) -> anyhow::Result<()> {
    let filter = EnvFilter::try_new(&args.log)
        .map_err(|e| anyhow::anyhow!("--log {:?} is not a valid filter: {e}", args.log))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match args.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
    Ok(())
}
