//! Many writes at once, for a platform's first load and its nightly reconciliation:
//! `POST /api/v1/batch` and `doorsync import`. Operations apply in order, in chunks; each chunk
//! is one transaction in which every operation stands alone (a failing one changes nothing and
//! gets its own result), and the chunk's successful writes become visible together.

use crate::AppState;
use crate::collections::*;
use crate::error::{ApiError, ErrorBody, ErrorDetail};
use crate::input;
use crate::write;
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::HeaderMap;
use doorsync_core::{Clock, Id, LinkKind};
use doorsync_store::{BatchDone, BatchOp, Kind, Record, Store, StoreError, link_key};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashMap;
use utoipa::ToSchema;

/// Operations applied in one transaction.
pub const CHUNK: usize = 500;
/// Operations one request may carry.
pub const MAX_OPERATIONS: usize = 10_000;
/// A batch body may be this large (one write's limit is 1 MiB).
pub const MAX_BATCH_BODY: usize = 32 * 1024 * 1024;

/// One operation as sent.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Operation {
    pub op: OpKind,
    /// A collection's path segment (`customers`, `pass-grants`, ...) or `links`.
    pub collection: String,
    /// The record's id; for a link, `{kind}/{item_id}` (`resource/room-1`).
    pub id: String,
    /// The body of a `put` (as for `PUT`) or of a `patch` (a JSON Merge Patch).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub body: Option<Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OpKind {
    Put,
    Patch,
    Delete,
}

/// The outcome of one operation: the status the single-record call would have answered.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = BatchResult)]
pub struct ItemResult {
    pub index: usize,
    /// What the single-record call would answer: 201, 200, 204, 400, 404, 409, 422.
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorDetail>,
}

#[derive(Debug, Clone, Default, Serialize, ToSchema)]
#[schema(as = BatchSummary)]
pub struct Summary {
    pub created: usize,
    pub replaced: usize,
    pub deleted: usize,
    pub failed: usize,
}

impl Summary {
    pub fn count(&mut self, status: u16) {
        match status {
            201 => self.created += 1,
            200 => self.replaced += 1,
            204 => self.deleted += 1,
            _ => self.failed += 1,
        }
    }
}

type Build = fn(Id, Value) -> Result<Record, ApiError>;
type Patched = fn(&Record, Id, Value) -> Result<Record, ApiError>;

struct Entry {
    kind: Kind,
    build: Build,
    patched: Patched,
}

fn entry<C: Collection>() -> (&'static str, Entry) {
    (
        C::PATH,
        Entry {
            kind: C::KIND,
            build: write::record::<C>,
            patched: write::patched::<C>,
        },
    )
}

fn registry() -> HashMap<&'static str, Entry> {
    HashMap::from([
        entry::<Connections>(),
        entry::<Locations>(),
        entry::<Passes>(),
        entry::<Resources>(),
        entry::<Desks>(),
        entry::<Customers>(),
        entry::<Teams>(),
        entry::<Bookings>(),
        entry::<Contracts>(),
        entry::<PassGrants>(),
        entry::<Visitors>(),
        entry::<Doors>(),
    ])
}

/// An operation checked and turned into a store write, or why it cannot be.
enum Prepared {
    Write(BatchOp),
    Patch {
        kind: Kind,
        key: String,
        id: Id,
        patch: Value,
    },
}

fn link_record(key: &str, body: Option<Value>) -> Result<Record, ApiError> {
    let (kind, item) = link_parts(key)?;
    let body: LinkBody = input::from_value(body.unwrap_or(Value::Null))?;
    body.into_record(kind, item)
}

fn link_parts(key: &str) -> Result<(LinkKind, Id), ApiError> {
    let (kind, item) = key.split_once('/').unwrap_or((key, ""));
    let kind = LinkKind::parse(kind).ok_or_else(|| {
        ApiError::bad_request(
            "invalid_id",
            "id",
            "a link's id is {kind}/{item_id}, kind pass, resource or desk",
        )
    })?;
    let item = crate::query::parse_id("id", item)?;
    Ok((kind, item))
}

fn prepare(reg: &HashMap<&'static str, Entry>, op: Operation) -> Result<Prepared, ApiError> {
    if op.collection == "links" {
        let (kind, item) = link_parts(&op.id)?;
        let key = link_key(kind, item.as_str());
        return match op.op {
            OpKind::Put => Ok(Prepared::Write(BatchOp::Put(Box::new(link_record(
                &op.id, op.body,
            )?)))),
            OpKind::Delete => Ok(Prepared::Write(BatchOp::Delete(Kind::Link, key))),
            OpKind::Patch => Err(ApiError::bad_request(
                "invalid_op",
                "op",
                "a link has one field: put it",
            )),
        };
    }
    let entry = reg.get(op.collection.as_str()).ok_or_else(|| {
        ApiError::bad_request(
            "invalid_collection",
            "collection",
            format!("no collection {:?}", op.collection),
        )
    })?;
    let id = crate::query::parse_id("id", &op.id)?;
    match op.op {
        OpKind::Put => {
            let body = op
                .body
                .ok_or_else(|| ApiError::invalid("body", "a put needs a body"))?;
            Ok(Prepared::Write(BatchOp::Put(Box::new((entry.build)(
                id, body,
            )?))))
        }
        OpKind::Patch => {
            let patch = op
                .body
                .ok_or_else(|| ApiError::invalid("body", "a patch needs a body"))?;
            if !patch.is_object() {
                return Err(ApiError::invalid("body", "a merge patch is a JSON object"));
            }
            Ok(Prepared::Patch {
                kind: entry.kind,
                key: id.to_string(),
                id,
                patch,
            })
        }
        OpKind::Delete => Ok(Prepared::Write(BatchOp::Delete(entry.kind, id.to_string()))),
    }
}

fn store_error(e: StoreError, link: bool) -> ApiError {
    match e {
        // As for `PUT /links/...`: the path names the item.
        StoreError::UnknownReference { kind, id, .. } if link => {
            ApiError::not_found(format_args!("{kind} {id:?}"))
        }
        e => e.into(),
    }
}

/// An operation checked and ready for the store, and whether it is a link's; or why not.
type Slot = Result<(BatchOp, bool), ApiError>;

/// Checks each operation of a chunk, in order; a patch applies to the record as an earlier
/// operation of the chunk leaves it.
async fn prepare_chunk(
    store: &dyn Store,
    reg: &HashMap<&'static str, Entry>,
    chunk: Vec<Value>,
) -> Result<Vec<Slot>, StoreError> {
    // Records written earlier in this chunk, for patches that follow them.
    let mut pending: HashMap<(Kind, String), Record> = HashMap::new();
    let mut slots: Vec<Slot> = Vec::with_capacity(chunk.len());
    for value in chunk {
        let prepared = serde_path_to_error::deserialize::<_, Operation>(value)
            .map_err(|e| {
                let path = e.path().to_string();
                ApiError::invalid(path, e.into_inner().to_string())
            })
            .and_then(|op| {
                let link = op.collection == "links";
                prepare(reg, op).map(|p| (p, link))
            });
        let slot = match prepared {
            Err(e) => Err(e),
            Ok((Prepared::Write(w), link)) => Ok((w, link)),
            Ok((
                Prepared::Patch {
                    kind,
                    key,
                    id,
                    patch,
                },
                _,
            )) => {
                let current = match pending.get(&(kind, key.clone())) {
                    Some(r) => Some(r.clone()),
                    None => store.get(kind, &key).await?,
                };
                match current {
                    None => Err(ApiError::not_found(format_args!(
                        "{} {key:?}",
                        kind.as_str()
                    ))),
                    Some(record) => {
                        let entry = reg
                            .values()
                            .find(|e| e.kind == kind)
                            .expect("every patchable kind is registered");
                        (entry.patched)(&record, id, patch)
                            .map(|r| (BatchOp::Put(Box::new(r)), false))
                    }
                }
            }
        };
        if let Ok((BatchOp::Put(r), _)) = &slot {
            pending.insert((r.kind(), r.key()), (**r).clone());
        }
        slots.push(slot);
    }
    Ok(slots)
}

/// The store writes a dashboard form's operations make, each checked as the batch checks it;
/// or the error of the first that fails.
async fn checked_form(
    st: &AppState,
    operations: Vec<Value>,
) -> Result<Vec<(BatchOp, bool)>, ApiError> {
    prepare_chunk(st.store.as_ref(), &registry(), operations)
        .await?
        .into_iter()
        .collect()
}

/// Checks the operations of a dashboard form as the batch would, without writing them.
pub(crate) async fn check_form(st: &AppState, operations: Vec<Value>) -> Result<(), ApiError> {
    checked_form(st, operations).await.map(|_| ())
}

/// Writes the operations of a dashboard form as the batch does, all or none: nothing is
/// written unless every operation passes the checks, and the store stops at the first write it
/// refuses. The error is that of the first operation that failed.
pub(crate) async fn apply_form(st: &AppState, operations: Vec<Value>) -> Result<(), ApiError> {
    let (ops, links): (Vec<BatchOp>, Vec<bool>) =
        checked_form(st, operations).await?.into_iter().unzip();
    if ops.is_empty() {
        return Ok(());
    }
    let done = st.store.apply_batch(ops, st.clock.now(), true).await?;
    st.wake();
    for (result, link) in done.into_iter().zip(links) {
        result.map_err(|e| store_error(e, link))?;
    }
    Ok(())
}

/// Applies `operations` (each a JSON value, so that one malformed operation is reported in its
/// place) and returns one result per operation, in order.
///
/// With `strict`, the first failing operation ends it: those before it are applied, those
/// after it are not and get no result.
pub async fn apply(
    store: &dyn Store,
    clock: &dyn Clock,
    operations: Vec<Value>,
    strict: bool,
    mut progress: impl FnMut(usize),
) -> Result<Vec<ItemResult>, StoreError> {
    let reg = registry();
    let mut results = Vec::with_capacity(operations.len());
    let mut base = 0;
    let mut chunks = operations.into_iter().peekable();
    while chunks.peek().is_some() {
        let chunk: Vec<Value> = chunks.by_ref().take(CHUNK).collect();
        let n = chunk.len();
        let mut slots = prepare_chunk(store, &reg, chunk).await?;
        if strict && let Some(bad) = slots.iter().position(Result::is_err) {
            // Nothing after the first invalid operation is sent.
            slots.truncate(bad + 1);
        }
        let ops: Vec<BatchOp> = slots
            .iter()
            .filter_map(|s| s.as_ref().ok().map(|(op, _)| op.clone()))
            .collect();
        let mut done = store
            .apply_batch(ops, clock.now(), strict)
            .await?
            .into_iter();
        for (i, slot) in slots.into_iter().enumerate() {
            let index = base + i;
            let (status, error) = match slot {
                Err(e) => (e.status.as_u16(), Some(e.detail())),
                Ok((op, link)) => match done.next() {
                    Some(Ok(BatchDone::Written(w))) => (if w.created { 201 } else { 200 }, None),
                    Some(Ok(BatchDone::Deleted(true))) => (204, None),
                    Some(Ok(BatchDone::Deleted(false))) => {
                        let what = match &op {
                            BatchOp::Delete(k, key) => format!("{} {key:?}", k.as_str()),
                            BatchOp::Put(r) => r.key(),
                        };
                        let e = ApiError::not_found(what);
                        (404, Some(e.detail()))
                    }
                    Some(Err(e)) => {
                        let e = store_error(e, link);
                        (e.status.as_u16(), Some(e.detail()))
                    }
                    // Not applied: an earlier operation failed in a strict run.
                    None => break,
                },
            };
            let failed = error.is_some();
            results.push(ItemResult {
                index,
                status,
                error,
            });
            if strict && failed {
                progress(base + i + 1);
                return Ok(results);
            }
        }
        base += n;
        progress(base);
    }
    Ok(results)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    /// Each an operation; one that is not is reported in its place.
    #[schema(value_type = Vec<Operation>, max_items = 10000)]
    operations: Vec<Value>,
}

#[derive(Serialize, ToSchema)]
pub struct BatchResponse {
    /// One result per operation, in order.
    pub results: Vec<ItemResult>,
    pub summary: Summary,
}

/// Many puts, patches and deletes at once
///
/// Applied in order, 500 to a transaction; each operation stands alone (a failing one changes
/// nothing and has its own result) and a chunk's writes appear together. At most 10,000
/// operations and 32 MiB a request.
#[utoipa::path(post, path = "/api/v1/batch", tag = "batch", operation_id = "batch",
    request_body = BatchRequest,
    responses(
        (status = 200, description = "One result per operation", body = BatchResponse),
        (status = 413, description = "Body over 32 MiB", body = ErrorBody),
        (status = 422, description = "Not a list of operations, or too many", body = ErrorBody),
    ))]
pub async fn batch(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<BatchResponse>, ApiError> {
    let req: BatchRequest = input::json(&headers, body)?;
    if req.operations.len() > MAX_OPERATIONS {
        return Err(ApiError::invalid(
            "operations",
            format!("at most {MAX_OPERATIONS} operations a request; send more requests"),
        ));
    }
    let results = apply(
        st.store.as_ref(),
        st.clock.as_ref(),
        req.operations,
        false,
        |_| {},
    )
    .await?;
    st.wake();
    let mut summary = Summary::default();
    for r in &results {
        summary.count(r.status);
    }
    Ok(Json(BatchResponse { results, summary }))
}
