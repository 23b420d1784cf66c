//! `causeway user`: users of the stub (client certificates, kubeconfigs, revocation).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use causeway_model::ClusterId;
use causeway_tunnel::{enrol, pki::Ca, state, users};

use super::stub_state::StateDirArgs;

/// Options of `causeway user`.
pub type Args = StateDirArgs<Command>;

/// The subcommands of `causeway user`.
#[derive(clap::Subcommand, Debug)]
#[command(
    after_help = "Example:\n  causeway user add alice --group dev --clusters 'idc-*' --stub-url https://stub.example:6443 --out alice.kubeconfig\n  kubectl --kubeconfig alice.kubeconfig --context idc-bj get pods\n  causeway user remove alice"
)]
pub enum Command {
    /// Issue a client certificate and write a kubeconfig with one context per allowed cluster.
    ///
    /// The user and their clusters are recorded in the state directory; the stub
    /// allows them those clusters (read-only with --read-only) on top of its
    /// spec.accessPolicy file. Running it again for the same user updates the record and
    /// issues another certificate.
    Add {
        /// User name (certificate CN; the member clusters see it as the impersonated user).
        name: String,
        /// Group (repeatable).
        #[arg(long = "group", short = 'g')]
        groups: Vec<String>,
        /// Cluster IDs or globs the user may reach, comma-separated ('idc-*', 'aws-sg', '*').
        #[arg(long, value_delimiter = ',', required = true)]
        clusters: Vec<String>,
        /// Allow only get, list and watch (no exec, attach, port-forward or writes).
        #[arg(long)]
        read_only: bool,
        /// Also issue a bearer token (printed once, stored hashed; revoked by `user remove`).
        #[arg(long)]
        token: bool,
        /// Where to write the kubeconfig (mode 0600).
        #[arg(long)]
        out: PathBuf,
        /// The stub's user listener as users reach it.
        #[arg(long, env = "CAUSEWAY_STUB_URL")]
        stub_url: String,
        /// Certificate lifetime.
        #[arg(long, default_value = "720h", value_parser = humantime::parse_duration)]
        ttl: Duration,
    },
    /// List users.
    List,
    /// Remove a user and revoke every certificate issued to them.
    Remove {
        /// User name.
        name: String,
    },
}

/// Runs `causeway user`.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let store = args.open().await?;
    match args.command {
        Command::Add {
            name,
            groups,
            clusters,
            read_only,
            token,
            out,
            stub_url,
            ttl,
        } => {
            if let Some(g) = groups.iter().find(|g| g.starts_with("system:")) {
                eprintln!(
                    "warning: group {g:?} is a Kubernetes system group; the agent impersonates it on every cluster this user may reach"
                );
            }
            users::kubeconfig::check_stub_url(&stub_url)?;
            let new = users::NewUser {
                name: name.clone(),
                groups,
                clusters,
                read_only,
                ttl,
            };
            // One change of the state: the user, and the token if asked.
            let (added, ca_pem, bearer) = store
                .update(|state| {
                    let ca = Ca::load_or_create(state.path())?;
                    let known: Vec<ClusterId> = enrol::known_clusters(state)?
                        .into_iter()
                        .map(|c| c.id)
                        .collect();
                    let added = users::add_user(state, &ca, &new, &known)
                        .with_context(|| format!("adding user {name:?}"))?;
                    let bearer = if token {
                        Some(users::issue_user_token(state, &name)?)
                    } else {
                        None
                    };
                    Ok((added, ca.cert_pem(), bearer))
                })
                .await?;
            let yaml =
                users::kubeconfig_yaml(&stub_url, &ca_pem, &name, &added.cert, &added.contexts)?;
            state::write_atomic(&out, yaml.as_bytes(), 0o600)?;
            let verb = if added.updated { "updated" } else { "added" };
            println!(
                "{verb} user {name} (serial {}), kubeconfig written to {}",
                added.cert.serial,
                out.display()
            );
            if let Some(t) = bearer {
                println!("bearer token (shown once): {}", t.expose());
            }
            if added.contexts.is_empty() {
                println!(
                    "note: no known cluster matches {:?} yet; run `causeway user add` again after `causeway cluster add`",
                    new.clusters
                );
            } else {
                let names: Vec<_> = added.contexts.iter().map(ClusterId::as_str).collect();
                println!("contexts: {}", names.join(", "));
            }
            Ok(())
        }
        Command::List => {
            let list = store.read(|state| Ok(users::list_users(state)?)).await?;
            println!(
                "{:<20} {:<24} {:<24} {:<9} CERTS",
                "USER", "GROUPS", "CLUSTERS", "READONLY"
            );
            for u in list {
                println!(
                    "{:<20} {:<24} {:<24} {:<9} {}",
                    u.name,
                    u.groups.join(","),
                    u.clusters.join(","),
                    u.read_only,
                    u.certs.len()
                );
            }
            Ok(())
        }
        Command::Remove { name } => {
            let serials = store
                .update(|state| Ok(users::remove_user(state, &name)?))
                .await?;
            println!(
                "removed user {name}; revoked {} certificate(s); a running stub refuses them once it reloads (a few seconds)",
                serials.len()
            );
            Ok(())
        }
    }
}
