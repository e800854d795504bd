//! Properties of the scheduling and planning core that example tests cannot cover: the
//! scheduler must never sleep through a change of access, and a plan must always land the
//! provider exactly on the entitlement, touching nothing doorsync does not own.

use doorsync_core::{
    Cause, Entitlement, Id, NoAccessPolicy, Op, Plan, Policy, ProviderId, ProviderUser, Subject,
    desired, diff, next_transition,
};
use jiff::{SignedDuration, Timestamp};
use proptest::prelude::*;
use std::collections::BTreeSet;

/// Minutes after a fixed origin: a small range so boundaries collide often (back-to-back and
/// overlapping entitlements, boundaries equal to the instant asked about).
fn at(minute: i64) -> Timestamp {
    Timestamp::from_second(1_780_000_000).unwrap() + SignedDuration::from_mins(minute)
}

fn entitlement() -> impl Strategy<Value = Entitlement> {
    (
        prop::sample::select(vec!["a", "b", "c"]),
        0i64..40,
        // Lengths below zero give empty or inverted entitlements, which must be ignored.
        prop::option::weighted(0.85, -3i64..20),
    )
        .prop_map(|(group, from, len)| Entitlement {
            group_id: group.into(),
            from: at(from),
            until: len.map(|l| at(from + l)),
            cause: Cause::Visitor {
                visitor_id: Id::parse("v").unwrap(),
            },
        })
}

fn entitlements() -> impl Strategy<Value = Vec<Entitlement>> {
    prop::collection::vec(entitlement(), 0..12)
}

/// Instants worth checking in [lo, hi): every whole and half minute, since every boundary
/// falls on a whole minute.
fn samples(lo: Timestamp, hi: Timestamp) -> impl Iterator<Item = Timestamp> {
    std::iter::successors(Some(lo), |t| Some(*t + SignedDuration::from_secs(30)))
        .take_while(move |t| *t < hi)
}

const TICK: SignedDuration = SignedDuration::from_nanos(1);

proptest! {
    #[test]
    fn next_transition_is_never_later_than_a_change(
        ents in entitlements(),
        t1 in -5i64..65,
        gap in 1i64..30,
    ) {
        let (t1, t2) = (at(t1), at(t1 + gap));
        let before = desired(&ents, t1);
        if before != desired(&ents, t2) {
            let x = next_transition(&ents, t1);
            prop_assert!(x.is_some());
            let x = x.unwrap();
            prop_assert!(t1 < x && x <= t2, "t1={t1} x={x} t2={t2}");
        }
    }

    #[test]
    fn desired_is_constant_until_next_transition_and_changes_there(
        ents in entitlements(),
        t1 in -5i64..65,
    ) {
        let t1 = at(t1);
        let before = desired(&ents, t1);
        match next_transition(&ents, t1) {
            Some(x) => {
                prop_assert!(x > t1);
                for s in samples(t1, x) {
                    prop_assert_eq!(&desired(&ents, s), &before, "at {}", s);
                }
                prop_assert_eq!(&desired(&ents, x - TICK), &before);
                prop_assert_ne!(&desired(&ents, x), &before, "no change at {}", x);
            }
            None => {
                for s in samples(t1, at(100)) {
                    prop_assert_eq!(&desired(&ents, s), &before, "at {}", s);
                }
            }
        }
    }
}

const UNIVERSE: [&str; 5] = ["m1", "m2", "m3", "u1", "u2"];

fn groups() -> impl Strategy<Value = BTreeSet<ProviderId>> {
    prop::sample::subsequence(UNIVERSE.to_vec(), 0..=UNIVERSE.len())
        .prop_map(|gs| gs.into_iter().map(String::from).collect())
}

fn no_access() -> impl Strategy<Value = NoAccessPolicy> {
    prop::sample::select(vec![
        NoAccessPolicy::RemoveFromGroups,
        NoAccessPolicy::Suspend,
        NoAccessPolicy::Delete,
    ])
}

fn policy() -> impl Strategy<Value = Policy> {
    (
        no_access(),
        prop::sample::subsequence(vec!["staff", "cleaner"], 0..=2),
        groups(),
    )
        .prop_map(|(no_access, exempt, managed)| Policy {
            no_access,
            exempt_user_ids: exempt.into_iter().map(String::from).collect(),
            managed_groups: managed,
        })
}

fn provider_user() -> impl Strategy<Value = Option<ProviderUser>> {
    prop::option::of(
        (
            prop::sample::select(vec!["u-1", "staff"]),
            any::<bool>(),
            groups(),
        )
            .prop_map(|(id, suspended, groups)| ProviderUser {
                id: id.into(),
                external_id: Some("c1".into()),
                suspended,
                groups,
            }),
    )
}

fn managed_part(groups: &BTreeSet<ProviderId>, policy: &Policy) -> BTreeSet<ProviderId> {
    groups
        .intersection(&policy.managed_groups)
        .cloned()
        .collect()
}

fn unmanaged_part(groups: &BTreeSet<ProviderId>, policy: &Policy) -> BTreeSet<ProviderId> {
    groups.difference(&policy.managed_groups).cloned().collect()
}

proptest! {
    #[test]
    fn a_plan_lands_on_the_entitlement_and_leaves_the_rest_alone(
        want in groups(),
        actual in provider_user(),
        policy in policy(),
    ) {
        let plan = diff(&want, actual.as_ref(), &policy);
        let after = plan.apply(actual.as_ref());

        if let Some(u) = &actual && policy.exempt_user_ids.contains(&u.id) {
            prop_assert!(plan.is_empty());
            prop_assert_eq!(after, actual);
            return Ok(());
        }

        let target = managed_part(&want, &policy);
        let kept = actual
            .as_ref()
            .map(|u| unmanaged_part(&u.groups, &policy))
            .unwrap_or_default();
        if !target.is_empty() {
            let u = after.as_ref().expect("a user when access is due");
            prop_assert_eq!(managed_part(&u.groups, &policy), target);
            prop_assert_eq!(unmanaged_part(&u.groups, &policy), kept);
            let was_suspended = actual.as_ref().is_some_and(|u| u.suspended);
            let expect_suspended = was_suspended && policy.no_access != NoAccessPolicy::Suspend;
            prop_assert_eq!(u.suspended, expect_suspended);
        } else {
            match (policy.no_access, &actual, &after) {
                (_, None, None) => prop_assert!(plan.is_empty()),
                (NoAccessPolicy::Delete, Some(_), None) => {}
                (NoAccessPolicy::RemoveFromGroups, Some(before), Some(u)) => {
                    prop_assert_eq!(&u.groups, &kept);
                    prop_assert_eq!(u.suspended, before.suspended);
                }
                (NoAccessPolicy::Suspend, Some(_), Some(u)) => {
                    prop_assert_eq!(&u.groups, &kept);
                    prop_assert!(u.suspended);
                }
                other => prop_assert!(false, "unexpected outcome {:?}", other),
            }
        }

        // Idempotent: once applied, nothing is left to do.
        let again = diff(&want, after.as_ref(), &policy);
        prop_assert!(again.is_empty(), "second plan {:?}", again);
    }

    #[test]
    fn every_op_changes_something_and_revocations_come_first(
        want in groups(),
        actual in provider_user(),
        policy in policy(),
    ) {
        let plan = diff(&want, actual.as_ref(), &policy);
        // One provider call per change: no op is a no-op on the state it meets.
        let mut state = actual.clone();
        for op in &plan.ops {
            let next = Plan { ops: vec![op.clone()] }.apply(state.as_ref());
            prop_assert_ne!(&next, &state, "{:?} changed nothing", op);
            state = next;
        }
        // Nothing grants before every revocation is done.
        let first_grant = plan
            .ops
            .iter()
            .position(|op| matches!(op, Op::AddToGroup(_) | Op::Reinstate));
        let last_revoke = plan
            .ops
            .iter()
            .rposition(|op| matches!(op, Op::RemoveFromGroup(_)));
        if let (Some(g), Some(r)) = (first_grant, last_revoke) {
            prop_assert!(r < g, "{:?}", plan.ops);
        }
    }
}

fn subject() -> impl Strategy<Value = Subject> {
    // Short ids over a small alphabet with colons, so prefixes like `visitor:` collide often.
    (
        any::<bool>(),
        "(visitor:|customer:)?(visitor:|customer:)?[a-c:]{1,3}",
    )
        .prop_map(|(v, s)| {
            let id = Id::parse(&s).unwrap();
            if v {
                Subject::Visitor(id)
            } else {
                Subject::Customer(id)
            }
        })
}

proptest! {
    /// No two subjects share a provider user's `externalId`, and each reads back as itself.
    #[test]
    fn external_ids_are_one_to_one(a in subject(), b in subject()) {
        prop_assert_eq!(Subject::from_external_id(&a.external_id()), Some(a.clone()));
        if a != b {
            prop_assert_ne!(a.external_id(), b.external_id());
        }
    }
}
