//! The difference between what a provider user holds and what the subject is entitled to, as
//! a list of provider operations (DESIGN.md §1, "No-access policy" and "Ownership").
//!
//! The plan is computed from the provider's actual state, not from what doorsync last did,
//! so the same function repairs drift (a group edited by hand) and is idempotent: applying a
//! plan and diffing again yields nothing to do.

use crate::model::{NoAccessPolicy, ProviderId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// The provider user as doorsync sees it: only what the plan depends on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderUser {
    pub id: ProviderId,
    pub external_id: Option<String>,
    pub suspended: bool,
    pub groups: BTreeSet<ProviderId>,
}

/// The connection settings that decide how a difference is closed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    pub no_access: NoAccessPolicy,
    /// Provider users doorsync never changes (staff, cleaners), even in managed groups.
    pub exempt_user_ids: BTreeSet<ProviderId>,
    /// Groups doorsync owns: every linked group plus the visitor groups. Any other group a
    /// user is in belongs to the operator and is left alone.
    pub managed_groups: BTreeSet<ProviderId>,
}

/// One provider call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", content = "group_id", rename_all = "snake_case")]
pub enum Op {
    /// Create the provider user, or link an existing one (found by `externalId`, then by
    /// e-mail when the setting allows), so a subject never gets two users.
    CreateUser,
    AddToGroup(ProviderId),
    RemoveFromGroup(ProviderId),
    Suspend,
    Reinstate,
    DeleteUser,
}

/// Provider operations to run in order.
///
/// Order: `CreateUser`, then every `RemoveFromGroup`, then `Reinstate`, then every
/// `AddToGroup`, then `Suspend` (or a lone `DeleteUser`); groups in id order within each kind.
/// Revocations come before anything that grants, so a plan interrupted half-way (a provider
/// outage, a crash) leaves the user with less access than either end state, never more.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub ops: Vec<Op>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// What the provider holds after the plan runs, given what it held before: a pure model
    /// of the provider, so properties of `diff` can be checked without one and simulations
    /// can run without the network.
    ///
    /// `CreateUser` on no user makes one with id `"new"`, no groups, not suspended; on an
    /// existing user it links it and changes nothing. Group and status operations on no user
    /// do nothing, as a provider would refuse them.
    pub fn apply(&self, actual: Option<&ProviderUser>) -> Option<ProviderUser> {
        let mut user = actual.cloned();
        for op in &self.ops {
            match (op, &mut user) {
                (Op::CreateUser, None) => {
                    user = Some(ProviderUser {
                        id: "new".into(),
                        external_id: None,
                        suspended: false,
                        groups: BTreeSet::new(),
                    });
                }
                (Op::CreateUser, Some(_)) => {}
                (Op::DeleteUser, _) => user = None,
                (_, None) => {}
                (Op::AddToGroup(g), Some(u)) => {
                    u.groups.insert(g.clone());
                }
                (Op::RemoveFromGroup(g), Some(u)) => {
                    u.groups.remove(g);
                }
                (Op::Suspend, Some(u)) => u.suspended = true,
                (Op::Reinstate, Some(u)) => u.suspended = false,
            }
        }
        user
    }
}

/// The operations that bring `actual` in line with `desired` under `policy`.
///
/// Only managed groups are compared: a desired group that is not managed is ignored (doorsync
/// would not own it after adding it), and an unmanaged group the user holds is the operator's.
/// An exempt user gets an empty plan whatever they hold.
///
/// A suspended user is reinstated only under the `suspend` policy: that is the only case in
/// which doorsync did the suspending. A user suspended by hand under another policy stays
/// suspended; the operator had a reason.
pub fn diff(
    desired: &BTreeSet<ProviderId>,
    actual: Option<&ProviderUser>,
    policy: &Policy,
) -> Plan {
    let want: BTreeSet<&ProviderId> = desired.intersection(&policy.managed_groups).collect();
    let mut ops = Vec::new();

    let Some(user) = actual else {
        if !want.is_empty() {
            ops.push(Op::CreateUser);
            ops.extend(want.into_iter().cloned().map(Op::AddToGroup));
        }
        return Plan { ops };
    };

    if policy.exempt_user_ids.contains(&user.id) {
        return Plan { ops };
    }

    let held: BTreeSet<&ProviderId> = user.groups.intersection(&policy.managed_groups).collect();

    if want.is_empty() && policy.no_access == NoAccessPolicy::Delete {
        // Deleting takes every membership with it; removing groups first would be calls
        // for nothing.
        ops.push(Op::DeleteUser);
        return Plan { ops };
    }

    ops.extend(
        held.difference(&want)
            .map(|g| Op::RemoveFromGroup((*g).clone())),
    );
    let suspend_policy = policy.no_access == NoAccessPolicy::Suspend;
    if want.is_empty() {
        if suspend_policy && !user.suspended {
            ops.push(Op::Suspend);
        }
    } else {
        if suspend_policy && user.suspended {
            ops.push(Op::Reinstate);
        }
        ops.extend(want.difference(&held).map(|g| Op::AddToGroup((*g).clone())));
    }
    Plan { ops }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(groups: &[&str]) -> BTreeSet<ProviderId> {
        groups.iter().map(|g| g.to_string()).collect()
    }

    fn user(groups: &[&str], suspended: bool) -> ProviderUser {
        ProviderUser {
            id: "u1".into(),
            external_id: Some("cust-1".into()),
            suspended,
            groups: set(groups),
        }
    }

    fn policy(no_access: NoAccessPolicy) -> Policy {
        Policy {
            no_access,
            exempt_user_ids: set(&["staff"]),
            managed_groups: set(&["m1", "m2", "m3"]),
        }
    }

    fn add(g: &str) -> Op {
        Op::AddToGroup(g.into())
    }

    fn remove(g: &str) -> Op {
        Op::RemoveFromGroup(g.into())
    }

    #[test]
    fn no_user_and_nothing_desired_is_nothing_to_do() {
        let p = policy(NoAccessPolicy::RemoveFromGroups);
        assert!(diff(&set(&[]), None, &p).is_empty());
        // Unmanaged desired groups do not count as access.
        assert!(diff(&set(&["other"]), None, &p).is_empty());
    }

    #[test]
    fn first_access_creates_the_user_then_adds_groups_in_order() {
        let p = policy(NoAccessPolicy::RemoveFromGroups);
        let plan = diff(&set(&["m2", "m1", "other"]), None, &p);
        assert_eq!(plan.ops, vec![Op::CreateUser, add("m1"), add("m2")]);
        let after = plan.apply(None).unwrap();
        assert_eq!(after.groups, set(&["m1", "m2"]));
        assert!(diff(&set(&["m1", "m2"]), Some(&after), &p).is_empty());
    }

    #[test]
    fn removes_come_before_adds_and_unmanaged_groups_are_untouched() {
        let p = policy(NoAccessPolicy::RemoveFromGroups);
        let u = user(&["m1", "m3", "staff-room"], false);
        let plan = diff(&set(&["m1", "m2"]), Some(&u), &p);
        assert_eq!(plan.ops, vec![remove("m3"), add("m2")]);
        assert_eq!(
            plan.apply(Some(&u)).unwrap().groups,
            set(&["m1", "m2", "staff-room"])
        );
    }

    #[test]
    fn in_step_is_an_empty_plan() {
        for policy_kind in [
            NoAccessPolicy::RemoveFromGroups,
            NoAccessPolicy::Suspend,
            NoAccessPolicy::Delete,
        ] {
            let u = user(&["m1", "other"], false);
            assert!(diff(&set(&["m1"]), Some(&u), &policy(policy_kind)).is_empty());
        }
    }

    #[test]
    fn remove_from_groups_policy_leaves_the_user_in_place() {
        let p = policy(NoAccessPolicy::RemoveFromGroups);
        let u = user(&["m1", "m2", "other"], false);
        let plan = diff(&set(&[]), Some(&u), &p);
        assert_eq!(plan.ops, vec![remove("m1"), remove("m2")]);
        let after = plan.apply(Some(&u)).unwrap();
        assert_eq!(after.groups, set(&["other"]));
        assert!(!after.suspended);
    }

    #[test]
    fn suspend_policy_removes_groups_then_suspends_once() {
        let p = policy(NoAccessPolicy::Suspend);
        let u = user(&["m1", "other"], false);
        let plan = diff(&set(&[]), Some(&u), &p);
        assert_eq!(plan.ops, vec![remove("m1"), Op::Suspend]);
        let after = plan.apply(Some(&u)).unwrap();
        assert!(after.suspended);
        assert!(diff(&set(&[]), Some(&after), &p).is_empty());
    }

    #[test]
    fn suspend_policy_reinstates_when_access_returns() {
        let p = policy(NoAccessPolicy::Suspend);
        let u = user(&["m3"], true);
        let plan = diff(&set(&["m1"]), Some(&u), &p);
        assert_eq!(plan.ops, vec![remove("m3"), Op::Reinstate, add("m1")]);
        let after = plan.apply(Some(&u)).unwrap();
        assert!(!after.suspended);
        assert_eq!(after.groups, set(&["m1"]));
    }

    #[test]
    fn reinstate_only_under_the_suspend_policy() {
        // Under another policy doorsync never suspends, so a suspension is the operator's.
        let p = policy(NoAccessPolicy::RemoveFromGroups);
        let u = user(&[], true);
        assert_eq!(diff(&set(&["m1"]), Some(&u), &p).ops, vec![add("m1")]);
    }

    #[test]
    fn delete_policy_deletes_only() {
        let p = policy(NoAccessPolicy::Delete);
        let u = user(&["m1", "other"], false);
        let plan = diff(&set(&[]), Some(&u), &p);
        assert_eq!(plan.ops, vec![Op::DeleteUser]);
        assert_eq!(plan.apply(Some(&u)), None);
        assert!(diff(&set(&[]), None, &p).is_empty());
        // Access returns: created again.
        assert_eq!(
            diff(&set(&["m1"]), None, &p).ops,
            vec![Op::CreateUser, add("m1")]
        );
    }

    #[test]
    fn exempt_users_are_never_touched() {
        for policy_kind in [
            NoAccessPolicy::RemoveFromGroups,
            NoAccessPolicy::Suspend,
            NoAccessPolicy::Delete,
        ] {
            let p = policy(policy_kind);
            let staff = ProviderUser {
                id: "staff".into(),
                external_id: None,
                suspended: true,
                groups: set(&["m1", "m2"]),
            };
            assert!(diff(&set(&[]), Some(&staff), &p).is_empty());
            assert!(diff(&set(&["m3"]), Some(&staff), &p).is_empty());
        }
    }

    #[test]
    fn unmanaged_desired_groups_are_ignored() {
        let p = policy(NoAccessPolicy::RemoveFromGroups);
        let u = user(&["m1"], false);
        assert!(diff(&set(&["m1", "elsewhere"]), Some(&u), &p).is_empty());
    }

    #[test]
    fn ops_serialize_with_a_snake_case_tag() {
        let plan = Plan {
            ops: vec![Op::CreateUser, add("42"), Op::Suspend],
        };
        assert_eq!(
            serde_json::to_value(&plan).unwrap(),
            serde_json::json!({"ops": [
                {"op": "create_user"},
                {"op": "add_to_group", "group_id": "42"},
                {"op": "suspend"},
            ]})
        );
    }
}
