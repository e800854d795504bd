//! The engine's read models and controls: audit log, sync status, resync, plan preview, metrics.

use crate::AppState;
use crate::error::ApiError;
use crate::input;
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use doorsync_core::{Id, LinkKind};
use doorsync_engine::Engine;
use doorsync_engine::plan::{Change, preview};
use doorsync_store::AuditFilter;
use jiff::{SignedDuration, Timestamp};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use utoipa::ToSchema;

fn engine(st: &AppState) -> Result<&Arc<Engine>, ApiError> {
    st.engine.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "engine_not_running",
            "the sync engine is not running in this process",
        )
    })
}

pub async fn audit(
    State(st): State<AppState>,
    query: Result<Query<BTreeMap<String, String>>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) =
        query.map_err(|e| ApiError::bad_request("invalid_query", "query", e.body_text()))?;
    let mut filter = AuditFilter::default();
    let mut limit = crate::api::DEFAULT_LIMIT;
    let mut before = None;
    let instant = |k: &str, v: &str| {
        v.parse::<Timestamp>().map_err(|_| {
            ApiError::bad_request(
                "invalid_query",
                k.to_owned(),
                "an RFC 3339 instant, e.g. 2026-06-01T09:00:00Z",
            )
        })
    };
    for (k, v) in q {
        input::no_control(k.clone(), &v)?;
        match k.as_str() {
            "subject" => filter.subject = Some(v),
            "customer_id" => filter.subject = Some(format!("customer:{v}")),
            "group_id" => filter.group_id = Some(v),
            "operation" => filter.operation = Some(v),
            "outcome" => {
                filter.outcome = Some(v.parse().map_err(|()| {
                    ApiError::bad_request("invalid_query", "outcome", "outcome is ok or error")
                })?)
            }
            "cause" => filter.cause = Some(v),
            "since" => filter.since = Some(instant(&k, &v)?),
            "until" => filter.until = Some(instant(&k, &v)?),
            "limit" => {
                limit = v
                    .parse()
                    .ok()
                    .filter(|l| (1..=crate::api::MAX_LIMIT).contains(l))
                    .ok_or_else(|| {
                        ApiError::bad_request(
                            "invalid_query",
                            "limit",
                            format!("limit is 1 to {}", crate::api::MAX_LIMIT),
                        )
                    })?
            }
            "cursor" => {
                before = Some(v.parse::<i64>().map_err(|_| {
                    ApiError::bad_request(
                        "invalid_query",
                        "cursor",
                        "use the next_cursor of the previous page",
                    )
                })?)
            }
            other => {
                return Err(ApiError::bad_request(
                    "invalid_query",
                    other.to_owned(),
                    "unknown query parameter; use subject, customer_id, group_id, operation, outcome, cause, since, until, limit, cursor",
                ));
            }
        }
    }
    let mut items = st.store.audit(&filter, before, limit + 1).await?;
    let more = items.len() > limit as usize;
    items.truncate(limit as usize);
    let next = if more {
        items.last().map(|e| e.seq.to_string())
    } else {
        None
    };
    // Names from the connection directories, beside each entry's group id.
    let shown: std::collections::BTreeSet<String> =
        items.iter().filter_map(|e| e.group_id.clone()).collect();
    let names = st.store.group_names(&shown).await?;
    let items: Vec<Value> = items
        .into_iter()
        .map(|e| {
            let name = e.group_id.as_ref().and_then(|g| names.get(g)).cloned();
            let mut v = serde_json::to_value(e).unwrap_or(Value::Null);
            v["group_name"] = json!(name);
            v
        })
        .collect();
    Ok(Json(json!({ "items": items, "next_cursor": next })))
}

pub async fn status(State(st): State<AppState>) -> Result<Json<Value>, ApiError> {
    let status = engine(&st)?.status().await?;
    Ok(Json(serde_json::to_value(status).unwrap_or(Value::Null)))
}

pub async fn resync(
    State(st): State<AppState>,
    query: Result<Query<BTreeMap<String, String>>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) =
        query.map_err(|e| ApiError::bad_request("invalid_query", "query", e.body_text()))?;
    let wait = match q.get("wait").map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => {
            return Err(ApiError::bad_request(
                "invalid_query",
                "wait",
                "wait is true or false",
            ));
        }
    };
    let engine = engine(&st)?.clone();
    if !wait {
        tokio::spawn(async move {
            for r in engine.resync().await {
                if let Err((c, e)) = r {
                    tracing::warn!(connection = c, error = e, "resync failed");
                }
            }
        });
        return Ok((StatusCode::ACCEPTED, Json(json!({"status": "started"}))).into_response());
    }
    let results: Vec<Value> = engine
        .resync()
        .await
        .into_iter()
        .map(|r| match r {
            Ok(report) => serde_json::to_value(report).unwrap_or(Value::Null),
            Err((c, e)) => json!({"connection_id": c, "error": e}),
        })
        .collect();
    Ok(Json(json!({ "audits": results })).into_response())
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

pub async fn plan(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
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
    let p = preview(st.store.as_ref(), st.clock.now(), &changes).await?;
    Ok(Json(serde_json::to_value(p).unwrap_or(Value::Null)))
}

/// The groups, sites and doors read from a connection's provider, to link items to.
pub async fn directory(
    State(st): State<AppState>,
    path: Result<axum::extract::Path<String>, axum::extract::rejection::PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let axum::extract::Path(raw) =
        path.map_err(|e| ApiError::bad_request("invalid_id", "id", e.body_text()))?;
    let id =
        Id::parse(&raw).map_err(|e| ApiError::bad_request("invalid_id", "id", e.to_string()))?;
    if st
        .store
        .get(doorsync_store::Kind::Connection, id.as_str())
        .await?
        .is_none()
    {
        return Err(ApiError::not_found(format_args!("connection {id:?}")));
    }
    let state = st.store.connection_state(id.as_str()).await?;
    let mut out = serde_json::Map::new();
    out.insert(
        "read_at".into(),
        serde_json::to_value(state.last_directory_at).unwrap_or(Value::Null),
    );
    for (kind, key) in [("group", "groups"), ("site", "sites"), ("door", "doors")] {
        let entries = st.store.directory(id.as_str(), kind).await?;
        let list: Vec<Value> = entries
            .into_iter()
            .map(|e| match e.parent_id {
                Some(site) => json!({"id": e.provider_id, "name": e.name, "site_id": site}),
                None => json!({"id": e.provider_id, "name": e.name}),
            })
            .collect();
        out.insert(key.into(), Value::Array(list));
    }
    Ok(Json(Value::Object(out)))
}

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
