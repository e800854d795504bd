//! The `doorsync` command.

mod app;
mod config;
mod demo;
mod descriptors;
mod import;

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
    /// Ask a running `doorsync serve` whether it is ready (GET /readyz): exit 0 when it is.
    /// For container health checks, where no HTTP client is installed.
    Health {
        /// The address it listens on [default: DOORSYNC_LISTEN; 0.0.0.0 asks 127.0.0.1]
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
        /// The customer's id, or `visitor:ID` for a visitor (`customer:ID` for a customer whose
        /// own id starts with `visitor:` or `customer:`)
        subject: String,
    },
    /// Load records from an NDJSON file, one batch operation per line
    /// (`{"op": "put", "collection": "customers", "id": "c1", "body": {...}}`), as
    /// `POST /api/v1/batch` applies them. A bad line is reported with its number and skipped;
    /// the exit status is 1 if any line failed.
    Import {
        /// The NDJSON file
        file: PathBuf,
        /// Stop at the first bad line (the lines before it stay applied)
        #[arg(long)]
        strict: bool,
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
    /// Manage the dashboard's administrators.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Create an administrator with a generated password, printed once on the last line.
    Create {
        /// The administrator's e-mail address, which they sign in with
        #[arg(long)]
        email: String,
    },
    /// List the administrators.
    List,
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

fn main() -> std::process::ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One line a person reads; the backtrace only when asked for with RUST_BACKTRACE.
            let asked = std::env::var_os("RUST_BACKTRACE").is_some_and(|v| v != "0");
            if asked {
                eprintln!("error: {e:?}");
            } else {
                eprintln!("error: {e:#}");
            }
            std::process::ExitCode::FAILURE
        }
    }
}

fn init_logs(config: &Config) -> anyhow::Result<()> {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log)
        .map_err(|e| anyhow::anyhow!("log: {:?} is not a log filter ({e})", config.log))?;
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match config.log_format {
        config::LogFormat::Json => logs.json().with_ansi(false).init(),
        // Colour codes only for a person at a terminal, not in a file or a journal.
        config::LogFormat::Text => logs.with_ansi(std::io::stderr().is_terminal()).init(),
    }
    Ok(())
}

async fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = Config::load(cli.config.as_deref(), |v| std::env::var(v).ok())?;
    init_logs(&config)?;
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
                    limits: connection_limits(&config),
                },
                shutdown_signal(),
            )
            .await
        }
        Command::Explain { subject } => explain(&config, &subject).await,
        Command::Import { file, strict } => {
            let store = open(&config, false).await?;
            let result = import::run(&store, &file, strict).await;
            store.optimize().await?;
            store.close().await;
            let summary = result?;
            println!(
                "{} created, {} replaced, {} deleted, {} failed",
                summary.created, summary.replaced, summary.deleted, summary.failed
            );
            anyhow::ensure!(summary.failed == 0, "{} lines failed", summary.failed);
            Ok(())
        }
        Command::Health { listen } => health(&listen.unwrap_or(config.listen.clone())).await,
        Command::Migrate => {
            let store = open(&config, false).await?;
            store.close().await;
            Ok(())
        }
        Command::Key {
            command: KeyCommand::Generate,
        } => {
            println!("{}", doorsync_store::SecretKey::generate());
            Ok(())
        }
        Command::Admin {
            command: AdminCommand::Create { email },
        } => {
            let email = email.trim().to_lowercase();
            anyhow::ensure!(
                doorsync_core::Email::parse(&email).is_ok(),
                "--email must be an e-mail address, such as ops@example.com"
            );
            let store = open(&config, false).await?;
            let password = doorsync_web::admin::new_password();
            let hash = doorsync_web::admin::hash_password(&password);
            let id = format!("adm_{}", &new_token()?[3..19]);
            let created = store
                .create_admin(&id, &email, &hash, jiff::Timestamp::now())
                .await?;
            store.close().await;
            anyhow::ensure!(created.is_some(), "{email} is an administrator already");
            println!("created administrator {email}; the password is shown once:");
            println!("{password}");
            Ok(())
        }
        Command::Admin {
            command: AdminCommand::List,
        } => {
            let store = open(&config, false).await?;
            let admins = store.admins().await?;
            store.close().await;
            if admins.is_empty() {
                println!(
                    "no administrators; `doorsync admin create --email E` makes one, or the dashboard's first page with the setup code `doorsync serve` writes to its log"
                );
            }
            for a in admins {
                println!("{}  {}  since {}", a.id, a.email, a.created_at);
            }
            Ok(())
        }
        Command::Token {
            command: TokenCommand::List,
        } => {
            let store = open(&config, false).await?;
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
            let store = open(&config, false).await?;
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
            let store = open(&config, false).await?;
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

/// `visitor:ID` names a visitor and `customer:ID` a customer; anything else is a customer's id,
/// so that every id stays reachable whatever it starts with.
fn parse_subject(arg: &str) -> anyhow::Result<doorsync_core::Subject> {
    use doorsync_core::{Id, Subject};
    Ok(
        match (arg.strip_prefix("visitor:"), arg.strip_prefix("customer:")) {
            (Some(v), _) => Subject::Visitor(Id::parse(v)?),
            (_, Some(c)) => Subject::Customer(Id::parse(c)?),
            _ => Subject::Customer(Id::parse(arg)?),
        },
    )
}

async fn explain(config: &Config, arg: &str) -> anyhow::Result<()> {
    use doorsync_core::Subject;
    use doorsync_engine::access::{GroupState, HeldState, access_view};
    use doorsync_store::{Kind, Record};
    let subject = parse_subject(arg)?;
    let store = open(config, false).await?;
    let now = jiff::Timestamp::now();
    let (kind, id) = match &subject {
        Subject::Customer(id) => (Kind::Customer, id),
        Subject::Visitor(id) => (Kind::Visitor, id),
    };
    let name = match store.get(kind, id.as_str()).await? {
        Some(Record::Customer(c)) => c.name,
        Some(Record::Visitor(v)) => v.name,
        _ => String::new(),
    };
    let view = access_view(&store, &subject, now).await;
    store.close().await;
    let view = view?.ok_or_else(|| anyhow::anyhow!("no {} {:?}", kind.as_str(), id.as_str()))?;
    let group = |id: &str, name: &Option<String>| match name {
        Some(n) => format!("{n:?} ({id})"),
        None => id.to_owned(),
    };
    println!("{} {name} ({id}) at {now}:", kind.as_str());
    if view.groups.is_empty() {
        println!("  no access now and none due");
    }
    for g in &view.groups {
        let until = g
            .until
            .map_or_else(|| "open-ended".to_owned(), |u| format!("until {u}"));
        let what = group(&g.group_id, &g.group_name);
        let line = match g.state {
            GroupState::Held => format!("holds {what} since {} {until}", g.from),
            GroupState::Pending => {
                format!(
                    "is entitled to {what} since {} {until}; not yet in Brivo",
                    g.from
                )
            }
            GroupState::Failing => format!(
                "is entitled to {what} since {} {until}; not in Brivo, last attempt failed: {}",
                g.from,
                g.error.as_deref().unwrap_or("unknown error")
            ),
            GroupState::Due => format!("is due {what} from {} {until}", g.from),
            GroupState::NoConnection => format!(
                "is entitled to {what} since {} {until}, but its location has no connection: nobody gets it",
                g.from
            ),
            GroupState::ConnectionDisabled => format!(
                "is entitled to {what} since {} {until}, but its connection is disabled",
                g.from
            ),
        };
        println!("  {line}");
        for r in &g.reasons {
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
    for h in &view.held_without_entitlement {
        let what = group(&h.group_id, &h.group_name);
        let line = match h.state {
            HeldState::RemovalPending => format!("is still in {what}: removal pending"),
            HeldState::Failing => format!(
                "is still in {what}: the last removal failed: {}",
                h.error.as_deref().unwrap_or("unknown error")
            ),
            HeldState::HeldPastEntitlement => format!(
                "is still in {what} past the entitlement's end{}: connection {} is disabled",
                h.since.map(|s| format!(" (since {s})")).unwrap_or_default(),
                h.connection_id
            ),
        };
        println!("  {line}; no entitlement covers it");
    }
    Ok(())
}

/// `needs_key`: whether the command writes credentials, so a missing key deserves a warning.
async fn open(config: &Config, needs_key: bool) -> anyhow::Result<SqlStore> {
    let store = SqlStore::connect(&config.database_url)
        .await
        .with_context(|| format!("opening {}", redact(&config.database_url)))?;
    let applied = store.migrate(jiff::Timestamp::now()).await?;
    if !applied.is_empty() {
        tracing::info!(?applied, "database migrated");
    }
    Ok(match &config.secret_key {
        Some(k) => store.with_secret_key(doorsync_store::SecretKey::parse(
            secrecy::ExposeSecret::expose_secret(k),
        )?),
        None => {
            if needs_key {
                tracing::warn!("no DOORSYNC_SECRET_KEY: provider credentials cannot be stored");
            }
            store
        }
    })
}

/// On SQLite one `doorsync serve` runs per database: a lock on a file beside it, held while
/// serving, refuses a second one, and lets the one that holds it know that any lease in the
/// database belongs to a process that is gone (a crash, a `kill -9`).
fn sole_instance(url: &str) -> anyhow::Result<Option<std::fs::File>> {
    let Some(rest) = url.strip_prefix("sqlite:") else {
        return Ok(None);
    };
    let path = rest.trim_start_matches("//");
    let path = path.split('?').next().unwrap_or(path);
    if path.is_empty() || path.contains(":memory:") {
        return Ok(None);
    }
    let lock = format!("{path}.serve.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock)
        .with_context(|| format!("opening {lock}"))?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
            "another doorsync serve is running on {path} (it holds {lock}); one instance serves an SQLite database, use PostgreSQL for several"
        ),
        Err(std::fs::TryLockError::Error(e)) => Err(e).with_context(|| format!("locking {lock}")),
    }
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

/// Raises the open-file limit, then sizes the HTTP server's connection cap on what it got, and
/// says both in the log: a cap above the limit would never apply, and accepts would fail instead.
fn connection_limits(config: &Config) -> doorsync_web::server::Limits {
    use doorsync_web::server::{FEWEST_CONNECTIONS, Limits, RESERVED_DESCRIPTORS};
    let got = descriptors::raise(Limits::descriptors_wanted());
    let limits = Limits::for_descriptors(got.limit, config.connections_per_address);
    let descriptors = got
        .limit
        .map_or_else(|| "unlimited".to_owned(), |l| l.to_string());
    let (max_connections, per_address) = (limits.max_connections, limits.per_client);
    let header_read_timeout = limits.header_read_timeout;
    match got.raised_from {
        Some(raised_from) => tracing::info!(
            max_connections,
            per_address,
            ?header_read_timeout,
            %descriptors,
            raised_from,
            "connection limits"
        ),
        None => tracing::info!(
            max_connections,
            per_address,
            ?header_read_timeout,
            %descriptors,
            "connection limits"
        ),
    }
    if got
        .limit
        .is_some_and(|l| l < FEWEST_CONNECTIONS as u64 + RESERVED_DESCRIPTORS)
    {
        tracing::warn!(
            %descriptors,
            "the open-file limit leaves too little room for connections; raise it (ulimit -n, LimitNOFILE=)"
        );
    }
    limits
}

async fn serve(config: Config, listen: Option<String>) -> anyhow::Result<()> {
    let addr = listen.unwrap_or(config.listen.clone());
    // Before the database opens its files.
    let limits = connection_limits(&config);
    let _only = sole_instance(&config.database_url)?;
    let store = open(&config, true).await?;
    if _only.is_some() {
        let freed = store.expire_leases().await?;
        if freed > 0 {
            tracing::info!(subjects = freed, "leases left by the previous run freed");
        }
    }
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .with_context(|| format!("listening on {addr}"))?;
    tracing::info!(addr = %listener.local_addr()?, database = %redact(&config.database_url), "doorsync serving");
    eprintln!("doorsync listening on http://{}", listener.local_addr()?);
    let options = app::Options {
        engine: doorsync_engine::EngineConfig {
            resync_interval: config.resync_interval,
            public_url: config.public_url.clone(),
            mail: config.mail.clone(),
            alerts: config.alerts.clone(),
            ..Default::default()
        },
        outbox: None,
        limits,
    };
    app::run(store, listener, options, shutdown_signal()).await?;
    tracing::info!("doorsync stopped");
    Ok(())
}

/// One GET /readyz over a plain connection, with a deadline.
async fn health(listen: &str) -> anyhow::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr: std::net::SocketAddr = listen.parse().with_context(|| {
        format!("--listen: {listen:?} is not an address such as 127.0.0.1:8080")
    })?;
    let addr = match addr.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => {
            std::net::SocketAddr::from(([127, 0, 0, 1], addr.port()))
        }
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => {
            std::net::SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, addr.port()))
        }
        _ => addr,
    };
    let ask = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        stream
            .write_all(
                format!("GET /readyz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            )
            .await?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await?;
        Ok::<_, std::io::Error>(answer)
    };
    let answer = tokio::time::timeout(std::time::Duration::from_secs(5), ask)
        .await
        .map_err(|_| anyhow::anyhow!("{addr} did not answer within 5 s"))?
        .with_context(|| format!("asking {addr}"))?;
    let status = String::from_utf8_lossy(&answer);
    let line = status.lines().next().unwrap_or("");
    anyhow::ensure!(
        line.split(' ').nth(1) == Some("200"),
        "{addr} is not ready: {line}"
    );
    println!("ready");
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
