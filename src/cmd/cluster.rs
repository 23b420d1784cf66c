//! `causeway cluster`: enrol clusters with the stub (one-time join tokens).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use causeway_model::ClusterId;
use causeway_tunnel::{enrol, pki::Ca, state};

/// Options of `causeway cluster`.
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Example:\n  causeway cluster add idc-bj --stub-url https://stub.example:8443\n  # then, inside cluster idc-bj, run the printed `causeway agent …` command"
)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand, Debug)]
enum Command {
    /// Create a one-time join token for a cluster and print the agent command line.
    ///
    /// The token is shown once; only its SHA-256 is stored. The agent exchanges it for a
    /// certificate bound to this cluster ID, trusting the stub only if the stub's CA
    /// matches the printed --ca-hash.
    Add {
        /// The cluster's ID (a DNS label: a-z, 0-9, '-').
        id: ClusterId,
        /// The stub's state directory (CA, users, tokens).
        #[arg(long, env = "CAUSEWAY_STATE_DIR", default_value_os_t = state::default_state_dir())]
        state_dir: PathBuf,
        /// How long the token stays valid.
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
        ttl: Duration,
        /// The stub's agent listener as agents reach it, for the printed command line.
        #[arg(long, default_value = "https://STUB-HOST:8443")]
        stub_url: String,
    },
    /// Remove a cluster: its agents are refused at their next session, its unused
    /// join tokens stop working.
    Remove {
        /// The cluster's ID.
        id: ClusterId,
        /// The stub's state directory.
        #[arg(long, env = "CAUSEWAY_STATE_DIR", default_value_os_t = state::default_state_dir())]
        state_dir: PathBuf,
    },
    /// List the clusters added so far.
    List {
        /// The stub's state directory.
        #[arg(long, env = "CAUSEWAY_STATE_DIR", default_value_os_t = state::default_state_dir())]
        state_dir: PathBuf,
    },
}

/// Runs `causeway cluster`.
pub async fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        Command::Add {
            id,
            state_dir,
            ttl,
            stub_url,
        } => {
            let state = state::StateDir::open(&state_dir)?;
            let ca = Ca::load_or_create(&state_dir)?;
            let token = enrol::create_join_token(&state, &id, ttl)
                .with_context(|| format!("creating a join token for cluster {id}"))?;
            let expires = humantime::format_rfc3339_seconds(token.expires);
            println!("cluster:  {id}");
            println!("token:    {}", token.token.expose());
            println!("ca-hash:  {}", ca.pin());
            println!("expires:  {expires} (works once)");
            println!();
            println!("Run inside cluster {id}:");
            println!(
                "  causeway agent --stub {stub_url} --cluster {id} --token {} --ca-hash {}",
                token.token.expose(),
                ca.pin()
            );
            Ok(())
        }
        Command::Remove { id, state_dir } => {
            let state = state::StateDir::open(&state_dir)?;
            if !enrol::remove_cluster(&state, &id)? {
                anyhow::bail!("no cluster {id} in {}", state_dir.display());
            }
            println!("removed cluster {id}; its agents are refused from their next session");
            Ok(())
        }
        Command::List { state_dir } => {
            let state = state::StateDir::open(&state_dir)?;
            let clusters = enrol::known_clusters(&state)?;
            println!("{:<24} {:<22} AGENT CERTS", "CLUSTER", "ADDED");
            for c in clusters {
                println!("{:<24} {:<22} {}", c.id, c.added_at, c.agent_serials.len());
            }
            Ok(())
        }
    }
}
