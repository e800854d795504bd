//! The access view of one subject: what they are entitled to and why (from the rules), set
//! against what Brivo holds (from the mirror) and how their sync stands. One view serves
//! `GET /api/v1/customers/{id}/access` and `doorsync explain`.

use crate::reconcile::load_subject;
use doorsync_core::{AccessState, Reason, Subject, desired, explain};
use doorsync_store::{Kind, MirrorUser, Record, Store, StoreError};
use jiff::Timestamp;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use utoipa::ToSchema;

/// Where an entitled group stands in the provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum GroupState {
    /// Entitled now, and Brivo holds the membership.
    Held,
    /// Entitled now, not yet in Brivo: the engine is on its way.
    Pending,
    /// Entitled now, not in Brivo, and the last attempt failed (see `error`).
    Failing,
    /// Entitled later.
    Due,
    /// The item's location has no connection: nobody gets this group.
    NoConnection,
    /// The connection is disabled: doorsync changes nothing there.
    ConnectionDisabled,
}

/// Where a membership held without entitlement stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HeldState {
    /// The engine is about to remove it.
    RemovalPending,
    /// The last removal failed (see `error`).
    Failing,
    /// The connection is disabled, so it stays past the entitlement's end.
    HeldPastEntitlement,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct GroupView {
    pub group_id: String,
    pub group_name: Option<String>,
    pub connection_id: Option<String>,
    pub state: GroupState,
    pub error: Option<String>,
    /// Held or pending: when the current stretch of entitlement began. Due: when the next does.
    #[schema(value_type = String, format = DateTime)]
    pub from: Timestamp,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub until: Option<Timestamp>,
    /// The entitlements that give it: each with its cause, from and until.
    #[schema(value_type = Vec<ReasonDoc>)]
    pub reasons: Vec<Reason>,
}

/// The schema of an entitlement's reason as `Reason` serializes (doorsync-core knows nothing of
/// OpenAPI); a test holds the two together.
#[derive(Serialize, ToSchema)]
#[schema(as = Reason)]
pub struct ReasonDoc {
    cause: CauseDoc,
    from: Timestamp,
    until: Option<Timestamp>,
}

/// What gives the entitlement: its `kind`, and the ids of the records behind it.
#[derive(Serialize, ToSchema)]
#[schema(as = Cause)]
pub struct CauseDoc {
    kind: CauseKind,
    booking_id: Option<String>,
    resource_id: Option<String>,
    pass_grant_id: Option<String>,
    pass_id: Option<String>,
    contract_id: Option<String>,
    desk_id: Option<String>,
    /// A team contract: the team, and its paying member who holds the contract.
    team_id: Option<String>,
    paying_member_id: Option<String>,
    visitor_id: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CauseKind {
    Booking,
    PassGrant,
    Contract,
    TeamContract,
    Visitor,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct HeldView {
    pub connection_id: String,
    pub group_id: String,
    pub group_name: Option<String>,
    pub state: HeldState,
    pub error: Option<String>,
    /// Since when it has been held past its entitlement (a disabled connection).
    #[schema(value_type = Option<String>, format = DateTime)]
    pub since: Option<Timestamp>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProviderView {
    pub connection_id: String,
    pub user_id: String,
    pub suspended: bool,
    pub groups: BTreeSet<String>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub invited_at: Option<Timestamp>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SyncView {
    #[schema(value_type = Option<String>, format = DateTime)]
    pub next_due_at: Option<Timestamp>,
    pub in_flight: bool,
    pub attempts: i64,
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AccessView {
    #[schema(value_type = String, format = DateTime)]
    pub at: Timestamp,
    /// Entitled now or later, each with where it stands in Brivo.
    pub groups: Vec<GroupView>,
    /// Memberships Brivo holds in groups doorsync manages that no entitlement covers now.
    pub held_without_entitlement: Vec<HeldView>,
    /// The provider users serving the subject, as doorsync last saw them.
    pub provider: Vec<ProviderView>,
    pub sync: Option<SyncView>,
}

struct Conn {
    enabled: bool,
    mirror: Option<MirrorUser>,
    managed: BTreeSet<String>,
}

/// The view of `subject` at `now`; `None` when no such subject exists.
pub async fn access_view(
    store: &dyn Store,
    subject: &Subject,
    now: Timestamp,
) -> Result<Option<AccessView>, StoreError> {
    let (kind, id) = match subject {
        Subject::Customer(id) => (Kind::Customer, id),
        Subject::Visitor(id) => (Kind::Visitor, id),
    };
    if store.get(kind, id.as_str()).await?.is_none() {
        return Ok(None);
    }
    let view = load_subject(store, subject, now).await?;
    let row = store.schedule_row(subject).await?;
    let error = row.as_ref().and_then(|r| r.last_error.clone());
    let held_past = store.held_past(Some(subject), 1000).await?;

    let mut ids: BTreeSet<String> = view.by_connection.keys().map(|c| c.to_string()).collect();
    ids.extend(store.mirror_connections_of(subject).await?);
    let mut conns = BTreeMap::new();
    for c in ids {
        let enabled = matches!(
            store.get(Kind::Connection, &c).await?,
            Some(Record::Connection(x)) if x.enabled
        );
        let mirror = store.mirror_user(&c, subject).await?;
        let mut managed = store.managed_groups(&c).await?;
        managed.extend(mirror.iter().flat_map(|m| m.added.iter().cloned()));
        conns.insert(
            c,
            Conn {
                enabled,
                mirror,
                managed,
            },
        );
    }

    // Only the names this view shows: a directory may list thousands of groups.
    let shown: BTreeSet<String> = view
        .by_connection
        .values()
        .flatten()
        .map(|e| e.group_id.clone())
        .chain(
            conns
                .values()
                .flat_map(|c| c.mirror.iter().flat_map(|m| m.groups.iter().cloned())),
        )
        .collect();
    let names = store.group_names(&shown).await?;

    let mut groups = vec![];
    for g in explain(&view.entitlements, now) {
        let connection = view
            .by_connection
            .iter()
            .find(|(_, ents)| ents.iter().any(|e| e.group_id == g.group_id))
            .map(|(c, _)| c.to_string());
        let conn = connection.as_ref().and_then(|c| conns.get(c));
        let in_brivo = conn
            .and_then(|c| c.mirror.as_ref())
            .is_some_and(|m| m.groups.contains(&g.group_id));
        let state = match (g.state, conn) {
            (AccessState::Due, _) => GroupState::Due,
            (_, None) => GroupState::NoConnection,
            (_, Some(c)) if !c.enabled => GroupState::ConnectionDisabled,
            _ if in_brivo => GroupState::Held,
            _ if error.is_some() => GroupState::Failing,
            _ => GroupState::Pending,
        };
        groups.push(GroupView {
            group_name: names.get(&g.group_id).cloned(),
            connection_id: connection,
            error: (state == GroupState::Failing)
                .then(|| error.clone())
                .flatten(),
            state,
            group_id: g.group_id,
            from: g.from,
            until: g.until,
            reasons: g.reasons,
        });
    }

    let mut held = vec![];
    let mut provider = vec![];
    for (c, conn) in &conns {
        let Some(m) = &conn.mirror else { continue };
        provider.push(ProviderView {
            connection_id: c.clone(),
            user_id: m.user_id.clone(),
            suspended: m.suspended,
            groups: m.groups.clone(),
            invited_at: m.invited_at,
        });
        let ents = view
            .by_connection
            .iter()
            .find(|(id, _)| id.as_str() == c)
            .map(|(_, e)| e.as_slice())
            .unwrap_or(&[]);
        let want = desired(ents, now);
        for g in m
            .groups
            .iter()
            .filter(|g| conn.managed.contains(*g) && !want.contains(*g))
        {
            let since = held_past
                .iter()
                .find(|h| &h.connection_id == c && &h.group_id == g)
                .map(|h| h.since);
            let state = if !conn.enabled {
                HeldState::HeldPastEntitlement
            } else if error.is_some() {
                HeldState::Failing
            } else {
                HeldState::RemovalPending
            };
            held.push(HeldView {
                connection_id: c.clone(),
                group_id: g.clone(),
                group_name: names.get(g).cloned(),
                error: (state == HeldState::Failing)
                    .then(|| error.clone())
                    .flatten(),
                state,
                since,
            });
        }
    }
    Ok(Some(AccessView {
        at: now,
        groups,
        held_without_entitlement: held,
        provider,
        sync: row.map(|r| SyncView {
            next_due_at: r.next_due_at,
            in_flight: r.lease_owner.is_some(),
            attempts: r.attempts,
            last_error: r.last_error,
        }),
    }))
}

#[cfg(test)]
mod schema_tests {
    use doorsync_core::{Cause, Id, Reason};
    use utoipa::PartialSchema;

    /// Every cause serializes to fields the `Cause` schema names, its kind among the schema's.
    #[test]
    fn the_reason_schema_names_every_field_a_reason_has() {
        let schema = serde_json::to_value(super::CauseDoc::schema()).unwrap();
        let kinds = serde_json::to_value(super::CauseKind::schema()).unwrap();
        let id = |s: &str| Id::parse(s).unwrap();
        let causes = [
            Cause::Booking {
                booking_id: id("b"),
                resource_id: id("r"),
            },
            Cause::PassGrant {
                pass_grant_id: id("g"),
                pass_id: id("p"),
            },
            Cause::Contract {
                contract_id: id("c"),
                desk_id: id("d"),
            },
            Cause::TeamContract {
                contract_id: id("c"),
                desk_id: id("d"),
                team_id: id("t"),
                paying_member_id: id("m"),
            },
            Cause::Visitor {
                visitor_id: id("v"),
            },
        ];
        for cause in causes {
            let reason = Reason {
                cause,
                from: jiff::Timestamp::UNIX_EPOCH,
                until: None,
            };
            let v = serde_json::to_value(&reason).unwrap();
            assert_eq!(v.as_object().unwrap().len(), 3, "{v}");
            for (field, value) in v["cause"].as_object().unwrap() {
                assert!(
                    schema["properties"].get(field).is_some(),
                    "{field} is not in Cause"
                );
                if field == "kind" {
                    assert!(kinds["enum"].as_array().unwrap().contains(value), "{value}");
                }
            }
        }
    }
}
