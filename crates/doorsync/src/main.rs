//! The `doorsync` command.

mod app;
mod config;
mod demo;

use anyhow::Context;
use clap::{Parser, Subcommand};
use config::Config;
use doorsync_store::{SqlStore, Store};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "doorsync",
    version,
    about = "Keeps door access groups in step with what a workspace's customers have bought",
    long_about = "Keeps door access groups (Brivo Access) in step with what the customers of a coworking \
                  space have bought: bookings, passes, contracts, teams and visitors.\n\n\
                  Settings come from doorsync.toml (or --config), then DOORSYNC_DATABASE_URL, DOORSYNC_SECRET_KEY, \
                  DOORSYNC_LISTEN and DOORSYNC_LOG, then flags."
)]
struct Cli {
    /// A settings file; doorsync.toml in the working directory is read when present.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the REST API and the sync engine until SIGINT or SIGTERM.
    ///
    /// Migrates the database first. The database is an SQLite file by default
    /// (sqlite://doorsync.db, created if missing); set DOORSYNC_DATABASE_URL=postgres://… for
    /// PostgreSQL (several instances may share one). Provider credentials need DOORSYNC_SECRET_KEY
    /// (`doorsync key generate`).
    Serve {
        /// Address to listen on [default: 127.0.0.1:8080, or DOORSYNC_LISTEN]
        #[arg(long, value_name = "ADDR")]
        listen: Option<String>,
    },
    /// Run a whole demo space on this machine: an in-process brivo-sim seeded with a small
    /// coworking space, doorsync on a fresh SQLite file, the engine moving people in and out of
    /// groups as the day goes. Prints the URLs, a sign-in and a line `api token: TOKEN`.
    Demo {
        /// Address of doorsync's API
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
        listen: String,
        /// Address of the brivo-sim emulator
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8700")]
        sim_listen: String,
        /// Keep the demo's data here (resumed when it exists) instead of a fresh temporary directory
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Explain a customer's access now: each group held or due, the bookings, passes, contracts
    /// or teams that give it, from when and until when.
    Explain {
        /// The customer's id (or `visitor:ID` for a visitor)
        subject: String,
    },
    /// Bring the database schema up to date, then exit.
    Migrate,
    /// Manage the key that encrypts provider credentials in the database.
    Key {
        #[command(subcommand)]
        command: KeyCommand,
    },
    /// Manage API tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
}

#[derive(Subcommand)]
enum KeyCommand {
    /// Print a new random secret key (64 hex characters) for DOORSYNC_SECRET_KEY or secret_key in
    /// doorsync.toml. Keep it out of the database's backups: it is what keeps credentials secret.
    Generate,
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create an API token; it is printed once, alone on the last line, and only its hash is kept.
    Create {
        /// A name that says who or what uses the token
        #[arg(long)]
        name: String,
    },
    /// List the tokens: id, name, created, last used (the tokens themselves are not kept).
    List,
    /// Revoke a token by the id `token list` shows; it stops working at once.
    Revoke {
        /// The token's id, e.g. tok_1a2b3c4d5e6f
        id: String,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = Config::load(cli.config.as_deref(), |v| std::env::var(v).ok())?;
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&config.log).context("DOORSYNC_LOG")?,
        )
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Command::Serve { listen } => serve(config, listen).await,
        Command::Demo {
            listen,
            sim_listen,
            dir,
        } => {
            demo::run(
                demo::DemoArgs {
                    listen,
                    sim_listen,
                    dir,
                },
                shutdown_signal(),
            )
            .await
        }
        Command::Explain { subject } => explain(&config, &subject).await,
        Command::Migrate => {
            let store = open(&config).await?;
            store.close().await;
            Ok(())
        }
        Command::Key {
            command: KeyCommand::Generate,
        } => {
            println!("{}", doorsync_store::SecretKey::generate());
            Ok(())
        }
        Command::Token {
            command: TokenCommand::List,
        } => {
            let store = open(&config).await?;
            let tokens = store.tokens().await?;
            store.close().await;
            if tokens.is_empty() {
                println!("no API tokens; `doorsync token create --name NAME` makes one");
            }
            for (t, used) in tokens {
                let used =
                    used.map_or_else(|| "never used".to_owned(), |u| format!("last used {u}"));
                println!("{}  {:<24}  created {}  {used}", t.id, t.name, t.created_at);
            }
            Ok(())
        }
        Command::Token {
            command: TokenCommand::Revoke { id },
        } => {
            let store = open(&config).await?;
            let revoked = store.revoke_token(id.trim()).await?;
            store.close().await;
            anyhow::ensure!(
                revoked,
                "no API token with id {id:?} (see `doorsync token list`)"
            );
            println!("revoked API token {id}");
            Ok(())
        }
        Command::Token {
            command: TokenCommand::Create { name },
        } => {
            let name = name.trim();
            anyhow::ensure!(
                !name.is_empty() && name.len() <= 100,
                "--name must be 1 to 100 characters"
            );
            let store = open(&config).await?;
            let token = new_token()?;
            let info = store
                .create_token(
                    name,
                    &doorsync_web::auth::hash(&token),
                    jiff::Timestamp::now(),
                )
                .await?;
            store.close().await;
            println!(
                "created API token {:?} ({}); it is shown once:",
                info.name, info.id
            );
            println!("{token}");
            Ok(())
        }
    }
}

async fn explain(config: &Config, subject: &str) -> anyhow::Result<()> {
    use doorsync_core::{AccessState, Id, customer_entitlements, explain, visitor_entitlements};
    let store = open(config).await?;
    let now = jiff::Timestamp::now();
    let (who, ents) = match subject.strip_prefix("visitor:") {
        Some(v) => {
            let id = Id::parse(v)?;
            let inputs = store
                .visitor_inputs(&id)
                .await?
                .ok_or_else(|| anyhow::anyhow!("no visitor {v:?}"))?;
            (
                format!("visitor {} ({})", inputs.visitor.name, id),
                visitor_entitlements(&inputs),
            )
        }
        None => {
            let id = Id::parse(subject)?;
            let inputs = store
                .customer_inputs(&id)
                .await?
                .ok_or_else(|| anyhow::anyhow!("no customer {subject:?}"))?;
            (
                format!("customer {} ({})", inputs.customer.name, id),
                customer_entitlements(&inputs),
            )
        }
    };
    store.close().await;
    let groups = explain(&ents, now);
    println!("{who} at {now}:");
    if groups.is_empty() {
        println!("  no access now and none due");
    }
    for g in groups {
        let until = g
            .until
            .map_or_else(|| "open-ended".to_owned(), |u| format!("until {u}"));
        let state = match g.state {
            AccessState::Held => format!("holds group {} since {} {until}", g.group_id, g.from),
            AccessState::Due => format!("is due group {} from {} {until}", g.group_id, g.from),
        };
        println!("  {state}");
        for r in g.reasons {
            let until = r
                .until
                .map_or_else(|| "open-ended".to_owned(), |u| u.to_string());
            println!(
                "    because of {} ({} to {until})",
                doorsync_engine::reconcile::cause_label(&r.cause),
                r.from
            );
        }
    }
    Ok(())
}

async fn open(config: &Config) -> anyhow::Result<SqlStore> {
    let store = SqlStore::connect(&config.database_url)
        .await
        .with_context(|| format!("opening {}", redact(&config.database_url)))?;
    let applied = store.migrate(jiff::Timestamp::now()).await?;
    if !applied.is_empty() {
        tracing::info!(?applied, "database migrated");
    }
    Ok(match &config.secret_key {
        Some(k) => store.with_secret_key(doorsync_store::SecretKey::parse(k)?),
        None => {
            tracing::warn!("no DOORSYNC_SECRET_KEY: provider credentials cannot be stored");
            store
        }
    })
}

/// A URL with its password hidden, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => match url[s + 3..at].find(':') {
            Some(c) => format!("{}:***{}", &url[..s + 3 + c], &url[at..]),
            None => url.to_owned(),
        },
        _ => url.to_owned(),
    }
}

fn new_token() -> anyhow::Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    Ok(format!(
        "ds_{}",
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
    ))
}

async fn serve(config: Config, listen: Option<String>) -> anyhow::Result<()> {
    let addr = listen.unwrap_or(config.listen.clone());
    let store = open(&config).await?;
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .with_context(|| format!("listening on {addr}"))?;
    tracing::info!(addr = %listener.local_addr()?, database = %redact(&config.database_url), "doorsync serving");
    eprintln!("doorsync listening on http://{}", listener.local_addr()?);
    let options = app::Options {
        engine: doorsync_engine::EngineConfig {
            resync_interval: config.resync_interval,
            ..Default::default()
        },
    };
    app::run(store, listener, options, shutdown_signal()).await?;
    tracing::info!("doorsync stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down");
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_are_hidden_in_messages() {
        assert_eq!(
            super::redact("postgres://u:secret@h/db"),
            "postgres://u:***@h/db"
        );
        assert_eq!(
            super::redact("sqlite://doorsync.db"),
            "sqlite://doorsync.db"
        );
    }

    #[test]
    fn tokens_are_long_and_different() {
        let (a, b) = (super::new_token().unwrap(), super::new_token().unwrap());
        assert_ne!(a, b);
        assert_eq!(a.len(), 67);
    }
}
