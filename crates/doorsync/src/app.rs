//! doorsync assembled: the store, the sync engine (talking to Brivo) and the HTTP API in one
//! process, stopped together.

use doorsync_core::Clock;
use doorsync_engine::brivo::BrivoFactory;
use doorsync_engine::{Engine, EngineConfig};
use doorsync_store::{SqlStore, Store};
use std::future::Future;
use std::sync::Arc;
use tokio::sync::watch;

pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> jiff::Timestamp {
        jiff::Timestamp::now()
    }
}

#[derive(Default)]
pub struct Options {
    pub engine: EngineConfig,
    /// The demo's SMTP sink, shown at `/app/outbox`.
    pub outbox: Option<doorsync_engine::mail::sink::Inbox>,
    /// The HTTP server's connection limits.
    pub limits: doorsync_web::server::Limits,
}

/// Serves until `shutdown` completes, then lets in-flight requests and reconciles finish.
pub async fn run(
    store: SqlStore,
    listener: tokio::net::TcpListener,
    options: Options,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let shared: Arc<dyn Store> = Arc::new(store.clone());
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    // Instances sharing PostgreSQL share each API key's calls per second through it; one
    // instance on SQLite paces in process.
    let factory = match store.backend() {
        doorsync_store::Backend::Postgres => BrivoFactory::new().pacing_in(shared.clone()),
        doorsync_store::Backend::Sqlite => BrivoFactory::new(),
    };
    let engine = Arc::new(Engine::new(
        shared.clone(),
        clock.clone(),
        Arc::new(factory),
        options.engine,
    ));
    let waker = engine.clone();
    let listener_task = store.on_due(move || waker.wake()).await?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let engine_task = tokio::spawn(engine.clone().run(stop_rx));
    let setup_task = tokio::spawn(announce_setup_codes(shared.clone(), clock.clone()));
    let state = doorsync_web::AppState {
        store: shared,
        clock,
        engine: Some(engine),
        admin: Default::default(),
        outbox: options.outbox,
    };
    let served = doorsync_web::server::serve(
        listener,
        doorsync_web::router(state),
        options.limits,
        shutdown,
    )
    .await;
    setup_task.abort();
    let _ = stop_tx.send(true);
    let _ = engine_task.await;
    if let Some(t) = listener_task {
        t.abort();
    }
    store.close().await;
    Ok(served?)
}

/// While no administrator exists, a warning in the log with a one-time setup code for the
/// dashboard's first-run form, and a fresh one as each expires: only whoever reads this server's
/// log (or runs `doorsync admin create` on it) can claim it.
async fn announce_setup_codes(store: Arc<dyn Store>, clock: Arc<dyn Clock>) {
    doorsync_web::admin::announce_setup_codes(
        store.as_ref(),
        clock.as_ref(),
        |code, until| {
            tracing::warn!(
                expires_at = %until,
                "no administrator yet: anyone who reaches /admin/setup needs this server's setup code: {code} (one use, until {until}); or run `doorsync admin create --email E`"
            );
        },
        |pause| tokio::time::sleep(pause.unsigned_abs()),
    )
    .await;
}
