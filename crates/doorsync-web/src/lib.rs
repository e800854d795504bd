//! doorsync's HTTP face: the REST API of DESIGN.md §3 with its OpenAPI description, the operator's
//! dashboard under `/admin`, and health.

pub mod admin;
pub mod api;
pub mod app;
pub mod auth;
pub mod batch;
pub mod collections;
pub mod error;
pub mod input;
pub mod openapi;
pub mod presence;
pub mod query;
pub mod schema;
pub mod server;
pub mod sync;
pub mod view;
pub mod write;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::routing::get;
use doorsync_core::Clock;
use doorsync_store::Store;
use error::ApiError;
use std::future::Future;
use std::sync::Arc;

#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    /// The sync engine, when this process runs one; writes wake it.
    pub engine: Option<Arc<doorsync_engine::Engine>>,
    /// What the dashboard keeps in this process.
    pub admin: admin::SharedState,
    /// A local SMTP sink's mail, shown at `/app/outbox` (`doorsync demo` only).
    pub outbox: Option<doorsync_engine::mail::sink::Inbox>,
}

impl AppState {
    /// A write marked someone due: let the engine look now rather than at its next poll.
    pub fn wake(&self) {
        if let Some(e) = &self.engine {
            e.wake();
        }
    }
}

pub fn router(state: AppState) -> Router {
    let (api, _) = api::routes().split_for_parts();
    let (member_api, _) = app::api_routes().split_for_parts();
    let api = api.route_layer(axum::middleware::from_fn_with_state(
        state.clone(),
        auth::require_token,
    ));
    Router::new()
        .route(
            "/",
            get(|| async { axum::response::Redirect::to("/admin") }),
        )
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .route(
            "/hooks/brivo/{secret}",
            axum::routing::post(presence::brivo_hook),
        )
        .merge(api)
        .merge(admin::routes(state.clone()))
        .merge(app::routes())
        .merge(member_api)
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this route does not take that method",
            )
        })
        .layer(DefaultBodyLimit::max(input::MAX_BODY))
        .with_state(state)
}

/// Anyone may ask (load balancers, health checks): the database's own error names its host, its
/// user and what failed, so it goes to the log, and the answer only says what kind of trouble.
/// A token cannot be checked without the database, so every caller gets the same answer.
async fn ready(State(st): State<AppState>) -> Result<&'static str, ApiError> {
    st.store.ping().await.map_err(|e| {
        tracing::warn!(error = %e, "not ready: the database did not answer");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            "doorsync cannot reach its database; the details are in its log",
        )
    })?;
    Ok("ready\n")
}

/// Serves `app` on an already bound listener until `shutdown` completes, then finishes the
/// requests in flight, with the default limits.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    server::serve(listener, app, server::Limits::default(), shutdown).await
}
