//! Why a subject holds each group, and until when: the read model behind
//! `GET /customers/{id}/access`, the `explain` command and the member app.
//!
//! An operator asking "why can this person open the door?" wants the whole continuous stretch
//! of access, not the one entitlement that happens to hold at this second: a booking that runs
//! into a pass that runs into a contract is one stretch, and its end is when the door actually
//! stops opening. So answers are built from the same merged coverage `next_transition` uses.

use crate::desired::{Run, coverage};
use crate::entitlement::{Cause, Entitlement};
use crate::model::ProviderId;
use jiff::Timestamp;
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AccessState {
    /// Entitled at the instant asked about.
    Held,
    /// Not entitled yet; an entitlement starts later.
    Due,
}

/// One group's access, seen from one instant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupAccess {
    pub group_id: ProviderId,
    pub state: AccessState,
    /// Held: when the current stretch of access began. Due: when the next one begins.
    pub from: Timestamp,
    /// The end of that stretch; `None` when it has no end (an open-ended contract).
    pub until: Option<Timestamp>,
    /// The entitlements that make up the stretch, by start. Some may lie wholly in the future
    /// of a held stretch: they are why it lasts as long as it does.
    pub reasons: Vec<Reason>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reason {
    pub cause: Cause,
    pub from: Timestamp,
    pub until: Option<Timestamp>,
}

/// Every group held at `t`, and every group not held at `t` that some entitlement will give
/// later (its next stretch only), sorted by group id. Groups whose access is all in the past
/// are left out: they explain nothing about the door now.
pub fn explain(ents: &[Entitlement], t: Timestamp) -> Vec<GroupAccess> {
    let mut out = Vec::new();
    for (group, runs) in coverage(ents) {
        let (state, run) = if let Some(run) = runs.iter().find(|r| r.holds_at(t)) {
            (AccessState::Held, *run)
        } else if let Some(run) = runs.iter().find(|r| r.from > t) {
            (AccessState::Due, *run)
        } else {
            continue;
        };
        out.push(GroupAccess {
            group_id: group.to_owned(),
            state,
            from: run.from,
            until: run.until,
            reasons: reasons(ents, group, run),
        });
    }
    out
}

fn reasons(ents: &[Entitlement], group: &str, run: Run) -> Vec<Reason> {
    let mut reasons: Vec<Reason> = ents
        .iter()
        .filter(|e| e.group_id == group && !e.is_empty() && run.contains(e))
        .map(|e| Reason {
            cause: e.cause.clone(),
            from: e.from,
            until: e.until,
        })
        .collect();
    // `None` sorts first as an `Option`, but means "never ends"; map it past every instant.
    reasons.sort_by(|a, b| {
        let key = |r: &Reason| (r.from, r.until.is_none(), r.until);
        key(a).cmp(&key(b)).then_with(|| a.cause.cmp(&b.cause))
    });
    reasons
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::Id;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn booking(id: &str, group: &str, from: &str, until: Option<&str>) -> Entitlement {
        Entitlement {
            group_id: group.into(),
            from: ts(from),
            until: until.map(ts),
            cause: Cause::Booking {
                booking_id: Id::parse(id).unwrap(),
                resource_id: Id::parse("room").unwrap(),
            },
        }
    }

    #[test]
    fn held_runs_to_the_end_of_continuous_coverage() {
        let ents = [
            booking(
                "b1",
                "g1",
                "2026-01-01T09:00:00Z",
                Some("2026-01-01T10:00:00Z"),
            ),
            booking(
                "b2",
                "g1",
                "2026-01-01T10:00:00Z",
                Some("2026-01-01T11:00:00Z"),
            ),
            booking(
                "b3",
                "g1",
                "2026-01-01T10:30:00Z",
                Some("2026-01-01T12:00:00Z"),
            ),
            booking(
                "b4",
                "g1",
                "2026-01-01T13:00:00Z",
                Some("2026-01-01T14:00:00Z"),
            ),
        ];
        let got = explain(&ents, ts("2026-01-01T09:30:00Z"));
        assert_eq!(got.len(), 1);
        let g = &got[0];
        assert_eq!(g.state, AccessState::Held);
        assert_eq!(g.from, ts("2026-01-01T09:00:00Z"));
        assert_eq!(g.until, Some(ts("2026-01-01T12:00:00Z")));
        let ids: Vec<_> = g
            .reasons
            .iter()
            .map(|r| match &r.cause {
                Cause::Booking { booking_id, .. } => booking_id.as_str(),
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(ids, ["b1", "b2", "b3"]);
    }

    #[test]
    fn due_shows_the_next_stretch_and_past_groups_are_left_out() {
        let ents = [
            booking(
                "old",
                "g0",
                "2025-01-01T09:00:00Z",
                Some("2025-01-01T10:00:00Z"),
            ),
            booking("b1", "g2", "2026-01-02T09:00:00Z", None),
            booking(
                "b2",
                "g1",
                "2026-01-01T09:00:00Z",
                Some("2026-01-01T10:00:00Z"),
            ),
            booking(
                "b3",
                "g2",
                "2026-01-03T09:00:00Z",
                Some("2026-01-04T09:00:00Z"),
            ),
        ];
        let got = explain(&ents, ts("2026-01-01T09:30:00Z"));
        let summary: Vec<_> = got
            .iter()
            .map(|g| {
                (
                    g.group_id.as_str(),
                    g.state,
                    g.from,
                    g.until,
                    g.reasons.len(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                (
                    "g1",
                    AccessState::Held,
                    ts("2026-01-01T09:00:00Z"),
                    Some(ts("2026-01-01T10:00:00Z")),
                    1
                ),
                ("g2", AccessState::Due, ts("2026-01-02T09:00:00Z"), None, 2),
            ]
        );
        // Reasons come by start: the open-ended b1 before b3.
        assert_eq!(got[1].reasons[0].until, None);
        assert_eq!(got[1].reasons[1].from, ts("2026-01-03T09:00:00Z"));
    }

    #[test]
    fn serializes_in_snake_case() {
        let ents = [booking("b1", "g1", "2026-01-01T09:00:00Z", None)];
        let json = serde_json::to_value(explain(&ents, ts("2026-01-01T09:00:00Z"))).unwrap();
        assert_eq!(
            json,
            serde_json::json!([{
                "group_id": "g1",
                "state": "held",
                "from": "2026-01-01T09:00:00Z",
                "until": null,
                "reasons": [{
                    "cause": {"kind": "booking", "booking_id": "b1", "resource_id": "room"},
                    "from": "2026-01-01T09:00:00Z",
                    "until": null,
                }],
            }])
        );
    }
}
