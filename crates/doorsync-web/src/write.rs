//! The one write path. The API's PUT and PATCH, the batch (and with it `doorsync import`) and
//! every dashboard form that changes a record take their input as the API's body, check it with
//! the collection's rules here and write it through the store, whose rules (references,
//! credentials, limits) hold for every caller: no surface is weaker than another.

use crate::AppState;
use crate::collections::{Collection, LinkBody};
use crate::error::ApiError;
use crate::input;
use doorsync_core::{Id, LinkKind};
use doorsync_store::{Record, StoreError, Written};
use serde_json::Value;

/// The record a body makes, as `PUT` takes it.
pub fn record<C: Collection>(id: Id, body: Value) -> Result<Record, ApiError> {
    C::into_record(id, input::from_value(body)?)
}

/// `current` with a JSON Merge Patch (RFC 7396) applied, checked as a `PUT` of the result.
/// Write-only credentials are not in the body, so a patch brings only those it names.
pub fn patched<C: Collection>(current: &Record, id: Id, patch: Value) -> Result<Record, ApiError> {
    let mut doc = body_of::<C>(current);
    merge_patch(&mut doc, patch);
    record::<C>(id, doc)
}

/// A record shown as its writable body: without its id and the fields the server adds.
pub(crate) fn body_of<C: Collection>(record: &Record) -> Value {
    let mut doc = C::render(record);
    if let Value::Object(fields) = &mut doc {
        fields.remove("id");
        for (name, _) in C::read_only() {
            fields.remove(name);
        }
    }
    doc
}

/// The fields sent replace the stored ones, `null` removes one (back to its default), the rest
/// stay.
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

/// Creates or replaces the record `id` of `C` with `body`.
pub async fn put<C: Collection>(st: &AppState, id: Id, body: Value) -> Result<Written, ApiError> {
    let record = record::<C>(id, body)?;
    save(st, record).await
}

/// Changes the fields of the record `id` of `C` that `patch` names.
pub async fn patch<C: Collection>(
    st: &AppState,
    id: Id,
    patch: Value,
) -> Result<Written, ApiError> {
    patch_then::<C>(st, id, patch, |_| {}).await
}

/// As [`patch`], with `finish` applied to the checked record before it is written: for the one
/// thing no body carries, the refresh token that Brivo's sign-in page gives the dashboard.
pub(crate) async fn patch_then<C: Collection>(
    st: &AppState,
    id: Id,
    patch: Value,
    finish: impl FnOnce(&mut Record),
) -> Result<Written, ApiError> {
    let current = st
        .store
        .get(C::KIND, id.as_str())
        .await?
        .ok_or_else(|| ApiError::not_found(format_args!("{} {id:?}", C::KIND.as_str())))?;
    let mut record = patched::<C>(&current, id, patch)?;
    finish(&mut record);
    save(st, record).await
}

/// Links `item_id` of `kind` to the group `body` names.
pub async fn put_link(
    st: &AppState,
    kind: LinkKind,
    item_id: Id,
    body: Value,
) -> Result<Written, ApiError> {
    let body: LinkBody = input::from_value(body)?;
    let record = body.into_record(kind, item_id.clone())?;
    let written = st
        .store
        .put(record, st.clock.now())
        .await
        .map_err(|e| match e {
            // The path names the item, so an unknown one is a missing resource.
            StoreError::UnknownReference { .. } => {
                ApiError::not_found(format_args!("{} {item_id:?}", kind.as_str()))
            }
            e => e.into(),
        })?;
    st.wake();
    Ok(written)
}

async fn save(st: &AppState, record: Record) -> Result<Written, ApiError> {
    let written = st.store.put(record, st.clock.now()).await?;
    st.wake();
    Ok(written)
}
