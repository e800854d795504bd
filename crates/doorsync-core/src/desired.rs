//! What the provider should hold at an instant, and the next instant that answer changes.
//!
//! The scheduler sleeps until [`next_transition`] and reconciles then, so a transition it
//! misses is a door left open or shut; a spurious one is only a wasted wake-up. Both
//! functions therefore work from the same merged coverage per group.

use crate::entitlement::Entitlement;
use crate::model::ProviderId;
use jiff::Timestamp;
use std::collections::{BTreeMap, BTreeSet};

/// The groups a subject should be in at `t`: the union over every entitlement holding at `t`.
pub fn desired(ents: &[Entitlement], t: Timestamp) -> BTreeSet<ProviderId> {
    ents.iter()
        .filter(|e| e.holds_at(t))
        .map(|e| e.group_id.clone())
        .collect()
}

/// The first instant after `after` at which [`desired`] differs from its value just before.
///
/// Entitlement boundaries are only candidates: a booking ending at 10:00 followed by another
/// for the same room at 10:00, or a pass overlapping a contract on the same group, changes
/// nothing, and waking the scheduler for it would cost a provider round-trip per customer. So
/// each group's entitlements are merged into maximal runs of continuous coverage first, and
/// only the edges of those runs count. O(n log n) in the number of entitlements.
pub fn next_transition(ents: &[Entitlement], after: Timestamp) -> Option<Timestamp> {
    coverage(ents)
        .values()
        .filter_map(|runs| {
            runs.iter()
                .flat_map(|r| std::iter::once(r.from).chain(r.until))
                .find(|&edge| edge > after)
        })
        .min()
}

/// Whether some group's access ends at `at`: such a transition is a revocation, which the
/// scheduler takes before grants when both are due.
pub fn revokes_at(ents: &[Entitlement], at: Timestamp) -> bool {
    coverage(ents)
        .values()
        .any(|runs| runs.iter().any(|r| r.until == Some(at)))
}

/// A maximal run of continuous coverage of one group: overlapping and touching entitlements
/// joined. `until = None` is open-ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Run {
    pub from: Timestamp,
    pub until: Option<Timestamp>,
}

impl Run {
    pub(crate) fn holds_at(&self, t: Timestamp) -> bool {
        self.from <= t && self.until.is_none_or(|u| t < u)
    }

    /// Whether an entitlement lies within this run; runs of a group are disjoint and
    /// separated by gaps, so each non-empty entitlement belongs to exactly one.
    pub(crate) fn contains(&self, e: &Entitlement) -> bool {
        self.holds_at(e.from)
    }
}

/// Each group's runs of coverage, sorted by start, disjoint and never touching.
pub(crate) fn coverage(ents: &[Entitlement]) -> BTreeMap<&str, Vec<Run>> {
    let mut by_group: BTreeMap<&str, Vec<Run>> = BTreeMap::new();
    for e in ents.iter().filter(|e| !e.is_empty()) {
        by_group.entry(&e.group_id).or_default().push(Run {
            from: e.from,
            until: e.until,
        });
    }
    for runs in by_group.values_mut() {
        runs.sort_unstable_by_key(|r| r.from);
        let mut merged: Vec<Run> = Vec::with_capacity(runs.len());
        for r in runs.drain(..) {
            match merged.last_mut() {
                // `<=` joins touching intervals: [a, b) then [b, c) is one run [a, c).
                Some(last) if last.until.is_none_or(|u| r.from <= u) => {
                    last.until = match (last.until, r.until) {
                        (Some(a), Some(b)) => Some(a.max(b)),
                        _ => None,
                    };
                }
                _ => merged.push(r),
            }
        }
        *runs = merged;
    }
    by_group
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entitlement::Cause;
    use crate::ids::Id;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn ent(group: &str, from: &str, until: Option<&str>) -> Entitlement {
        Entitlement {
            group_id: group.into(),
            from: ts(from),
            until: until.map(ts),
            cause: Cause::Visitor {
                visitor_id: Id::parse("v").unwrap(),
            },
        }
    }

    fn set(groups: &[&str]) -> BTreeSet<ProviderId> {
        groups.iter().map(|g| g.to_string()).collect()
    }

    #[test]
    fn a_revocation_is_the_end_of_a_run_not_of_an_overlapped_entitlement() {
        let ents = [
            ent("g1", "2026-01-01T10:00:00Z", Some("2026-01-01T11:00:00Z")),
            ent("g1", "2026-01-01T10:30:00Z", Some("2026-01-01T12:00:00Z")),
            ent("g2", "2026-01-01T13:00:00Z", None),
        ];
        assert!(!revokes_at(&ents, ts("2026-01-01T11:00:00Z")), "g1 goes on");
        assert!(revokes_at(&ents, ts("2026-01-01T12:00:00Z")));
        assert!(!revokes_at(&ents, ts("2026-01-01T13:00:00Z")), "a grant");
    }

    #[test]
    fn desired_is_half_open() {
        let ents = [ent(
            "g1",
            "2026-01-01T10:00:00Z",
            Some("2026-01-01T11:00:00Z"),
        )];
        assert_eq!(desired(&ents, ts("2026-01-01T09:59:59Z")), set(&[]));
        assert_eq!(desired(&ents, ts("2026-01-01T10:00:00Z")), set(&["g1"]));
        assert_eq!(desired(&ents, ts("2026-01-01T10:59:59Z")), set(&["g1"]));
        assert_eq!(desired(&ents, ts("2026-01-01T11:00:00Z")), set(&[]));
    }

    #[test]
    fn desired_is_the_union_and_open_ended_never_ends() {
        let ents = [
            ent("g1", "2026-01-01T10:00:00Z", Some("2026-01-01T11:00:00Z")),
            ent("g2", "2026-01-01T00:00:00Z", None),
            ent("g1", "2026-01-01T10:30:00Z", Some("2026-01-01T12:00:00Z")),
        ];
        assert_eq!(
            desired(&ents, ts("2026-01-01T10:45:00Z")),
            set(&["g1", "g2"])
        );
        assert_eq!(desired(&ents, ts("9000-01-01T00:00:00Z")), set(&["g2"]));
    }

    #[test]
    fn next_transition_finds_starts_and_ends() {
        let ents = [ent(
            "g1",
            "2026-01-01T10:00:00Z",
            Some("2026-01-01T11:00:00Z"),
        )];
        let t = |s| next_transition(&ents, ts(s));
        assert_eq!(t("2026-01-01T00:00:00Z"), Some(ts("2026-01-01T10:00:00Z")));
        assert_eq!(t("2026-01-01T10:00:00Z"), Some(ts("2026-01-01T11:00:00Z")));
        assert_eq!(t("2026-01-01T11:00:00Z"), None);
        assert_eq!(next_transition(&[], ts("2026-01-01T00:00:00Z")), None);
    }

    #[test]
    fn back_to_back_entitlements_for_one_group_are_not_a_transition() {
        let ents = [
            ent("g1", "2026-01-01T10:00:00Z", Some("2026-01-01T11:00:00Z")),
            ent("g1", "2026-01-01T11:00:00Z", Some("2026-01-01T12:00:00Z")),
        ];
        assert_eq!(
            next_transition(&ents, ts("2026-01-01T10:00:00Z")),
            Some(ts("2026-01-01T12:00:00Z"))
        );
    }

    #[test]
    fn an_end_inside_another_entitlement_of_the_same_group_is_not_a_transition() {
        let ents = [
            ent("g1", "2026-01-01T00:00:00Z", None),
            ent("g1", "2026-01-01T10:00:00Z", Some("2026-01-01T11:00:00Z")),
        ];
        assert_eq!(next_transition(&ents, ts("2026-01-01T00:00:00Z")), None);
    }

    #[test]
    fn a_handover_between_groups_is_a_transition() {
        let ents = [
            ent("g1", "2026-01-01T10:00:00Z", Some("2026-01-01T11:00:00Z")),
            ent("g2", "2026-01-01T11:00:00Z", Some("2026-01-01T12:00:00Z")),
        ];
        assert_eq!(
            next_transition(&ents, ts("2026-01-01T10:00:00Z")),
            Some(ts("2026-01-01T11:00:00Z"))
        );
    }

    #[test]
    fn empty_entitlements_never_cause_a_wake_up() {
        let ents = [
            ent("g1", "2026-01-01T10:00:00Z", Some("2026-01-01T10:00:00Z")),
            ent("g1", "2026-01-01T12:00:00Z", Some("2026-01-01T11:00:00Z")),
        ];
        assert_eq!(next_transition(&ents, ts("2026-01-01T00:00:00Z")), None);
        assert!(desired(&ents, ts("2026-01-01T10:00:00Z")).is_empty());
    }

    #[test]
    fn thousands_of_entitlements_are_fast() {
        // 20 000 back-to-back hour bookings on few groups: a quadratic scan would take seconds.
        let start = ts("2026-01-01T00:00:00Z");
        let ents: Vec<_> = (0..20_000i64)
            .map(|i| Entitlement {
                group_id: format!("g{}", i % 3),
                from: start + jiff::SignedDuration::from_hours(i),
                until: Some(start + jiff::SignedDuration::from_hours(i + 3)),
                cause: Cause::Visitor {
                    visitor_id: Id::parse("v").unwrap(),
                },
            })
            .collect();
        let t0 = std::time::Instant::now();
        // Each group has coverage from its first start to its last end; all three start within
        // the first three hours, so after those the only transitions are the final ends.
        assert_eq!(
            next_transition(&ents, start + jiff::SignedDuration::from_hours(5)),
            Some(start + jiff::SignedDuration::from_hours(19_997 + 3))
        );
        assert!(t0.elapsed() < std::time::Duration::from_secs(2));
    }
}
