//! `causeway cluster`: enrol clusters with the stub (one-time join tokens).

use std::time::Duration;

use anyhow::Context;
use causeway_model::ClusterId;
use causeway_tunnel::{enrol, pki::Ca};

use super::stub_state::StateDirArgs;

/// Options of `causeway cluster`.
pub type Args = StateDirArgs<Command>;

/// The subcommands of `causeway cluster`.
#[derive(clap::Subcommand, Debug)]
#[command(
    after_help = "Example:\n  causeway cluster add idc-bj --stub-url https://stub.example:8443\n  # then, inside cluster idc-bj, run the printed `causeway agent …` command"
)]
pub enum Command {
    /// Create a one-time join token for a cluster and print the agent command line.
    ///
    /// The token is shown once; only its SHA-256 is stored. The agent exchanges it for a
    /// certificate bound to this cluster ID, trusting the stub only if the stub's CA
    /// matches the printed --ca-hash.
    Add {
        /// The cluster's ID (a DNS label: a-z, 0-9, '-').
        id: ClusterId,
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
    },
    /// List the clusters added so far.
    List,
}

/// Runs `causeway cluster`.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let store = args.open().await?;
    match args.command {
        Command::Add { id, ttl, stub_url } => {
            let (token, pin) = store
                .update(|state| {
                    let ca = Ca::load_or_create(state.path())?;
                    let token = enrol::create_join_token(state, &id, ttl)
                        .with_context(|| format!("creating a join token for cluster {id}"))?;
                    Ok((token, ca.pin()))
                })
                .await?;
            let expires = humantime::format_rfc3339_seconds(token.expires);
            println!("cluster:  {id}");
            println!("token:    {}", token.token.expose());
            println!("ca-hash:  {pin}");
            println!("expires:  {expires} (works once)");
            println!();
            println!("Run inside cluster {id}:");
            println!(
                "  causeway agent --stub {stub_url} --cluster {id} --token {} --ca-hash {pin}",
                token.token.expose(),
            );
            Ok(())
        }
        Command::Remove { id } => {
            let removed = store
                .update(|state| Ok(enrol::remove_cluster(state, &id)?))
                .await?;
            if !removed {
                anyhow::bail!("no cluster {id} in {}", store.shown());
            }
            println!("removed cluster {id}; its agents are refused from their next session");
            Ok(())
        }
        Command::List => {
            let clusters = store
                .read(|state| Ok(enrol::known_clusters(state)?))
                .await?;
            println!("{:<24} {:<22} AGENT CERTS", "CLUSTER", "ADDED");
            for c in clusters {
                println!("{:<24} {:<22} {}", c.id, c.added_at, c.agent_serials.len());
            }
            Ok(())
        }
    }
}
