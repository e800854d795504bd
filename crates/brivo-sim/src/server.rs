//! The accept loop and the "front door" every request passes before the router: fault
//! injection, the rate limit and request counting. The loop is hand-rolled on hyper (rather than
//! `axum::serve`) because a "drop" fault must close the connection without any response, which
//! a service can only do by failing the connection.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use axum::response::Response;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tower::ServiceExt;

use crate::faults::{self, Action};
use crate::sim::Sim;

/// How long a shutdown waits for in-flight requests.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Returned by the service to make hyper close the connection unanswered.
#[derive(Debug)]
struct DropConnection;

impl std::fmt::Display for DropConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by an injected fault")
    }
}

impl std::error::Error for DropConnection {}

pub async fn serve(
    listener: TcpListener,
    sim: Arc<Sim>,
    router: Router,
    mut stop: oneshot::Receiver<()>,
) {
    let graceful = GracefulShutdown::new();
    // A dropped handle (rather than an explicit shutdown) leaves the server running.
    let mut stop_armed = true;
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        // Typically out of file descriptors: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let sim = sim.clone();
                let router = router.clone();
                let service = service_fn(move |req| front_door(sim.clone(), router.clone(), req));
                let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(error = %e, "connection closed with an error");
                    }
                });
            }
            result = &mut stop, if stop_armed => {
                if result.is_ok() {
                    break;
                }
                stop_armed = false;
            }
        }
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("brivo-sim shut down with requests still in flight");
    }
}

async fn front_door(
    sim: Arc<Sim>,
    router: Router,
    req: Request<Incoming>,
) -> Result<Response, DropConnection> {
    let path = req.uri().path().to_string();
    if path == "/__sim" || path.starts_with("/__sim/") {
        return Ok(route(router, req).await);
    }
    let method = req.method().clone();
    let template = template_path(&path);
    match faults::decide(&sim, &method, &path) {
        Action::Drop => {
            sim.count_request(method.as_str(), template, 0);
            return Err(DropConnection);
        }
        Action::Respond(resp) => {
            sim.count_request(method.as_str(), template, resp.status().as_u16());
            return Ok(resp);
        }
        Action::Delay(delay) => tokio::time::sleep(delay).await,
        Action::Pass => {}
    }
    let api_key = req
        .headers()
        .get("api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if let Some(resp) = faults::rate_limited(&sim, api_key.as_deref()) {
        sim.count_request(method.as_str(), template, resp.status().as_u16());
        return Ok(resp);
    }
    let resp = route(router, req).await;
    sim.count_request(method.as_str(), template, resp.status().as_u16());
    Ok(resp)
}

async fn route(router: Router, req: Request<Incoming>) -> Response {
    let result: Result<Response, Infallible> = router.oneshot(req.map(Body::new)).await;
    match result {
        Ok(resp) => resp,
        Err(never) => match never {},
    }
}

/// Replaces ids in a path so counts group by endpoint: numeric segments become `{id}`, and the
/// externalId of `/users/{externalId}/external` becomes `{externalId}`.
pub fn template_path(path: &str) -> String {
    let segments: Vec<&str> = path.split('/').collect();
    segments
        .iter()
        .enumerate()
        .map(|(i, seg)| {
            let numeric = !seg.is_empty() && seg.bytes().all(|b| b.is_ascii_digit());
            let external =
                i > 0 && segments[i - 1] == "users" && segments.get(i + 1) == Some(&"external");
            if external {
                "{externalId}"
            } else if numeric {
                "{id}"
            } else {
                seg
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::template_path;

    #[test]
    fn templates_ids_out_of_paths() {
        assert_eq!(
            template_path("/v1/api/groups/15541101/users/15570001"),
            "/v1/api/groups/{id}/users/{id}"
        );
        assert_eq!(
            template_path("/v1/api/users/cust-1/external"),
            "/v1/api/users/{externalId}/external"
        );
        assert_eq!(template_path("/oauth/token"), "/oauth/token");
    }
}
