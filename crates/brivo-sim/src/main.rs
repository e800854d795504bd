//! `brivo-sim --listen ADDR [--state FILE]`: serves the emulated Brivo account until SIGINT or
//! SIGTERM, after printing its credentials and URLs as `name: value` lines.

use std::path::PathBuf;
use std::time::Duration;

use brivo_sim::{Seed, SimOptions};
use clap::{Parser, ValueEnum};

#[derive(Clone, Copy, ValueEnum)]
enum SeedArg {
    Demo,
    Empty,
}

/// A local emulator of the Brivo Access API.
#[derive(Parser)]
#[command(name = "brivo-sim", version)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8700", env = "BRIVO_SIM_LISTEN")]
    listen: String,
    /// Keep the account in this JSON file across restarts (loaded when it exists).
    #[arg(long, env = "BRIVO_SIM_STATE")]
    state: Option<PathBuf>,
    /// Deliver invitation e-mails to this SMTP server (`host:port`, plain SMTP).
    #[arg(long, env = "BRIVO_SIM_SMTP")]
    smtp: Option<String>,
    /// How a new account is populated.
    #[arg(long, value_enum, default_value = "demo")]
    seed: SeedArg,
    /// Access token lifetime in seconds.
    #[arg(long, default_value_t = 300)]
    access_token_ttl: u64,
    /// Refresh token lifetime in seconds.
    #[arg(long, default_value_t = 14 * 24 * 3600)]
    refresh_token_ttl: u64,
    /// Redirect URI registered for the 3-legged (authorization-code) application.
    #[arg(long, default_value = brivo_sim::DEFAULT_REDIRECT_URI, env = "BRIVO_SIM_REDIRECT_URI")]
    redirect_uri: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "brivo_sim=info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", args.listen))?;
    let options = SimOptions {
        access_token_ttl: Duration::from_secs(args.access_token_ttl),
        refresh_token_ttl: Duration::from_secs(args.refresh_token_ttl),
        state_file: args.state,
        smtp: args.smtp,
        seed: match args.seed {
            SeedArg::Demo => Seed::Demo,
            SeedArg::Empty => Seed::Empty,
        },
        redirect_uri: args.redirect_uri,
    };
    let handle = brivo_sim::spawn(listener, options).await?;
    let account = handle.account();
    println!("api_key: {}", account.api_key);
    println!("client_id: {}", account.client_id);
    println!("client_secret: {}", account.client_secret);
    println!("admin_id: {}", account.admin_id);
    println!("password: {}", account.password);
    println!("code_client_id: {}", account.code_client_id);
    println!("code_client_secret: {}", account.code_client_secret);
    println!("redirect_uri: {}", account.redirect_uri);
    println!("api_url: {}", handle.api_url());
    println!("auth_url: {}", handle.auth_url());
    wait_for_signal().await;
    tracing::info!("shutting down");
    handle.shutdown().await;
    Ok(())
}

async fn wait_for_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(
            tokio::signal::unix::SignalKind::terminate(),
        ) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch SIGTERM; only SIGINT stops the server");
                let _ = interrupt.await;
                return;
            }
        };
        tokio::select! {
            _ = interrupt => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}
