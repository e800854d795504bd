//! Every resource call doorsync uses, against the emulator's seeded demo account.

use jiff::{SignedDuration, Timestamp};

use super::{calls, start};
use crate::{
    Criterion, Email, ErrorKind, EventQuery, Filter, InvitationStatus, Language,
    NewEventSubscription, NewInvitation, NewUser, UserPatch,
};

#[tokio::test]
async fn users_lifecycle() {
    let env = start().await;
    let client = env.client();
    let created = client
        .create_user(&NewUser {
            first_name: "Ada".into(),
            last_name: "Lovelace".into(),
            external_id: Some("cust-1".into()),
            emails: vec![Email::work("ada@example.com")],
            ..NewUser::default()
        })
        .await
        .unwrap();
    assert_eq!(created.first_name, "Ada");
    assert_eq!(created.email(), Some("ada@example.com"));
    assert!(!created.suspended);

    let fetched = client.get_user(created.id).await.unwrap();
    assert_eq!(fetched.external_id.as_deref(), Some("cust-1"));
    let found = client
        .find_user_by_external_id("cust-1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.id, created.id);

    let patched = client
        .patch_user(
            created.id,
            &UserPatch {
                last_name: Some("King".into()),
                ..UserPatch::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(patched.last_name, "King");
    assert_eq!(patched.first_name, "Ada");

    // PUT replaces: the e-mail left out is removed.
    let replaced = client
        .update_user(
            created.id,
            &NewUser {
                first_name: "Augusta".into(),
                last_name: "King".into(),
                external_id: Some("cust-1".into()),
                ..NewUser::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(replaced.first_name, "Augusta");
    assert!(replaced.emails.is_empty());

    assert!(!client.is_suspended(created.id).await.unwrap());
    let state = client.set_suspended(created.id, true).await.unwrap();
    assert!(state.suspended);
    assert!(client.is_suspended(created.id).await.unwrap());
    let suspended = client
        .list_users(Some(&Filter::new().eq("user_status", ["suspended"])))
        .await
        .unwrap();
    assert!(suspended.iter().any(|u| u.id == created.id));
    client.set_suspended(created.id, false).await.unwrap();

    let by_id = client
        .list_users(Some(&Filter::new().eq("id", [created.id])))
        .await
        .unwrap();
    assert_eq!(by_id.len(), 1);

    client.delete_user(created.id).await.unwrap();
    let err = client.get_user(created.id).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(
        client
            .find_user_by_external_id("cust-1")
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn external_ids_with_path_characters() {
    let env = start().await;
    let client = env.client();
    let external_id = "visitor:7/a b?c";
    let created = client
        .create_user(&NewUser {
            first_name: "Vi".into(),
            last_name: "Sitor".into(),
            external_id: Some(external_id.into()),
            ..NewUser::default()
        })
        .await
        .unwrap();
    let found = client
        .find_user_by_external_id(external_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.id, created.id);
    let err = client.find_user_by_external_id("..").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
}

#[tokio::test]
async fn groups_and_membership() {
    let env = start().await;
    let client = env.client();
    let groups = client.list_groups(None).await.unwrap();
    assert_eq!(groups.len(), 14);
    assert!(groups.iter().any(|g| g.name == "Staff"));
    let day_pass = groups
        .iter()
        .find(|g| g.name == "Day Pass")
        .unwrap()
        .clone();
    assert_eq!(
        client.get_group(day_pass.id).await.unwrap().name,
        "Day Pass"
    );

    let too_long = "x".repeat(36);
    let err = client.create_group(&too_long).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    // Token, list, get: the refused create made no call.
    assert_eq!(client.total_calls(), 3);

    let event_space = client.create_group("Event Space").await.unwrap();
    let user = client
        .create_user(&NewUser {
            first_name: "Member".into(),
            last_name: "One".into(),
            external_id: Some("m-1".into()),
            ..NewUser::default()
        })
        .await
        .unwrap();
    client
        .add_user_to_group(day_pass.id, user.id)
        .await
        .unwrap();
    // Adding twice is harmless.
    client
        .add_user_to_group(day_pass.id, user.id)
        .await
        .unwrap();
    let mine = client.user_groups(user.id).await.unwrap();
    assert_eq!(mine.iter().map(|g| g.id).collect::<Vec<_>>(), [day_pass.id]);

    let after = client
        .update_user_groups(user.id, &[event_space.id], &[day_pass.id])
        .await
        .unwrap();
    assert_eq!(
        after.iter().map(|g| g.id).collect::<Vec<_>>(),
        [event_space.id]
    );
    client
        .remove_user_from_group(event_space.id, user.id)
        .await
        .unwrap();
    assert!(client.user_groups(user.id).await.unwrap().is_empty());

    let history = env.sim.membership_history();
    assert!(history.len() >= 3, "{history:?}");

    client.delete_group(event_space.id).await.unwrap();
    let err = client.get_group(event_space.id).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
}

/// Brivo answers 415 to a write without a JSON Content-Type; the bodiless ones must carry it too.
#[tokio::test]
async fn bodiless_writes_are_typed_json() {
    let env = start().await;
    let client = env.client();
    let group = client.list_groups(None).await.unwrap()[0].clone();
    let door = client.list_access_points(None).await.unwrap()[0].clone();
    let user = client
        .create_user(&NewUser {
            first_name: "Type".into(),
            last_name: "Checked".into(),
            external_id: Some("ct-1".into()),
            ..NewUser::default()
        })
        .await
        .unwrap();
    client.add_user_to_group(group.id, user.id).await.unwrap();
    client
        .remove_user_from_group(group.id, user.id)
        .await
        .unwrap();
    client.activate_access_point(door.id).await.unwrap();
    client.delete_user(user.id).await.unwrap();
    let member = "/v1/api/groups/{id}/users/{id}";
    assert_eq!(env.requests("PUT", member, Some(204)).await, 1);
    assert_eq!(env.requests("DELETE", member, Some(204)).await, 1);
    let activate = "/v1/api/access-points/{id}/activate";
    assert_eq!(env.requests("POST", activate, Some(200)).await, 1);
    assert_eq!(
        env.requests("DELETE", "/v1/api/users/{id}", Some(204))
            .await,
        1
    );
    for method in ["POST", "PUT", "PATCH", "DELETE"] {
        let refused = env
            .requests(method, "/v1/api/groups/{id}/users/{id}", Some(415))
            .await
            + env.requests(method, activate, Some(415)).await
            + env.requests(method, "/v1/api/users/{id}", Some(415)).await;
        assert_eq!(refused, 0, "{method} answered 415");
    }
}

#[tokio::test]
async fn sites_and_doors() {
    let env = start().await;
    let client = env.client();
    let sites = client.list_sites(None).await.unwrap();
    assert_eq!(sites.len(), 1);
    let site = client.get_site(sites[0].id).await.unwrap();
    assert!(site.time_zone.is_some());
    let named = client
        .list_sites(Some(&Filter::new().eq("name", [site.site_name.as_str()])))
        .await
        .unwrap();
    assert_eq!(named.len(), 1);

    let doors = client.list_access_points(None).await.unwrap();
    assert!(!doors.is_empty());
    assert!(doors.iter().all(|d| d.site_id == Some(site.id)));
    let door = client.get_access_point(doors[0].id).await.unwrap();
    assert_eq!(door.name, doors[0].name);
    if let Some(locked) = doors.iter().find(|d| !d.activation_enabled) {
        let err = client.activate_access_point(locked.id).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Forbidden);
    }
    let open = doors.iter().find(|d| d.activation_enabled).unwrap();
    client.activate_access_point(open.id).await.unwrap();
    assert_eq!(calls(&client, "POST /access-points/{id}/activate", "ok"), 1);
}

#[tokio::test]
async fn group_door_permissions_and_the_groups_of_a_door() {
    let env = start().await;
    let client = env.client();
    let groups = client.list_groups(None).await.unwrap();
    let room = groups.iter().find(|g| g.name == "Meeting Room 1").unwrap();
    let opens = client.group_access_points(room.id).await.unwrap();
    let names: Vec<_> = opens.iter().map(|p| p.access_point.name.as_str()).collect();
    assert_eq!(names, ["Front Door", "Floor 1 Door", "Meeting Room 1 Door"]);
    assert!(
        opens
            .iter()
            .all(|p| p.access_point.kind.as_deref() == Some("Door"))
    );
    let always = opens[0].schedule.clone().unwrap();
    assert_eq!(always.name.as_deref(), Some("24x7 - Always On"));
    assert_eq!(opens[0].privacy_mode_override, None);

    let schedules = client
        .list_schedules(Some(&Filter::new().eq("name", ["Office"])))
        .await
        .unwrap();
    assert_eq!(schedules.len(), 1);
    let office_hours = schedules[0].clone();
    assert_eq!(office_hours.site_name.as_deref(), Some("Universal"));

    let office_1 = client
        .list_access_points(Some(&Filter::new().eq("name", ["Office 1 Door"])))
        .await
        .unwrap()[0]
        .clone();
    let granted = client
        .set_group_access_point(room.id, office_1.id, office_hours.id, None)
        .await
        .unwrap();
    assert_eq!(granted.access_point.id, office_1.id);
    assert_eq!(granted.access_point.name, "Office 1 Door");
    assert_eq!(
        granted.schedule.as_ref().map(|s| s.id),
        Some(office_hours.id)
    );
    // Setting it again (or to another schedule) is a plain replace.
    let again = client
        .set_group_access_point(room.id, office_1.id, always.id, Some(false))
        .await
        .unwrap();
    assert_eq!(again.schedule.unwrap().id, always.id);
    let err = client
        .set_group_access_point(room.id, office_1.id, always.id, Some(true))
        .await
        .unwrap_err();
    assert_eq!(
        err.kind(),
        ErrorKind::BadRequest,
        "no privacy mode on a plain door"
    );

    let door_groups = client.access_point_groups(office_1.id).await.unwrap();
    assert!(door_groups.iter().any(|g| g.id == room.id));
    client
        .remove_group_access_point(room.id, office_1.id)
        .await
        .unwrap();
    let door_groups = client.access_point_groups(office_1.id).await.unwrap();
    assert!(!door_groups.iter().any(|g| g.id == room.id));
    assert_eq!(client.group_access_points(room.id).await.unwrap().len(), 3);
    let err = client.access_point_groups(1).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
}

#[tokio::test]
async fn invitations() {
    let env = start().await;
    let client = env.client();
    let user = client
        .create_user(&NewUser {
            first_name: "Pass".into(),
            last_name: "Holder".into(),
            external_id: Some("inv-1".into()),
            emails: vec![Email::work("pass@example.com")],
            ..NewUser::default()
        })
        .await
        .unwrap();
    let request = NewInvitation {
        reference_id: "pass@example.com".into(),
        send_email: true,
        language: Language::En,
    };
    let invitation = client.create_invitation(user.id, &request).await.unwrap();
    assert_eq!(invitation.status, InvitationStatus::Pending);
    assert_eq!(invitation.reference_id.as_deref(), Some("pass@example.com"));

    // One pending invitation per user.
    let err = client
        .create_invitation(user.id, &request)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);

    let pending = client
        .list_invitations(user.id, Some(InvitationStatus::Pending))
        .await
        .unwrap();
    assert_eq!(pending.len(), 1);
    let cancelled = client.cancel_invitation(user.id).await.unwrap();
    if let Some(cancelled) = cancelled {
        assert_eq!(cancelled.status, InvitationStatus::Cancelled);
    }
    assert!(
        client
            .list_invitations(user.id, Some(InvitationStatus::Pending))
            .await
            .unwrap()
            .is_empty()
    );
    // `None` means every invitation, although Brivo lists only pending ones without a filter.
    let all = client.list_invitations(user.id, None).await.unwrap();
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(all[0].status, InvitationStatus::Cancelled);
    let cancelled = client
        .list_invitations(user.id, Some(InvitationStatus::Cancelled))
        .await
        .unwrap();
    assert_eq!(cancelled.len(), 1);
    client.create_invitation(user.id, &request).await.unwrap();
    assert_eq!(
        client.list_invitations(user.id, None).await.unwrap().len(),
        2
    );
    assert_eq!(
        calls(
            &client,
            "GET /users/{id}/credentials/digital-invitations",
            "ok"
        ),
        5
    );
}

#[tokio::test]
async fn access_events_page_by_time() {
    let env = start().await;
    let client = env.client();
    // The demo account starts without events, so a margin around the calls is safe.
    let from = Timestamp::now() - SignedDuration::from_secs(5);
    let door = client
        .list_access_points(None)
        .await
        .unwrap()
        .into_iter()
        .find(|d| d.activation_enabled)
        .unwrap();
    for _ in 0..7 {
        client.activate_access_point(door.id).await.unwrap();
    }
    let to = Timestamp::now() + SignedDuration::from_secs(1);
    let query = EventQuery::between(from, to);

    let mut pager = client.access_event_pages(query.clone()).page_size(3);
    let mut pages = Vec::new();
    while let Some(page) = pager.next_page().await.unwrap() {
        pages.push(page);
    }
    let events: Vec<_> = pages.concat();
    assert_eq!(events.len(), 7, "{pages:?}");
    assert!(pages.len() >= 3);
    // Newest first, no duplicates.
    assert!(events.windows(2).all(|w| w[0].occurred >= w[1].occurred));
    let mut uuids: Vec<_> = events.iter().map(|e| e.uuid.clone()).collect();
    uuids.dedup();
    assert_eq!(uuids.len(), 7);
    assert!(
        events
            .iter()
            .all(|e| e.event_object.as_ref().and_then(|o| o.id) == Some(door.id))
    );

    let all = client
        .access_events(&query.clone().object(door.id))
        .await
        .unwrap();
    assert_eq!(all.len(), 7);
    let none = client
        .access_events(&EventQuery::between(
            from - SignedDuration::from_hours(30),
            from - SignedDuration::from_hours(1),
        ))
        .await
        .unwrap();
    assert!(none.is_empty());
}

/// Brivo truncates `occurred` bounds to the hour: a pager asking up to "now" would never read
/// the current hour. Events at the edges of hours and days are all read, once each.
#[tokio::test]
async fn access_events_at_the_edges_of_hours_are_all_read() {
    let env = start().await;
    let client = env.client();
    let door = client.list_access_points(None).await.unwrap()[0].id;
    let top = crate::events::hour_floor(Timestamp::now());
    let ms = SignedDuration::from_millis;
    let hours = SignedDuration::from_hours;
    let placed = [
        top - hours(29),
        top - hours(20),
        top - SignedDuration::from_mins(90),
        top - hours(1) - ms(1),
        top - ms(1),
        top,
    ];
    let mut expected = Vec::new();
    for at in placed {
        expected.push(env.swipe(15_560_001, door, Some(at)).await["uuid"].clone());
    }
    client.activate_access_point(door).await.unwrap();
    let to = Timestamp::now() + SignedDuration::from_secs(1);

    // Newest first, across three windows, a page of two at a time.
    let events = client
        .access_event_pages(EventQuery::between(top - hours(30), to))
        .page_size(2)
        .all()
        .await
        .unwrap();
    let uuids: Vec<_> = events.iter().map(|e| serde_json::json!(e.uuid)).collect();
    assert_eq!(uuids.len(), 7, "{events:#?}");
    assert_eq!(
        &uuids[1..],
        expected.iter().rev().cloned().collect::<Vec<_>>()
    );
    assert_eq!(events[0].security_action_id(), Some(5064));

    // The ends of a span are exact on this side, whatever hours the server was asked for.
    let current_hour = client
        .access_events(&EventQuery::between(top, to))
        .await
        .unwrap();
    assert_eq!(
        current_hour.len(),
        2,
        "the event at the top of the hour and the pulse"
    );
    let previous_hour = client
        .access_events(&EventQuery::between(top - hours(1), top - ms(1)))
        .await
        .unwrap();
    assert_eq!(
        previous_hour.len(),
        1,
        "only the last millisecond of the hour before"
    );
    let two_hours = client
        .access_events(&EventQuery::between(top - hours(2), top - ms(1)))
        .await
        .unwrap();
    assert_eq!(two_hours.len(), 3);
    let recent = client
        .recent_access_events(std::time::Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(recent.len(), 1, "a span of seconds still reads its hour");
}

/// The poller keeps the current hour open: it reads it again on every poll and hands out
/// only what it has not handed out before, including events that arrive late.
#[tokio::test]
async fn the_event_poller_reads_the_open_hour_again_and_returns_each_event_once() {
    let env = start().await;
    let client = env.client();
    let door = client.list_access_points(None).await.unwrap()[0].id;
    let top = crate::events::hour_floor(Timestamp::now());
    let earlier = env
        .swipe(15_560_001, door, Some(top - SignedDuration::from_mins(30)))
        .await;
    let mut poller = client
        .access_event_poller(top - SignedDuration::from_hours(1))
        .page_size(1);

    let first = poller.poll().await.unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(serde_json::json!(first[0].uuid), earlier["uuid"]);
    assert!(poller.poll().await.unwrap().is_empty(), "nothing new");

    client.activate_access_point(door).await.unwrap();
    client.activate_access_point(door).await.unwrap();
    let pulses = poller.poll().await.unwrap();
    assert_eq!(pulses.len(), 2);
    assert!(pulses[0].occurred < pulses[1].occurred, "oldest first");

    // An event of the open hour that reaches Brivo after the last poll is still read.
    let late = env.swipe(15_560_001, door, Some(top)).await;
    let again = poller.poll().await.unwrap();
    assert_eq!(again.len(), 1, "{again:#?}");
    assert_eq!(serde_json::json!(again[0].uuid), late["uuid"]);
    assert!(poller.poll().await.unwrap().is_empty());
    assert!(poller.open_from() >= top - SignedDuration::from_hours(1));
}

#[tokio::test]
async fn event_subscriptions() {
    let env = start().await;
    let client = env.client();
    let site = client.list_sites(None).await.unwrap()[0].clone();
    let created = client
        .create_event_subscription(&NewEventSubscription {
            name: "doorsync".into(),
            url: "http://127.0.0.1:9/hook".into(),
            error_email: Some("ops@example.com".into()),
            criteria: vec![Criterion::site(site.id)],
        })
        .await
        .unwrap();
    assert!(created.id > 0);
    assert_eq!(created.criteria.len(), 1);
    assert_eq!(
        client
            .get_event_subscription(created.id)
            .await
            .unwrap()
            .name,
        "doorsync"
    );
    let updated = client
        .update_event_subscription(
            created.id,
            &NewEventSubscription {
                name: "doorsync all".into(),
                url: "http://127.0.0.1:9/hook".into(),
                error_email: None,
                criteria: vec![],
            },
        )
        .await
        .unwrap();
    assert_eq!(updated.name, "doorsync all");
    assert_eq!(client.list_event_subscriptions().await.unwrap().len(), 1);
    client.delete_event_subscription(created.id).await.unwrap();
    assert!(client.list_event_subscriptions().await.unwrap().is_empty());
}
