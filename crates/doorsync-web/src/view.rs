//! What the API answers, as types: each serializes the body and derives (or, for the generic
//! ones, builds) its own schema, so the description cannot say something the server does not.

use crate::collections::Collection;
use crate::schema::*;
use doorsync_core::Link;
use doorsync_store::Record;
use jiff::Timestamp;
use serde::{Serialize, Serializer};
use serde_json::Value;
use std::borrow::Cow;
use std::marker::PhantomData;
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Schema, SchemaType, Type};
use utoipa::openapi::{Ref, RefOr};
use utoipa::{PartialSchema, ToSchema};

/// A page of a list, with the cursor of the next.
#[derive(Serialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// `items` holds one more than `limit` when there is a next page; `key` makes the cursor
    /// of the last one shown.
    pub fn of(mut items: Vec<T>, limit: u32, key: impl Fn(&T) -> String) -> Self {
        let more = items.len() > limit as usize;
        items.truncate(limit as usize);
        let next_cursor = if more { items.last().map(key) } else { None };
        Page { items, next_cursor }
    }

    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page {
            items: self.items.into_iter().map(f).collect(),
            next_cursor: self.next_cursor,
        }
    }
}

impl<T: ToSchema> PartialSchema for Page<T> {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .property(
                "items",
                ArrayBuilder::new().items(Ref::from_schema_name(T::name())),
            )
            .required("items")
            .property(
                "next_cursor",
                ObjectBuilder::new()
                    .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
                    .description(Some(
                        "Pass as `cursor` for the next page; null on the last page",
                    )),
            )
            .required("next_cursor")
            .into()
    }
}

impl<T: ToSchema> ToSchema for Page<T> {
    fn name() -> Cow<'static, str> {
        format!("{}Page", T::name()).into()
    }

    fn schemas(out: &mut Vec<(String, RefOr<Schema>)>) {
        out.push((T::name().into_owned(), T::schema()));
        T::schemas(out);
    }
}

// The pages the annotated handlers answer: `#[utoipa::path]` names a generic body by an alias.
pub type LinkPage = Page<LinkView>;
pub type AuditItemPage = Page<AuditItem>;
pub type CheckinPage = Page<doorsync_store::Checkin>;
pub type FailedCheckinPage = Page<doorsync_store::FailedCheckin>;
pub type DoorEventPage = Page<doorsync_store::DoorEvent>;

/// A record of collection `C` as shown: the body's fields (write-only ones never sent), its id,
/// and what the server adds. The body is `C::render`'s, the schema is built from `C::Body`'s.
pub struct Shown<C>(Value, PhantomData<C>);

impl<C: Collection> Shown<C> {
    pub fn of(record: &Record) -> Self {
        Shown(C::render(record), PhantomData)
    }
}

impl<C> Serialize for Shown<C> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<C: Collection> PartialSchema for Shown<C> {
    fn schema() -> RefOr<Schema> {
        // A copy of the body's object rather than an allOf of it: the body refuses unknown
        // fields, and an allOf would refuse the id with them.
        let RefOr::T(Schema::Object(mut o)) = C::Body::schema() else {
            return C::Body::schema();
        };
        // Closed, as the body is (the copy keeps its `additionalProperties: false`): a field the
        // server shows that is not described here fails the fuzzer and the contract test.
        o.properties.insert(
            "id".into(),
            ObjectBuilder::new()
                .schema_type(Type::String)
                .read_only(true)
                .into(),
        );
        o.required.insert(0, "id".into());
        for (name, schema) in C::read_only() {
            o.properties.insert(name.into(), RefOr::T(schema));
        }
        Schema::Object(o).into()
    }
}

impl<C: Collection> ToSchema for Shown<C> {
    fn name() -> Cow<'static, str> {
        C::TITLE.into()
    }

    fn schemas(out: &mut Vec<(String, RefOr<Schema>)>) {
        C::Body::schemas(out);
    }
}

/// An inventory item's link to the access group it opens.
#[derive(Serialize, ToSchema)]
#[schema(as = Link)]
pub struct LinkView {
    #[schema(schema_with = link_kind_schema)]
    pub kind: doorsync_core::LinkKind,
    pub item_id: String,
    pub group_id: String,
}

impl LinkView {
    pub fn of(record: &Record) -> Option<Self> {
        let Record::Link(Link {
            kind,
            item_id,
            group_id,
        }) = record
        else {
            return None;
        };
        Some(LinkView {
            kind: *kind,
            item_id: item_id.to_string(),
            group_id: group_id.to_string(),
        })
    }
}

/// A subject's access: each group entitled now or later and where it stands in Brivo
/// (`held`, `pending`, `failing` with its error, `due`, `no_connection`,
/// `connection_disabled`), the memberships Brivo holds that no entitlement covers (removal
/// pending, failing, or held past the entitlement while the connection is disabled), the Brivo
/// users serving the subject, and its sync. The same view `doorsync explain` prints.
#[derive(Serialize, ToSchema)]
#[schema(as = Access)]
pub struct AccessOut {
    /// For a customer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub customer_id: Option<String>,
    /// For a visitor.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub visitor_id: Option<String>,
    #[serde(flatten)]
    pub view: doorsync_engine::access::AccessView,
}

/// A new Mobile Pass invitation was asked for.
#[derive(Serialize, ToSchema)]
pub struct InvitationRequested {
    pub customer_id: String,
    pub requested_at: Timestamp,
}

/// The groups, sites and doors read from a connection's provider, to link items to.
#[derive(Serialize, ToSchema)]
pub struct Directory {
    /// When the directory was last read; null before the first read.
    pub read_at: Option<Timestamp>,
    pub groups: Vec<DirectoryEntry>,
    pub sites: Vec<DirectoryEntry>,
    pub doors: Vec<DirectoryEntry>,
}

#[derive(Serialize, ToSchema)]
pub struct DirectoryEntry {
    /// The provider's id.
    pub id: String,
    pub name: String,
    /// A door's site.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub site_id: Option<String>,
}

/// Who is in now, per location.
#[derive(Serialize, ToSchema)]
pub struct Presence {
    pub at: Timestamp,
    pub locations: Vec<LocationPresence>,
}

#[derive(Serialize, ToSchema)]
pub struct LocationPresence {
    pub location_id: String,
    pub name: String,
    /// The location's local date now.
    pub local_date: String,
    pub count: usize,
    pub present: Vec<Present>,
}

#[derive(Serialize, ToSchema)]
pub struct Present {
    pub customer_id: String,
    pub checked_in_at: Timestamp,
    /// `booking`, `contract`, `pass`, `pass_day` or `same_day`.
    pub covered_kind: String,
    pub covered_id: Option<String>,
}

/// A resync under way.
#[derive(Serialize, ToSchema)]
pub struct ResyncStarted {
    /// `started`.
    pub status: &'static str,
}

/// A resync done: one report per enabled connection.
#[derive(Serialize, ToSchema)]
pub struct ResyncDone {
    pub audits: Vec<ResyncResult>,
}

/// A connection's audit report, or why its audit failed.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum ResyncResult {
    Done(doorsync_engine::drift::AuditReport),
    Failed {
        connection_id: String,
        error: String,
    },
}

/// An audit log entry, with its group's name from the connection's directory.
#[derive(Serialize, ToSchema)]
pub struct AuditItem {
    #[serde(flatten)]
    pub entry: doorsync_store::AuditEntry,
    pub group_name: Option<String>,
}
