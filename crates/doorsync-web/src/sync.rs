//! The engine's read models and controls: audit log, sync status, resync, plan preview, metrics.

use crate::AppState;
use crate::error::{ApiError, ErrorBody};
use crate::input;
use crate::query::{AuditQuery, IdPath, PathId, Q, ResyncQuery};
use crate::view::*;
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use doorsync_core::{Id, LinkKind};
use doorsync_engine::plan::{Change, Preview, preview};
use doorsync_engine::{Engine, SyncStatus};
use doorsync_store::AuditFilter;
use jiff::SignedDuration;
use serde::Deserialize;
use std::sync::Arc;
use utoipa::ToSchema;

/// `doorsync serve` always runs an engine; only a program that embeds this router without one
/// gets this answer, so the description, which is `doorsync serve`'s, leaves it out.
fn engine(st: &AppState) -> Result<&Arc<Engine>, ApiError> {
    st.engine.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "engine_not_running",
            "the sync engine is not running in this process",
        )
    })
}

/// The audit log: every provider call doorsync made, with its cause, newest first
#[utoipa::path(get, path = "/api/v1/audit", tag = "sync", operation_id = "audit_log",
    params(AuditQuery),
    responses(
        (status = 200, description = "A page, newest first", body = AuditItemPage),
        (status = 400, description = "Bad query", body = ErrorBody),
    ))]
pub async fn audit(
    State(st): State<AppState>,
    Q(q): Q<AuditQuery>,
) -> Result<Json<Page<AuditItem>>, ApiError> {
    let filter = AuditFilter {
        subject: q
            .subject
            .or_else(|| q.customer_id.map(|c| format!("customer:{c}"))),
        group_id: q.group_id,
        operation: q.operation,
        outcome: q.outcome,
        cause: q.cause,
        since: q.since,
        until: q.until,
    };
    let limit = q.limit.unwrap_or(crate::query::DEFAULT_LIMIT);
    let items = st.store.audit(&filter, q.cursor, limit + 1).await?;
    let page = Page::of(items, limit, |e| e.seq.to_string());
    // Names from the connection directories, beside each entry's group id.
    let shown: std::collections::BTreeSet<String> = page
        .items
        .iter()
        .filter_map(|e| e.group_id.clone())
        .collect();
    let names = st.store.group_names(&shown).await?;
    Ok(Json(page.map(|entry| AuditItem {
        group_name: entry.group_id.as_ref().and_then(|g| names.get(g)).cloned(),
        entry,
    })))
}

/// How the sync stands: the due queue, errors, each connection, alerts
#[utoipa::path(get, path = "/api/v1/sync/status", tag = "sync", operation_id = "sync_status",
    responses(
        (status = 200, description = "The status", body = SyncStatus),
    ))]
pub async fn status(State(st): State<AppState>) -> Result<Json<SyncStatus>, ApiError> {
    Ok(Json(engine(&st)?.status().await?))
}

/// Audit every enabled connection now: read each managed group, repair what differs
#[utoipa::path(post, path = "/api/v1/sync/resync", tag = "sync", operation_id = "resync",
    params(ResyncQuery),
    responses(
        (status = 202, description = "Started", body = ResyncStarted),
        (status = 200, description = "Done (wait=true)", body = ResyncDone),
        (status = 400, description = "Bad query", body = ErrorBody),
    ))]
pub async fn resync(
    State(st): State<AppState>,
    Q(q): Q<ResyncQuery>,
) -> Result<Response, ApiError> {
    let engine = engine(&st)?.clone();
    if !q.wait.unwrap_or(false) {
        tokio::spawn(async move {
            for r in engine.resync().await {
                if let Err((c, e)) = r {
                    tracing::warn!(connection = c, error = e, "resync failed");
                }
            }
        });
        return Ok((
            StatusCode::ACCEPTED,
            Json(ResyncStarted { status: "started" }),
        )
            .into_response());
    }
    let audits = engine
        .resync()
        .await
        .into_iter()
        .map(|r| match r {
            Ok(report) => ResyncResult::Done(report),
            Err((connection_id, error)) => ResyncResult::Failed {
                connection_id,
                error,
            },
        })
        .collect();
    Ok(Json(ResyncDone { audits }).into_response())
}

/// A change to preview: a link (set or removed) or new buffers for a location or resource.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanBody {
    #[serde(default)]
    pub links: Vec<PlanLink>,
    #[serde(default)]
    pub locations: Vec<PlanBuffers>,
    #[serde(default)]
    pub resources: Vec<PlanBuffers>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanLink {
    /// pass, resource or desk
    pub kind: String,
    #[schema(value_type = String)]
    pub item_id: Id,
    /// The group to link to; null unlinks the item.
    pub group_id: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanBuffers {
    #[schema(value_type = String)]
    pub id: Id,
    #[schema(value_type = Option<String>, example = "PT30M")]
    pub lead: Option<SignedDuration>,
    #[schema(value_type = Option<String>, example = "PT30M")]
    pub lag: Option<SignedDuration>,
}

/// What a change of links or buffers would add and remove now, applying nothing
#[utoipa::path(post, path = "/api/v1/plan", tag = "sync", operation_id = "plan",
    request_body = PlanBody,
    responses(
        (status = 200, description = "The preview", body = Preview),
        (status = 422, description = "A bad change", body = ErrorBody),
    ))]
pub async fn plan(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Preview>, ApiError> {
    let body: PlanBody = input::json(&headers, body)?;
    let mut changes = vec![];
    for (i, l) in body.links.into_iter().enumerate() {
        let kind = LinkKind::parse(&l.kind).ok_or_else(|| {
            ApiError::invalid(format!("links[{i}].kind"), "kind is pass, resource or desk")
        })?;
        changes.push(Change::Link {
            kind,
            item_id: l.item_id,
            group_id: l.group_id,
        });
    }
    let check = |field: String, d: Option<SignedDuration>| match d {
        Some(d) if d.is_negative() || d > SignedDuration::from_hours(24) => {
            Err(ApiError::invalid(field, "must be between PT0S and PT24H"))
        }
        d => Ok(d),
    };
    for (i, b) in body.locations.into_iter().enumerate() {
        let lead = check(format!("locations[{i}].lead"), b.lead)?;
        let lag = check(format!("locations[{i}].lag"), b.lag)?;
        changes.push(Change::Location {
            id: b.id,
            lead,
            lag,
        });
    }
    for (i, b) in body.resources.into_iter().enumerate() {
        let lead = check(format!("resources[{i}].lead"), b.lead)?;
        let lag = check(format!("resources[{i}].lag"), b.lag)?;
        changes.push(Change::Resource {
            id: b.id,
            lead,
            lag,
        });
    }
    if changes.is_empty() {
        return Err(ApiError::invalid(
            "links",
            "name at least one change in links, locations or resources",
        ));
    }
    Ok(Json(
        preview(st.store.as_ref(), st.clock.now(), &changes).await?,
    ))
}

/// The groups, sites and doors read from the connection's provider, with their ids
#[utoipa::path(get, path = "/api/v1/connections/{id}/directory", tag = "connections",
    operation_id = "connection_directory", params(IdPath),
    responses(
        (status = 200, description = "The directory as last read", body = Directory),
        (status = 400, description = "Bad id", body = ErrorBody),
        (status = 404, description = "No such connection", body = ErrorBody),
    ))]
pub async fn directory(
    State(st): State<AppState>,
    PathId(id): PathId,
) -> Result<Json<Directory>, ApiError> {
    if st
        .store
        .get(doorsync_store::Kind::Connection, id.as_str())
        .await?
        .is_none()
    {
        return Err(ApiError::not_found(format_args!("connection {id:?}")));
    }
    let state = st.store.connection_state(id.as_str()).await?;
    let read = async |kind: &str| -> Result<Vec<DirectoryEntry>, ApiError> {
        Ok(st
            .store
            .directory(id.as_str(), kind)
            .await?
            .into_iter()
            .map(|e| DirectoryEntry {
                id: e.provider_id,
                name: e.name,
                site_id: e.parent_id,
            })
            .collect())
    };
    Ok(Json(Directory {
        read_at: state.last_directory_at,
        groups: read("group").await?,
        sites: read("site").await?,
        doors: read("door").await?,
    }))
}

/// Prometheus text: reconciles, provider calls, transition lateness, due queue, drift
#[utoipa::path(get, path = "/metrics", tag = "meta", operation_id = "metrics",
    responses(
        (status = 200, description = "OpenMetrics text (application/openmetrics-text 1.0.0), which Prometheus reads",
            content_type = "application/openmetrics-text", body = String),
    ))]
pub async fn metrics(State(st): State<AppState>) -> Result<Response, ApiError> {
    let engine = engine(&st)?;
    let due = st.store.due_summary(st.clock.now()).await?;
    let mut calls = vec![];
    for (connection, provider) in engine.reconciler.providers.built() {
        for (endpoint, outcome, n) in provider.call_stats() {
            calls.push((connection.clone(), endpoint, outcome, n));
        }
    }
    let text = engine.metrics().render(
        &[
            (
                "doorsync_due_subjects",
                "Subjects due and not yet claimed",
                due.due as f64,
            ),
            (
                "doorsync_in_flight_subjects",
                "Subjects being reconciled",
                due.in_flight as f64,
            ),
        ],
        &calls,
    );
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response())
}
