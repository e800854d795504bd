//! Races and failure policies, each interleaved on purpose with the deterministic harness.

use crate::harness::*;
use crate::provider::ErrorKind;
use doorsync_store::{Kind, Store};
use serde_json::json;
use std::collections::BTreeSet;
use std::sync::atomic::Ordering;

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// A customer `c1` holding pass `p1` (group g1), with `p2` (group g2) managed too.
async fn one_customer() -> Harness {
    let h = Harness::new().await;
    h.pass("p1", "g1").await;
    h.pass("p2", "g2").await;
    h.customer("c1").await;
    h.grant("pg1", "c1", "p1", 48).await;
    h.settle().await;
    h
}

#[tokio::test]
async fn the_audit_never_overwrites_a_reconcile_in_flight() {
    let h = one_customer().await;
    let fake = h.fake();
    let user = h.user_of(&customer("c1")).await.unwrap();
    assert_eq!(fake.members("g1"), set(&[&user]));

    // A reconcile starts (a new name to push) and is held at its provider call...
    h.patch(Kind::Customer, "c1", json!({"name": "Ann Other"}))
        .await;
    let gate = fake.gate("update_user");
    let claims = h.claim(&h.engine).await;
    assert_eq!(claims.len(), 1);
    let engine = h.engine.clone();
    let running = tokio::spawn(async move {
        for c in claims {
            engine.run_one(c).await;
        }
    });
    gate.reached().await;
    // ...while someone adds the customer to g2 by hand and the audit sees it.
    fake.add_by_hand("g2", &user);
    let report = h.engine.audit(&h.connection().await).await.unwrap();
    assert_eq!(report.unexpected_members, 1);
    gate.open();
    running.await.unwrap();

    h.settle().await;
    assert!(
        !fake.members("g2").contains(&user),
        "the hand-made membership was forgotten: {:?}",
        fake.members("g2")
    );
    assert!(fake.members("g1").contains(&user));
}

#[tokio::test]
async fn the_audit_adopts_a_user_only_through_the_subjects_reconcile() {
    let h = one_customer().await;
    let fake = h.fake();
    // A user made by an earlier integration for c2, who is entitled to nothing, sits in g2.
    h.customer("c2").await;
    h.settle().await;
    let old = fake.create_by_hand(Some("c2"));
    fake.add_by_hand("g2", &old);
    h.engine.audit(&h.connection().await).await.unwrap();
    assert_eq!(
        h.user_of(&customer("c2")).await,
        None,
        "the audit wrote the mirror"
    );
    h.settle().await;
    assert_eq!(h.user_of(&customer("c2")).await, Some(old.clone()));
    assert!(!fake.members("g2").contains(&old));
}

#[tokio::test]
async fn one_audit_at_a_time_across_instances() {
    let h = one_customer().await;
    let fake = h.fake();
    let b = h.second_engine("b");
    let gate = fake.gate("group_members:g1");
    let connection = h.connection().await;
    let a = h.engine.clone();
    let first = {
        let connection = connection.clone();
        tokio::spawn(async move { a.audit(&connection).await })
    };
    gate.reached().await;
    let calls = fake.calls();
    let second = b.audit(&connection).await;
    assert!(
        second.is_err(),
        "a second instance audited at the same time"
    );
    assert_eq!(fake.calls(), calls, "the refused audit called the provider");
    gate.open();
    first.await.unwrap().unwrap();
    let reads = fake
        .log()
        .iter()
        .filter(|k| k.starts_with("group_members:"))
        .count();
    // g1, g2 and the visitor group gv: each read once.
    assert_eq!(reads, 3);
    // Once the first is done, the next audit may run anywhere.
    b.audit(&connection).await.unwrap();
}

#[tokio::test]
async fn a_customer_named_like_a_visitor_gets_a_user_of_its_own() {
    let h = Harness::new().await;
    h.pass("p1", "g1").await;
    h.customer("host").await;
    h.customer("visitor:v1").await;
    h.grant("pg1", "visitor:v1", "p1", 48).await;
    h.settle().await;
    let fake = h.fake();
    let cust_user = h.user_of(&customer("visitor:v1")).await.unwrap();
    h.put(
        Kind::Visitor,
        json!({"id": "v1", "name": "Vi Sitor", "email": "vi@example.com",
            "host_customer_id": "host", "location_id": "l1", "arrival": h.now(),
            "departure": h.now() + jiff::SignedDuration::from_hours(2)}),
    )
    .await;
    h.settle().await;
    let visitor_user = h.user_of(&visitor("v1")).await.unwrap();
    assert_ne!(cust_user, visitor_user);
    assert!(fake.members("gv").contains(&visitor_user));
    assert!(!fake.members("gv").contains(&cust_user));
    assert_eq!(
        fake.users()[&cust_user].external_id.as_deref(),
        Some("customer:visitor:v1")
    );
}

#[tokio::test]
async fn a_user_with_an_old_external_id_moves_without_a_gap() {
    let h = Harness::new().await;
    h.pass("p1", "g1").await;
    h.customer("host").await;
    h.customer("visitor:v1").await;
    h.grant("pg1", "visitor:v1", "p1", 48).await;
    h.settle().await;
    let fake = h.fake();
    let user = h.user_of(&customer("visitor:v1")).await.unwrap();
    // As an earlier doorsync left it: the user carries the raw customer id.
    let mut m = h
        .store
        .mirror_user("c1", &customer("visitor:v1"))
        .await
        .unwrap()
        .unwrap();
    m.external_id = None;
    h.overwrite_mirror(&customer("visitor:v1"), Some(&m)).await;
    {
        use crate::provider::{Provider, UserProfile};
        let p = UserProfile::new("visitor:v1".into(), "Ann", None);
        fake.update_user(&user, &p).await.unwrap();
    }
    // The visitor v1 arrives before the customer's user has moved.
    h.put(
        Kind::Visitor,
        json!({"id": "v1", "name": "Vi Sitor", "email": "vi@example.com",
            "host_customer_id": "host", "location_id": "l1", "arrival": h.now(),
            "departure": h.now() + jiff::SignedDuration::from_hours(2)}),
    )
    .await;
    h.settle().await;
    h.advance(2);
    h.settle().await;
    let visitor_user = h.user_of(&visitor("v1")).await.unwrap();
    assert_ne!(visitor_user, user, "the visitor took the customer's user");
    assert_eq!(h.user_of(&customer("visitor:v1")).await, Some(user.clone()));
    assert_eq!(
        fake.users()[&user].external_id.as_deref(),
        Some("customer:visitor:v1")
    );
    // No gap: the customer's user never left g1, and no second user was made for it.
    assert!(
        !fake
            .history()
            .iter()
            .any(|(g, u, added)| g == "g1" && *u == user && !added)
    );
    assert_eq!(fake.users().len(), 2);
}

#[tokio::test]
async fn every_subject_is_looked_at_again_within_the_resync_interval() {
    let h = one_customer().await;
    h.customer("idle").await;
    h.settle().await;
    let row = h
        .store
        .schedule_row(&customer("idle"))
        .await
        .unwrap()
        .unwrap();
    let next = row
        .next_due_at
        .expect("an idle subject is never looked at again");
    let most = h.now() + jiff::SignedDuration::from_hours(4);
    assert!(next <= most, "{next} after {most}");
    // The resync of an unchanged subject costs no provider call.
    let calls = h.fake().calls();
    h.clock.set(next);
    h.settle().await;
    assert_eq!(h.fake().calls(), calls);
}

#[tokio::test]
async fn a_disabled_connection_shows_who_keeps_access_past_their_end() {
    let h = one_customer().await;
    h.patch(Kind::Connection, "c1", json!({"enabled": false}))
        .await;
    h.settle().await;
    h.advance(49 * 3600);
    h.settle().await;
    let fake = h.fake();
    let user = h.user_of(&customer("c1")).await.unwrap();
    assert!(
        fake.members("g1").contains(&user),
        "a disabled connection changed"
    );
    let status = h.engine.status().await.unwrap();
    assert_eq!(status.connections[0].held_past_entitlement, 1);
    assert_eq!(status.held_past_entitlement.len(), 1);
    assert_eq!(status.held_past_entitlement[0].subject, "customer:c1");
    assert_eq!(status.held_past_entitlement[0].group_id, "g1");
    let view = crate::access::access_view(h.store.as_ref(), &customer("c1"), h.now())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(view.held_without_entitlement.len(), 1, "{view:?}");
    let held = &view.held_without_entitlement[0];
    assert_eq!(held.group_id, "g1");
    assert_eq!(held.state, crate::access::HeldState::HeldPastEntitlement);
    assert!(held.since.is_some(), "{view:?}");

    h.patch(Kind::Connection, "c1", json!({"enabled": true}))
        .await;
    h.settle().await;
    assert!(!fake.members("g1").contains(&user));
    let status = h.engine.status().await.unwrap();
    assert_eq!(status.connections[0].held_past_entitlement, 0);
    assert!(status.held_past_entitlement.is_empty());
}

#[tokio::test]
async fn a_404_on_a_removal_is_read_back_before_it_counts() {
    let h = one_customer().await;
    let fake = h.fake();
    let user = h.user_of(&customer("c1")).await.unwrap();
    fake.rule("remove_from_group:g1", Rule::NotFoundButKeep);
    h.advance(49 * 3600);
    h.settle().await;
    assert!(fake.members("g1").contains(&user));
    let m = h
        .store
        .mirror_user("c1", &customer("c1"))
        .await
        .unwrap()
        .unwrap();
    assert!(m.groups.contains("g1"), "the mirror says removed: {m:?}");
    let row = h
        .store
        .schedule_row(&customer("c1"))
        .await
        .unwrap()
        .unwrap();
    assert!(row.last_error.is_some());
    fake.clear_rules();
    h.clock.set(row.next_due_at.unwrap());
    h.settle().await;
    assert!(!fake.members("g1").contains(&user));
}

#[tokio::test]
async fn one_failing_group_does_not_block_the_others() {
    let h = one_customer().await;
    let fake = h.fake();
    h.pass("p3", "g3").await;
    h.grant("pg2", "c1", "p2", 48).await;
    h.grant("pg3", "c1", "p3", 48).await;
    fake.rule("add_to_group:g2", Rule::Fail(ErrorKind::Rejected));
    h.settle().await;
    let user = h.user_of(&customer("c1")).await.unwrap();
    assert!(fake.members("g3").contains(&user), "g3 waited on g2");
    assert!(!fake.members("g2").contains(&user));
    fake.clear_rules();
    let row = h
        .store
        .schedule_row(&customer("c1"))
        .await
        .unwrap()
        .unwrap();
    h.clock.set(row.next_due_at.unwrap());
    h.settle().await;
    assert!(fake.members("g2").contains(&user));
}

#[tokio::test]
async fn a_moved_link_takes_doorsyncs_members_out_of_the_old_group_only() {
    let h = one_customer().await;
    let fake = h.fake();
    let user = h.user_of(&customer("c1")).await.unwrap();
    // c2's user was in g1 before doorsync linked it: not doorsync's doing.
    h.customer("c2").await;
    let theirs = fake.create_by_hand(Some("c2"));
    fake.add_by_hand("g1", &theirs);
    h.grant("pg2", "c2", "p1", 48).await;
    h.settle().await;
    assert_eq!(h.user_of(&customer("c2")).await, Some(theirs.clone()));

    h.link("p1", "g9").await;
    h.settle().await;
    assert!(fake.members("g9").contains(&user));
    assert!(fake.members("g9").contains(&theirs));
    assert!(!fake.members("g1").contains(&user), "left in the old group");
    assert!(
        fake.members("g1").contains(&theirs),
        "a membership doorsync did not make was taken"
    );
}

#[tokio::test]
async fn the_pause_is_per_connection_doubles_per_failed_probe_and_ends_with_one_probe() {
    let h = one_customer().await;
    // A second connection and location, whose provider is down.
    h.put(
        Kind::Connection,
        json!({"id": "c2", "provider": "brivo", "api_url": null, "auth_url": null,
            "credentials": {}, "no_access_policy": "remove_from_groups", "visitor_group_ids": [],
            "exempt_user_ids": [], "redeem_passes_automatically": false,
            "list_doors_in_app": false, "enabled": true}),
    )
    .await;
    h.put(
        Kind::Location,
        json!({"id": "l2", "name": "L2", "timezone": "Europe/London",
            "connection_id": "c2", "site_id": null, "lead": "PT15M", "lag": "PT15M"}),
    )
    .await;
    h.put(
        Kind::Pass,
        json!({"id": "q1", "location_id": "l2", "name": "q1"}),
    )
    .await;
    h.link("q1", "h1").await;
    let down = h.factory.fake("c2");
    down.down.store(true, Ordering::SeqCst);
    for i in 0..5 {
        let c = format!("d{i}");
        h.customer(&c).await;
        h.grant(&format!("dg{i}"), &c, "q1", 48).await;
    }
    h.settle().await;
    let state = h.store.connection_state("c2").await.unwrap();
    assert_eq!(
        state.pauses, 1,
        "workers failing together paused it more than once"
    );
    let first = state.paused_until.unwrap();
    assert_eq!(first, h.now() + jiff::SignedDuration::from_secs(2));
    assert_eq!(h.store.connection_state("c1").await.unwrap().pauses, 0);

    // Another connection's success does not reset this one's backoff.
    h.customer("ok").await;
    h.grant("okg", "ok", "p1", 48).await;
    h.settle().await;

    // When the pause runs out, one probe; it fails, and the pause doubles.
    h.clock.set(first);
    let calls = down.calls();
    h.settle().await;
    assert_eq!(down.calls(), calls, "workers called a paused provider");
    h.engine.housekeeping().await;
    assert_eq!(down.calls(), calls + 1, "one probe");
    let state = h.store.connection_state("c2").await.unwrap();
    assert_eq!(state.pauses, 2);
    let second = state.paused_until.unwrap();
    assert_eq!(second, first + jiff::SignedDuration::from_secs(4));

    // The provider comes back: the next probe resumes the connection, and everyone waiting
    // runs within a second of it.
    down.down.store(false, Ordering::SeqCst);
    h.clock.set(second);
    h.engine.housekeeping().await;
    assert_eq!(
        h.store.connection_state("c2").await.unwrap().paused_until,
        None
    );
    h.advance(1);
    h.settle().await;
    assert_eq!(down.members("h1").len(), 5);
}

#[tokio::test]
async fn the_access_view_tells_held_from_pending_from_failing() {
    use crate::access::{GroupState, access_view};
    let h = one_customer().await;
    let fake = h.fake();
    let view = |h: &Harness| {
        let (store, now) = (h.store.clone(), h.now());
        async move {
            access_view(store.as_ref(), &customer("c1"), now)
                .await
                .unwrap()
                .unwrap()
        }
    };
    let state_of = |v: &crate::access::AccessView, g: &str| {
        v.groups
            .iter()
            .find(|x| x.group_id == g)
            .map(|x| (x.state, x.error.clone()))
    };
    assert_eq!(
        state_of(&view(&h).await, "g1"),
        Some((GroupState::Held, None))
    );
    // Entitled to g2 now, and no reconcile has run yet: pending, not held.
    fake.rule("add_to_group:g2", Rule::Fail(ErrorKind::Rejected));
    h.grant("pg2", "c1", "p2", 48).await;
    assert_eq!(
        state_of(&view(&h).await, "g2"),
        Some((GroupState::Pending, None))
    );
    // The add fails: failing, with the error.
    h.settle().await;
    let (state, error) = state_of(&view(&h).await, "g2").unwrap();
    assert_eq!(state, GroupState::Failing);
    assert!(error.is_some_and(|e| e.contains("g2")));
    assert_eq!(
        state_of(&view(&h).await, "g1"),
        Some((GroupState::Held, None))
    );
}

/// A customer holding pass `p1` (group g1) for 30 days.
async fn long_grant() -> Harness {
    let h = Harness::new().await;
    h.pass("p1", "g1").await;
    h.customer("c1").await;
    h.grant("pg1", "c1", "p1", 30 * 24).await;
    h.settle().await;
    h
}

#[tokio::test]
async fn an_expired_invitation_is_sent_again_at_most_once_per_interval() {
    let h = long_grant().await;
    let fake = h.fake();
    let user = h.user_of(&customer("c1")).await.unwrap();
    assert_eq!(fake.invited(), vec![user.clone()], "first access invites");
    // Pending for a week: read back, nothing sent.
    h.advance(7 * 24 * 3600 + 60);
    h.store.mark_due(&customer("c1"), h.now()).await.unwrap();
    h.settle().await;
    assert_eq!(fake.invited().len(), 1);
    assert!(fake.log().contains(&"invitation_state".to_owned()));
    // It expires unredeemed: at the next look, a week on, a new one goes out.
    fake.expire_invitations();
    h.advance(24 * 3600);
    h.store.mark_due(&customer("c1"), h.now()).await.unwrap();
    h.settle().await;
    assert_eq!(fake.invited().len(), 1, "looked at again within a week");
    h.advance(6 * 24 * 3600 + 60);
    h.store.mark_due(&customer("c1"), h.now()).await.unwrap();
    h.settle().await;
    assert_eq!(fake.invited(), vec![user.clone(), user.clone()]);
    // An operator asks for one now: the pending one is cancelled and a new one sent.
    h.store
        .request_invitation(&customer("c1"), h.now())
        .await
        .unwrap();
    h.settle().await;
    assert_eq!(fake.invited().len(), 3);
    assert!(fake.log().contains(&"cancel_invitation".to_owned()));
    assert_eq!(
        h.store.invitation_requested(&customer("c1")).await.unwrap(),
        None
    );
}

#[tokio::test]
async fn no_passes_left_stops_inviting_not_granting_until_the_allotment_grows() {
    let h = Harness::new().await;
    let fake = h.fake();
    fake.set_passes(1, 1);
    h.pass("p1", "g1").await;
    for c in ["c1", "c2"] {
        h.customer(c).await;
        h.grant(&format!("pg-{c}"), c, "p1", 48).await;
    }
    h.settle().await;
    let (u1, u2) = (
        h.user_of(&customer("c1")).await.unwrap(),
        h.user_of(&customer("c2")).await.unwrap(),
    );
    assert_eq!(fake.members("g1"), set(&[&u1, &u2]), "access is granted");
    assert!(fake.invited().is_empty());
    let invites = fake.log().iter().filter(|k| *k == "invite").count();
    assert_eq!(invites, 1, "one refusal, then no more asking");
    let state = h.store.connection_state("c1").await.unwrap();
    assert!(state.passes_out_since.is_some());
    // The allotment grows: read again after its interval, and both are invited.
    fake.set_passes(10, 1);
    h.advance(601);
    h.engine.housekeeping().await;
    h.settle().await;
    let mut invited = fake.invited();
    invited.sort();
    let mut both = vec![u1, u2];
    both.sort();
    assert_eq!(invited, both);
    let status = h.engine.status().await.unwrap();
    assert_eq!(status.connections[0].mobile_passes.allotted, Some(10));
    assert_eq!(status.connections[0].mobile_passes.out_since, None);
}

#[tokio::test]
async fn a_revocation_due_never_waits_for_workers_busy_with_grants() {
    let h = one_customer().await;
    let fake = h.fake();
    let user = h.user_of(&customer("c1")).await.unwrap();
    // c1's pass now ends within the hour: a revocation is coming.
    let until = h.now() + jiff::SignedDuration::from_hours(1);
    h.patch(Kind::PassGrant, "pg1", json!({"valid_until": until}))
        .await;
    h.settle().await;
    // As many new customers as there are workers, each held at its first access.
    let workers = h.engine.config.workers;
    let gates: Vec<_> = (0..workers).map(|_| fake.gate("add_to_group:g2")).collect();
    for i in 0..workers {
        h.customer(&format!("n{i}")).await;
        h.grant(&format!("pn{i}"), &format!("n{i}"), "p2", 48).await;
    }
    let (stop, rx) = tokio::sync::watch::channel(false);
    let run = tokio::spawn(h.engine.clone().run(rx));
    for g in &gates {
        g.reached().await;
    }
    // Every worker is busy when the revocation falls due.
    h.advance(2 * 3600);
    h.engine.wake();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while fake.members("g1").contains(&user) {
        assert!(
            std::time::Instant::now() < deadline,
            "the revocation waited behind the grants"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    for g in gates {
        g.open();
    }
    let _ = stop.send(true);
    run.await.unwrap();
}

/// A run that stalls past its lease (a suspended VM, a slow disk) is fenced out: its own
/// instance never claims the subject while it still runs, another instance takes it over, and
/// the stalled run's late write is refused, so it cannot save its view over the newer one.
#[tokio::test]
async fn a_stalled_run_is_fenced_out_once_its_lease_is_taken_over() {
    let h = one_customer().await;
    let fake = h.fake();
    let user = h.user_of(&customer("c1")).await.unwrap();
    h.grant("pg2", "c1", "p2", 48).await;
    let gate = fake.gate("add_to_group:g2");
    let claims = h.claim(&h.engine).await;
    assert_eq!(claims.len(), 1);
    let stalled = {
        let engine = h.engine.clone();
        tokio::spawn(async move {
            for c in claims {
                engine.run_one(c).await;
            }
        })
    };
    gate.reached().await;
    // The stall outlasts the lease.
    h.advance(h.engine.config.lease.as_secs() + 1);
    assert!(
        h.claim(&h.engine).await.is_empty(),
        "an instance claimed a subject it is still running"
    );
    let other = h.second_engine("w2");
    let taken = h.claim(&other).await;
    assert_eq!(taken.len(), 1, "the expired lease was not taken over");
    for c in taken {
        other.run_one(c).await;
    }
    assert!(fake.members("g2").contains(&user));
    // The stalled run wakes up: its call goes through, but nothing it writes lands.
    gate.open();
    stalled.await.unwrap();
    let adds = h
        .store
        .audit(
            &doorsync_store::AuditFilter {
                subject: Some("customer:c1".into()),
                operation: Some("add_to_group".into()),
                group_id: Some("g2".into()),
                ..Default::default()
            },
            None,
            10,
        )
        .await
        .unwrap();
    assert_eq!(adds.len(), 1, "the fenced-out run wrote: {adds:?}");
    let row = h
        .store
        .schedule_row(&customer("c1"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.lease_owner, None, "the run that holds it finished");
    assert!(
        row.next_due_at.is_some_and(|t| t <= h.now()),
        "the fenced-out run did not ask for a read-back"
    );
    h.settle().await;
    assert_eq!(fake.members("g2"), set(&[&user]));
    assert_eq!(
        h.store
            .mirror_user("c1", &customer("c1"))
            .await
            .unwrap()
            .unwrap()
            .groups,
        set(&["g1", "g2"])
    );
}
