//! The REST API's routes and handlers. Every route goes through [`Routes::add`], which records it,
//! so a test can hold the router and the OpenAPI description to each other.

use crate::AppState;
use crate::collections::*;
use crate::error::ApiError;
use crate::input;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{MethodRouter, get, post};
use axum::{Json, Router};
use doorsync_core::{Id, LinkKind, Subject};
use doorsync_engine::access::access_view;
use doorsync_store::{Kind, Record, link_key};
use serde_json::{Value, json};
use std::collections::BTreeMap;

pub const DEFAULT_LIMIT: u32 = 50;
pub const MAX_LIMIT: u32 = 500;

pub struct Routes {
    pub router: Router<AppState>,
    /// `(method, path)` of every route, as written in the OpenAPI description.
    pub seen: Vec<(&'static str, String)>,
}

impl Routes {
    fn add(mut self, path: &str, methods: &[&'static str], route: MethodRouter<AppState>) -> Self {
        for m in methods {
            self.seen.push((m, path.to_owned()));
        }
        self.router = self.router.route(path, route);
        self
    }

    fn collection<C: Collection>(self) -> Self {
        let many = format!("/api/v1/{}", C::PATH);
        let one = format!("/api/v1/{}/{{id}}", C::PATH);
        self.add(&many, &["get"], get(list::<C>)).add(
            &one,
            &["get", "put", "patch", "delete"],
            get(get_one::<C>)
                .put(put_one::<C>)
                .patch(patch_one::<C>)
                .delete(delete_one::<C>),
        )
    }
}

/// Every authenticated route of the API.
pub fn routes() -> Routes {
    Routes {
        router: Router::new(),
        seen: vec![],
    }
    .collection::<Connections>()
    .collection::<Locations>()
    .collection::<Passes>()
    .collection::<Resources>()
    .collection::<Desks>()
    .collection::<Customers>()
    .collection::<Teams>()
    .collection::<Bookings>()
    .collection::<Contracts>()
    .collection::<PassGrants>()
    .collection::<Visitors>()
    .collection::<Doors>()
    .add("/api/v1/links", &["get"], get(list_links))
    .add(
        "/api/v1/links/{kind}/{item_id}",
        &["get", "put", "delete"],
        get(get_link).put(put_link).delete(delete_link),
    )
    .add(
        "/api/v1/customers/{id}/access",
        &["get"],
        get(customer_access),
    )
    .add(
        "/api/v1/visitors/{id}/access",
        &["get"],
        get(visitor_access),
    )
    .add(
        "/api/v1/customers/{id}/invitation",
        &["post"],
        post(resend_invitation),
    )
    .add("/api/v1/batch", &["post"], crate::batch::routes())
    .add("/api/v1/openapi.json", &["get"], get(openapi))
    .add("/api/v1/audit", &["get"], get(crate::sync::audit))
    .add("/api/v1/presence", &["get"], get(crate::presence::presence))
    .add("/api/v1/checkins", &["get"], get(crate::presence::checkins))
    .add(
        "/api/v1/failed-checkins",
        &["get"],
        get(crate::presence::failed_checkins),
    )
    .add(
        "/api/v1/door-events",
        &["get"],
        get(crate::presence::door_events),
    )
    .add(
        "/api/v1/connections/{id}/directory",
        &["get"],
        get(crate::sync::directory),
    )
    .add("/api/v1/sync/status", &["get"], get(crate::sync::status))
    .add("/api/v1/sync/resync", &["post"], post(crate::sync::resync))
    .add("/api/v1/plan", &["post"], post(crate::sync::plan))
    .add("/metrics", &["get"], get(crate::sync::metrics))
}

fn parse_id(field: &'static str, raw: &str) -> Result<Id, ApiError> {
    Id::parse(raw).map_err(|e| ApiError::bad_request("invalid_id", field, e.to_string()))
}

fn path_id(path: Result<Path<String>, PathRejection>) -> Result<Id, ApiError> {
    let Path(raw) = path.map_err(|e| ApiError::bad_request("invalid_id", "id", e.body_text()))?;
    parse_id("id", &raw)
}

struct Page {
    limit: u32,
    cursor: Option<String>,
}

fn page(query: Result<Query<BTreeMap<String, String>>, QueryRejection>) -> Result<Page, ApiError> {
    let Query(q) =
        query.map_err(|e| ApiError::bad_request("invalid_query", "query", e.body_text()))?;
    let mut page = Page {
        limit: DEFAULT_LIMIT,
        cursor: None,
    };
    for (k, v) in q {
        match k.as_str() {
            "limit" => {
                page.limit = v
                    .parse()
                    .ok()
                    .filter(|l| (1..=MAX_LIMIT).contains(l))
                    .ok_or_else(|| {
                        ApiError::bad_request(
                            "invalid_query",
                            "limit",
                            format!("limit is 1 to {MAX_LIMIT}"),
                        )
                    })?
            }
            "cursor" => {
                input::no_control("cursor", &v)?;
                page.cursor = Some(v)
            }
            other => {
                return Err(ApiError::bad_request(
                    "invalid_query",
                    other.to_owned(),
                    "unknown query parameter; use limit and cursor",
                ));
            }
        }
    }
    Ok(page)
}

async fn list_kind(
    st: &AppState,
    kind: Kind,
    page: Page,
    render: fn(&Record) -> Value,
) -> Result<Json<Value>, ApiError> {
    let mut records = st
        .store
        .list(kind, page.cursor.as_deref(), page.limit + 1)
        .await?;
    let more = records.len() > page.limit as usize;
    records.truncate(page.limit as usize);
    let next = if more {
        records.last().map(|r| r.key())
    } else {
        None
    };
    let items: Vec<Value> = records.iter().map(render).collect();
    Ok(Json(json!({ "items": items, "next_cursor": next })))
}

async fn list<C: Collection>(
    State(st): State<AppState>,
    query: Result<Query<BTreeMap<String, String>>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    list_kind(&st, C::KIND, page(query)?, C::render).await
}

async fn get_one<C: Collection>(
    State(st): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let id = path_id(path)?;
    match st.store.get(C::KIND, id.as_str()).await? {
        Some(r) => Ok(Json(C::render(&r))),
        None => Err(ApiError::not_found(format_args!(
            "{} {id:?}",
            C::KIND.as_str()
        ))),
    }
}

async fn put_one<C: Collection>(
    State(st): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let id = path_id(path)?;
    let body: C::Body = input::json(&headers, body)?;
    let record = C::into_record(id, body)?;
    let written = st.store.put(record, st.clock.now()).await?;
    st.wake();
    let status = if written.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(C::render(&written.record))))
}

/// JSON Merge Patch (RFC 7396): the fields sent replace the stored ones, `null` removes one
/// (back to its default), the rest stay. The record is read, patched as a whole body, checked
/// and written like a `PUT`.
async fn patch_one<C: Collection>(
    State(st): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let id = path_id(path)?;
    let patch: Value = input::json(&headers, body)?;
    let current = st
        .store
        .get(C::KIND, id.as_str())
        .await?
        .ok_or_else(|| ApiError::not_found(format_args!("{} {id:?}", C::KIND.as_str())))?;
    let mut doc = crate::batch::body_of::<C>(&current);
    merge_patch(&mut doc, patch);
    let body: C::Body = input::from_value(doc)?;
    let record = C::into_record(id, body)?;
    let written = st.store.put(record, st.clock.now()).await?;
    st.wake();
    Ok(Json(C::render(&written.record)))
}

pub(crate) fn merge_patch(target: &mut Value, patch: Value) {
    let Value::Object(patch) = patch else {
        *target = patch;
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Default::default());
    }
    let Value::Object(fields) = target else {
        return;
    };
    for (k, v) in patch {
        if v.is_null() {
            fields.remove(&k);
        } else {
            merge_patch(fields.entry(k).or_insert(Value::Null), v);
        }
    }
}

async fn delete_one<C: Collection>(
    State(st): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let id = path_id(path)?;
    if st
        .store
        .delete(C::KIND, id.as_str(), st.clock.now())
        .await?
    {
        st.wake();
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format_args!(
            "{} {id:?}",
            C::KIND.as_str()
        )))
    }
}

fn render_link(r: &Record) -> Value {
    serde_json::to_value(r).unwrap_or(Value::Null)
}

fn link_path(
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<(LinkKind, Id), ApiError> {
    let Path((kind, item)) =
        path.map_err(|e| ApiError::bad_request("invalid_id", "item_id", e.body_text()))?;
    let kind = LinkKind::parse(&kind).ok_or_else(|| {
        ApiError::bad_request("invalid_kind", "kind", "kind is pass, resource or desk")
    })?;
    Ok((kind, parse_id("item_id", &item)?))
}

async fn list_links(
    State(st): State<AppState>,
    query: Result<Query<BTreeMap<String, String>>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    list_kind(&st, Kind::Link, page(query)?, render_link).await
}

async fn get_link(
    State(st): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let (kind, item) = link_path(path)?;
    match st
        .store
        .get(Kind::Link, &link_key(kind, item.as_str()))
        .await?
    {
        Some(r) => Ok(Json(render_link(&r))),
        None => Err(ApiError::not_found(format_args!(
            "link of {} {item:?}",
            kind.as_str()
        ))),
    }
}

async fn put_link(
    State(st): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let (kind, item_id) = link_path(path)?;
    let body: LinkBody = input::json(&headers, body)?;
    let record = body.into_record(kind, item_id.clone())?;
    let written = st
        .store
        .put(record, st.clock.now())
        .await
        .map_err(|e| match e {
            // The path names the item, so an unknown one is a missing resource.
            doorsync_store::StoreError::UnknownReference { .. } => {
                ApiError::not_found(format_args!("{} {item_id:?}", kind.as_str()))
            }
            e => e.into(),
        })?;
    st.wake();
    let status = if written.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(render_link(&written.record))))
}

async fn delete_link(
    State(st): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let (kind, item) = link_path(path)?;
    if st
        .store
        .delete(Kind::Link, &link_key(kind, item.as_str()), st.clock.now())
        .await?
    {
        st.wake();
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format_args!(
            "link of {} {item:?}",
            kind.as_str()
        )))
    }
}

/// The access view of one subject, keyed by its id: the same view `doorsync explain` prints.
async fn access(st: &AppState, subject: Subject) -> Result<Json<Value>, ApiError> {
    let (key, id, what) = match &subject {
        Subject::Customer(id) => ("customer_id", id.clone(), "customer"),
        Subject::Visitor(id) => ("visitor_id", id.clone(), "visitor"),
    };
    let view = access_view(st.store.as_ref(), &subject, st.clock.now())
        .await?
        .ok_or_else(|| ApiError::not_found(format_args!("{what} {id:?}")))?;
    let mut body = serde_json::to_value(view).map_err(ApiError::internal)?;
    body[key] = json!(id);
    Ok(Json(body))
}

/// Asks for a new Mobile Pass invitation now: the customer's reconcile cancels a pending one
/// and sends another (once the customer has access and a Brivo user).
async fn resend_invitation(
    State(st): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let id = path_id(path)?;
    if st.store.get(Kind::Customer, id.as_str()).await?.is_none() {
        return Err(ApiError::not_found(format_args!("customer {id:?}")));
    }
    let now = st.clock.now();
    st.store
        .request_invitation(&Subject::Customer(id.clone()), now)
        .await?;
    st.wake();
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "customer_id": id, "requested_at": now })),
    ))
}

async fn customer_access(
    State(st): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let id = path_id(path)?;
    access(&st, Subject::Customer(id)).await
}

async fn visitor_access(
    State(st): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let id = path_id(path)?;
    access(&st, Subject::Visitor(id)).await
}

async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(crate::openapi::document())
}
