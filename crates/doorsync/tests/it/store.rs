//! The `Store` contract, run against each backend.

use doorsync_core::*;
use doorsync_store::*;
use jiff::{SignedDuration, Timestamp};
use testkit::{Backend, TestDb};

/// The fence of the lease `owner` holds on `s` now (or held last).
async fn lease_of(store: &SqlStore, s: &Subject, owner: &str) -> Fence {
    let row = store.schedule_row(s).await.unwrap().unwrap();
    Fence {
        subject: s.clone(),
        owner: owner.into(),
        token: row.fence,
    }
}

fn t(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn id(s: &str) -> Id {
    Id::parse(s).unwrap()
}

fn customer(c: &str) -> Record {
    Record::Customer(Customer {
        id: id(c),
        name: format!("Customer {c}"),
        email: Email::parse(&format!("{c}@example.com")).unwrap(),
        phone: None,
        status: CustomerStatus::Active,
        status_since: Timestamp::UNIX_EPOCH,
    })
}

fn location(l: &str) -> Record {
    Record::Location(Location {
        end_access_when_days_used: false,
        id: id(l),
        name: l.into(),
        timezone: Zone::parse("Europe/London").unwrap(),
        connection_id: None,
        site_id: None,
        lead: DEFAULT_LEAD,
        lag: DEFAULT_LAG,
    })
}

fn resource(r: &str, l: &str) -> Record {
    Record::Resource(Resource {
        id: id(r),
        location_id: id(l),
        name: r.into(),
        lead: None,
        lag: None,
    })
}

fn desk(d: &str, l: &str) -> Record {
    Record::Desk(Desk {
        id: id(d),
        location_id: id(l),
        name: d.into(),
        kind: DeskKind::Office,
    })
}

fn booking(b: &str, c: &str, r: &str) -> Record {
    Record::Booking(Booking {
        id: id(b),
        customer_id: id(c),
        resource_id: id(r),
        start: t("2026-06-01T10:00:00Z"),
        end: t("2026-06-01T11:00:00Z"),
        status: BookingStatus::Confirmed,
        cancelled_at: None,
    })
}

fn contract(k: &str, c: &str, desks: &[&str]) -> Record {
    Record::Contract(Contract {
        id: id(k),
        customer_id: id(c),
        desk_ids: desks.iter().map(|d| id(d)).collect(),
        start_date: "2026-06-01".parse().unwrap(),
        end_date: None,
        status: ContractStatus::Active,
        cancelled_at: None,
    })
}

fn link(kind: LinkKind, item: &str, group: &str) -> Record {
    Record::Link(Link {
        kind,
        item_id: id(item),
        group_id: group.into(),
    })
}

fn team(tm: &str, payer: &str, members: &[&str]) -> Record {
    Record::Team(Team {
        id: id(tm),
        name: tm.into(),
        paying_member_id: id(payer),
        member_ids: members.iter().map(|m| id(m)).collect(),
    })
}

fn cust(c: &str) -> Subject {
    Subject::Customer(id(c))
}

fn subjects(claims: Vec<Claim>) -> Vec<Subject> {
    claims.into_iter().map(|c| c.subject).collect()
}

async fn due_at(store: &SqlStore, s: &Subject) -> Option<Timestamp> {
    store
        .schedule_row(s)
        .await
        .unwrap()
        .and_then(|r| r.next_due_at)
}

/// A space: location L with resource R and desk D, customers a, b, c.
async fn seed(store: &SqlStore, now: Timestamp) {
    for r in [
        location("L"),
        resource("R", "L"),
        desk("D", "L"),
        customer("a"),
        customer("b"),
        customer("c"),
    ] {
        store.put(r, now).await.unwrap();
    }
}

async fn records_round_trip_and_page(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let store = db.store().await;
    let now = t("2026-06-01T09:00:00Z");
    let w = store.put(customer("a"), now).await.unwrap();
    assert!(w.created);
    let w = store.put(customer("a"), now).await.unwrap();
    assert!(!w.created, "a second put replaces");
    for c in ["b", "c", "d", "e"] {
        store.put(customer(c), now).await.unwrap();
    }
    let page1 = store.list(Kind::Customer, None, 2).await.unwrap();
    let keys: Vec<_> = page1.iter().map(Record::key).collect();
    assert_eq!(keys, ["a", "b"]);
    let page2 = store.list(Kind::Customer, Some("b"), 10).await.unwrap();
    assert_eq!(
        page2.iter().map(Record::key).collect::<Vec<_>>(),
        ["c", "d", "e"]
    );
    assert_eq!(
        store.get(Kind::Customer, "c").await.unwrap(),
        Some(page2[0].clone())
    );
    assert!(store.delete(Kind::Customer, "c", now).await.unwrap());
    assert!(!store.delete(Kind::Customer, "c", now).await.unwrap());
    assert_eq!(store.get(Kind::Customer, "c").await.unwrap(), None);
    assert!(
        store
            .list(Kind::Booking, None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    store.close().await;
    db.drop_db().await;
}

async fn unknown_references_are_refused_and_leave_nothing(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let store = db.store().await;
    let now = t("2026-06-01T09:00:00Z");
    seed(&store, now).await;
    let err = store
        .put(booking("B", "nobody", "R"), now)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::UnknownReference {
                field: "customer_id",
                ..
            }
        ),
        "{err:?}"
    );
    let err = store.put(booking("B", "a", "R2"), now).await.unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::UnknownReference {
                field: "resource_id",
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(store.get(Kind::Booking, "B").await.unwrap(), None);
    let err = store
        .put(link(LinkKind::Desk, "nope", "7"), now)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::UnknownReference {
                field: "item_id",
                ..
            }
        ),
        "{err:?}"
    );
    store.put(location("L2"), now).await.unwrap();
    store.put(desk("D2", "L2"), now).await.unwrap();
    let err = store
        .put(contract("K", "a", &["D", "D2"]), now)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Invalid {
                field: "desk_ids",
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(store.get(Kind::Contract, "K").await.unwrap(), None);
    store.close().await;
    db.drop_db().await;
}

async fn records_in_use_cannot_be_deleted(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let store = db.store().await;
    let now = t("2026-06-01T09:00:00Z");
    seed(&store, now).await;
    store.put(booking("B", "a", "R"), now).await.unwrap();
    store
        .put(link(LinkKind::Resource, "R", "10"), now)
        .await
        .unwrap();
    let err = store.delete(Kind::Customer, "a", now).await.unwrap_err();
    assert!(matches!(err, StoreError::InUse { .. }), "{err:?}");
    assert!(store.get(Kind::Customer, "a").await.unwrap().is_some());
    assert!(store.delete(Kind::Booking, "B", now).await.unwrap());
    // The resource's link goes with it.
    assert!(store.delete(Kind::Resource, "R", now).await.unwrap());
    assert_eq!(
        store
            .get(Kind::Link, &link_key(LinkKind::Resource, "R"))
            .await
            .unwrap(),
        None
    );
    store.close().await;
    db.drop_db().await;
}

async fn writes_mark_the_customers_they_reach_due(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let store = db.store().await;
    let t0 = t("2026-06-01T09:00:00Z");
    seed(&store, t0).await;
    // A customer's own write.
    assert_eq!(due_at(&store, &cust("a")).await, Some(t0));
    let owner = "test";
    let claimed = store
        .claim_due(owner, t0, SignedDuration::from_secs(30), 10)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 3);
    for s in &claimed {
        store
            .finish(
                &lease_of(&store, &s.subject, owner).await,
                Outcome::Done {
                    next_due_at: None,
                    revokes: false,
                },
            )
            .await
            .unwrap();
    }
    assert_eq!(due_at(&store, &cust("a")).await, None);

    let t1 = t("2026-06-01T09:01:00Z");
    store.put(booking("B", "a", "R"), t1).await.unwrap();
    assert_eq!(due_at(&store, &cust("a")).await, Some(t1));
    assert_eq!(due_at(&store, &cust("b")).await, None);

    // A link reaches every customer holding the item; b pays for a team with c in it.
    store.put(contract("K", "b", &["D"]), t1).await.unwrap();
    store.put(team("T", "b", &["c"]), t1).await.unwrap();
    let t2 = t("2026-06-01T09:02:00Z");
    finish_due(&store, owner, t2).await;
    store
        .put(link(LinkKind::Desk, "D", "20"), t2)
        .await
        .unwrap();
    assert_eq!(due_at(&store, &cust("b")).await, Some(t2));
    assert_eq!(
        due_at(&store, &cust("c")).await,
        Some(t2),
        "the team member is reached too"
    );
    assert_eq!(due_at(&store, &cust("a")).await, None);

    // Leaving a team reaches the one who left.
    let t3 = t("2026-06-01T09:03:00Z");
    finish_due(&store, owner, t3).await;
    store.put(team("T", "b", &[]), t3).await.unwrap();
    assert_eq!(due_at(&store, &cust("c")).await, Some(t3));

    // Renaming a location reaches nobody; changing its lead reaches whoever has a booking of
    // its rooms (a), and nobody else: contracts (b's, and c's through b's team) and passes do
    // not use the buffers.
    let t4 = t("2026-06-01T09:04:00Z");
    store.put(customer("elsewhere"), t4).await.unwrap();
    finish_due(&store, owner, t4).await;
    let Record::Location(mut l) = location("L") else {
        panic!()
    };
    l.name = "Soho, renamed".into();
    store.put(Record::Location(l.clone()), t4).await.unwrap();
    for c in ["a", "b", "c"] {
        assert_eq!(
            due_at(&store, &cust(c)).await,
            None,
            "{c} marked by a rename"
        );
    }
    let t5 = t("2026-06-01T09:05:00Z");
    l.lead = SignedDuration::from_mins(30);
    store.put(Record::Location(l.clone()), t5).await.unwrap();
    assert_eq!(due_at(&store, &cust("a")).await, Some(t5));
    for c in ["b", "c", "elsewhere"] {
        assert_eq!(due_at(&store, &cust(c)).await, None, "{c} marked by a lead");
    }
    // Its zone reaches everyone who holds something there.
    l.timezone = Zone::parse("Europe/Paris").unwrap();
    store.put(Record::Location(l.clone()), t5).await.unwrap();
    for c in ["a", "b", "c"] {
        assert_eq!(due_at(&store, &cust(c)).await, Some(t5), "{c}");
    }
    assert_eq!(due_at(&store, &cust("elsewhere")).await, None);

    // The key's rate and the member app's door list change nobody's access; the no-access
    // policy changes everyone's on the connection.
    let mut conn = connection_with("brivo", Credentials::default());
    store
        .put(Record::Connection(conn.clone()), t5)
        .await
        .unwrap();
    l.connection_id = Some(id("brivo"));
    store.put(Record::Location(l), t5).await.unwrap();
    let t6 = t("2026-06-01T09:06:00Z");
    finish_due(&store, owner, t6).await;
    conn.requests_per_second = 3;
    conn.list_doors_in_app = false;
    store
        .put(Record::Connection(conn.clone()), t6)
        .await
        .unwrap();
    for c in ["a", "b", "c"] {
        assert_eq!(due_at(&store, &cust(c)).await, None, "{c} marked by a rate");
    }
    let t7 = t("2026-06-01T09:07:00Z");
    conn.no_access_policy = NoAccessPolicy::Suspend;
    store.put(Record::Connection(conn), t7).await.unwrap();
    for c in ["a", "b", "c"] {
        assert_eq!(due_at(&store, &cust(c)).await, Some(t7), "{c}");
    }
    store.close().await;
    db.drop_db().await;
}

/// Claims everyone due at `at` and finishes them with nothing coming.
async fn finish_due(store: &SqlStore, owner: &str, at: Timestamp) {
    for s in store
        .claim_due(owner, at, SignedDuration::from_secs(30), 100)
        .await
        .unwrap()
    {
        store
            .finish(
                &lease_of(store, &s.subject, owner).await,
                Outcome::Done {
                    next_due_at: None,
                    revokes: false,
                },
            )
            .await
            .unwrap();
    }
}

async fn the_store_keeps_status_times(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let store = db.store().await;
    let t0 = t("2026-06-01T09:00:00Z");
    seed(&store, t0).await;
    let t1 = t("2026-06-01T09:30:00Z");
    let Record::Customer(mut a) = store.get(Kind::Customer, "a").await.unwrap().unwrap() else {
        panic!()
    };
    assert_eq!(a.status_since, t0);
    a.name = "Renamed".into();
    let Record::Customer(a2) = store
        .put(Record::Customer(a.clone()), t1)
        .await
        .unwrap()
        .record
    else {
        panic!()
    };
    assert_eq!(a2.status_since, t0, "a rename is not a status change");
    a.status = CustomerStatus::Suspended;
    let Record::Customer(a3) = store.put(Record::Customer(a), t1).await.unwrap().record else {
        panic!()
    };
    assert_eq!(a3.status_since, t1);

    store.put(booking("B", "b", "R"), t0).await.unwrap();
    let Record::Booking(mut b) = booking("B", "b", "R") else {
        panic!()
    };
    b.status = BookingStatus::Cancelled;
    let w = store.put(Record::Booking(b.clone()), t1).await.unwrap();
    assert!(matches!(w.record, Record::Booking(Booking { cancelled_at: Some(x), .. }) if x == t1));
    let w = store
        .put(Record::Booking(b), t("2026-06-01T10:00:00Z"))
        .await
        .unwrap();
    assert!(
        matches!(w.record, Record::Booking(Booking { cancelled_at: Some(x), .. }) if x == t1),
        "cancelling again keeps the first moment"
    );
    store.close().await;
    db.drop_db().await;
}

async fn leases_keep_one_worker_per_subject_and_marks_win(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let store = db.store().await;
    let t0 = t("2026-06-01T09:00:00Z");
    let s = cust("x");
    store.mark_due(&s, t0).await.unwrap();
    assert_eq!(store.next_due_at().await.unwrap(), Some(t0));
    assert!(
        store
            .claim_due(
                "w1",
                t("2026-06-01T08:59:00Z"),
                SignedDuration::from_secs(30),
                10
            )
            .await
            .unwrap()
            .is_empty()
    );
    let lease = SignedDuration::from_secs(30);
    assert_eq!(
        store.claim_due("w1", t0, lease, 10).await.unwrap(),
        vec![Claim {
            subject: s.clone(),
            due_at: Some(t0),
            drift_at: None,
            fence: 1,
        }],
        "the claim carries the due time"
    );
    assert!(
        store
            .claim_due("w2", t0, lease, 10)
            .await
            .unwrap()
            .is_empty(),
        "held by w1"
    );
    let summary = store.due_summary(t0).await.unwrap();
    assert_eq!((summary.due, summary.in_flight), (0, 1));
    // A write lands while w1 works: its mark must survive w1's finish.
    let t1 = t("2026-06-01T09:00:05Z");
    store.mark_due(&s, t1).await.unwrap();
    store
        .finish(
            &lease_of(&store, &s, "w1").await,
            Outcome::Done {
                next_due_at: Some(t("2026-06-02T00:00:00Z")),
                revokes: false,
            },
        )
        .await
        .unwrap();
    assert_eq!(due_at(&store, &s).await, Some(t1));
    // A dead worker's lease expires and another takes the subject; the dead one's finish is ignored.
    assert_eq!(
        subjects(store.claim_due("w1", t1, lease, 10).await.unwrap()),
        vec![s.clone()]
    );
    let later = t("2026-06-01T09:01:00Z");
    assert_eq!(
        subjects(store.claim_due("w2", later, lease, 10).await.unwrap()),
        vec![s.clone()]
    );
    store
        .finish(
            &lease_of(&store, &s, "w1").await,
            Outcome::Failed {
                retry_at: later,
                error: "late".into(),
            },
        )
        .await
        .unwrap();
    assert_eq!(
        store
            .schedule_row(&s)
            .await
            .unwrap()
            .unwrap()
            .lease_owner
            .as_deref(),
        Some("w2")
    );
    let retry = t("2026-06-01T09:05:00Z");
    store
        .finish(
            &lease_of(&store, &s, "w2").await,
            Outcome::Failed {
                retry_at: retry,
                error: "provider down".into(),
            },
        )
        .await
        .unwrap();
    let row = store.schedule_row(&s).await.unwrap().unwrap();
    assert_eq!(
        (row.next_due_at, row.attempts, row.last_error.as_deref()),
        (Some(retry), 1, Some("provider down"))
    );
    store.close().await;
    db.drop_db().await;
}

async fn tokens_are_found_by_hash_only(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let store = db.store().await;
    let now = t("2026-06-01T09:00:00Z");
    let info = store.create_token("ci", "abc123", now).await.unwrap();
    assert_eq!(
        store.token_by_hash("abc123", now).await.unwrap(),
        Some(info)
    );
    assert_eq!(store.token_by_hash("abc124", now).await.unwrap(), None);
    let listed = store.tokens().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].1, Some(now), "last use recorded");
    assert!(store.revoke_token(&listed[0].0.id).await.unwrap());
    assert!(!store.revoke_token(&listed[0].0.id).await.unwrap());
    assert_eq!(
        store.token_by_hash("abc123", now).await.unwrap(),
        None,
        "a revoked token stops working"
    );
    store.close().await;
    db.drop_db().await;
}

async fn the_audit_log_filters_and_pages(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let store = db.store().await;
    for (i, subject) in ["customer:a", "customer:b", "customer:a"]
        .iter()
        .enumerate()
    {
        let seq = store
            .append_audit(AuditEntry {
                seq: 0,
                at: Timestamp::from_second(1_780_000_000 + i as i64).unwrap(),
                subject: subject.to_string(),
                group_id: Some("10".into()),
                operation: "add_to_group".into(),
                cause: Some("booking:B".into()),
                outcome: "ok".into(),
                latency_ms: Some(12),
                detail: None,
            })
            .await
            .unwrap();
        assert!(seq > 0);
    }
    let all = store
        .audit(&AuditFilter::default(), None, 10)
        .await
        .unwrap();
    assert_eq!(all.len(), 3);
    assert!(all[0].seq > all[1].seq, "newest first");
    let a = AuditFilter {
        subject: Some("customer:a".into()),
        ..Default::default()
    };
    let only_a = store.audit(&a, None, 10).await.unwrap();
    assert_eq!(only_a.len(), 2);
    let older = store.audit(&a, Some(only_a[0].seq), 10).await.unwrap();
    assert_eq!(older, vec![only_a[1].clone()]);
    let since = AuditFilter {
        since: Some(Timestamp::from_second(1_780_000_001).unwrap()),
        ..Default::default()
    };
    assert_eq!(store.audit(&since, None, 10).await.unwrap().len(), 2);
    store.close().await;
    db.drop_db().await;
}

async fn inputs_gather_everything_that_decides_access(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let store = db.store().await;
    let now = t("2026-06-01T09:00:00Z");
    seed(&store, now).await;
    store.put(booking("B", "a", "R"), now).await.unwrap();
    store
        .put(link(LinkKind::Resource, "R", "10"), now)
        .await
        .unwrap();
    store.put(contract("K", "b", &["D"]), now).await.unwrap();
    store
        .put(link(LinkKind::Desk, "D", "20"), now)
        .await
        .unwrap();
    store.put(team("T", "b", &["a"]), now).await.unwrap();
    let inputs = store.customer_inputs(&id("a"), now).await.unwrap().unwrap();
    assert_eq!(inputs.bookings.len(), 1);
    // History that ended days ago cannot change access: it is not read.
    let later = t("2026-06-05T12:00:00Z");
    let old = store
        .customer_inputs(&id("a"), later)
        .await
        .unwrap()
        .unwrap();
    assert!(old.bookings.is_empty(), "{:?}", old.bookings);
    assert_eq!(old.team_contracts.len(), 1, "an open-ended contract stays");
    assert_eq!(inputs.team_contracts.len(), 1);
    assert_eq!(inputs.team_contracts[0].membership.joined_at, now);
    let groups = desired(&customer_entitlements(&inputs), t("2026-06-01T10:30:00Z"));
    assert_eq!(groups.into_iter().collect::<Vec<_>>(), ["10", "20"]);
    assert!(
        store
            .customer_inputs(&id("nobody"), now)
            .await
            .unwrap()
            .is_none()
    );
    // Read together, customers get what each gets read alone, in the order asked for.
    store.put(booking("B2", "c", "R"), now).await.unwrap();
    let ids = [id("c"), id("nobody"), id("a"), id("b")];
    let together = store.customers_inputs(&ids, now).await.unwrap();
    let mut alone = vec![];
    for i in &ids {
        alone.extend(store.customer_inputs(i, now).await.unwrap());
    }
    assert_eq!(together.len(), 3);
    assert_eq!(together, alone);
    // The catalog is cached, but a write to it by another instance is seen at the next read.
    let other = db.store().await;
    other
        .put(link(LinkKind::Resource, "R", "11"), now)
        .await
        .unwrap();
    let relinked = store.customer_inputs(&id("a"), now).await.unwrap().unwrap();
    let groups = desired(&customer_entitlements(&relinked), t("2026-06-01T10:30:00Z"));
    assert_eq!(groups.into_iter().collect::<Vec<_>>(), ["11", "20"]);
    other.close().await;
    // Migrating again changes nothing.
    assert!(store.migrate(now).await.unwrap().is_empty());
    store.close().await;
    db.drop_db().await;
}

async fn group_names_are_read_for_the_groups_asked_only(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let store = db.store().await;
    // More groups than one page of parameters, so the read goes over pages.
    let entries: Vec<DirectoryEntry> = (0..1200)
        .map(|i| DirectoryEntry {
            provider_id: format!("g{i}"),
            name: format!("Group {i}"),
            parent_id: None,
        })
        .collect();
    store
        .replace_directory("C", "group", &entries)
        .await
        .unwrap();
    store
        .replace_directory(
            "C",
            "site",
            &[DirectoryEntry {
                provider_id: "s1".into(),
                name: "Site".into(),
                parent_id: None,
            }],
        )
        .await
        .unwrap();
    let asked: std::collections::BTreeSet<String> = ["g3", "g1100", "s1", "unknown"]
        .into_iter()
        .map(String::from)
        .collect();
    let names = store.group_names(&asked).await.unwrap();
    let want: std::collections::BTreeMap<String, String> =
        [("g3", "Group 3"), ("g1100", "Group 1100")]
            .into_iter()
            .map(|(a, b)| (a.into(), b.into()))
            .collect();
    assert_eq!(names, want, "a site or an unknown id has no group name");
    let many: std::collections::BTreeSet<String> = (0..1200).map(|i| format!("g{i}")).collect();
    assert_eq!(store.group_names(&many).await.unwrap().len(), 1200);
    assert!(
        store
            .group_names(&Default::default())
            .await
            .unwrap()
            .is_empty()
    );
    store.close().await;
    db.drop_db().await;
}

fn grant(g: &str, c: &str, p: &str) -> Record {
    Record::PassGrant(PassGrant {
        id: id(g),
        customer_id: id(c),
        pass_id: id(p),
        valid_from: t("2026-06-01T00:00:00Z"),
        valid_until: t("2026-07-01T00:00:00Z"),
        uses: None,
    })
}

fn put(r: Record) -> BatchOp {
    BatchOp::Put(Box::new(r))
}

/// A chunk of new customers, bookings and grants goes in multi-row statements: what it leaves
/// must be what writing them one at a time leaves, and a chunk the fast path cannot take fails
/// item by item as before.
async fn a_batch_of_new_records_is_stored_as_writing_each_would(backend: Backend) {
    let (Some(bulk_db), Some(one_db)) = (TestDb::new(backend).await, TestDb::new(backend).await)
    else {
        return;
    };
    let (bulk, one) = (bulk_db.store().await, one_db.store().await);
    let now = t("2026-06-01T09:00:00Z");
    let pass = Record::Pass(Pass {
        id: id("P"),
        location_id: id("L"),
        name: "Pass".into(),
    });
    for s in [&bulk, &one] {
        seed(s, now).await;
        s.put(pass.clone(), now).await.unwrap();
        s.put(link(LinkKind::Resource, "R", "10"), now)
            .await
            .unwrap();
        s.put(link(LinkKind::Pass, "P", "30"), now).await.unwrap();
    }
    let records = vec![
        customer("d"),
        customer("e"),
        booking("B1", "d", "R"),
        booking("B2", "a", "R"),
        grant("G1", "e", "P"),
        grant("G2", "d", "P"),
    ];
    let later = t("2026-06-01T09:30:00Z");
    let done = bulk
        .apply_batch(records.iter().cloned().map(put).collect(), later, false)
        .await
        .unwrap();
    assert_eq!(done.len(), records.len());
    for (d, r) in done.iter().zip(&records) {
        match d {
            Ok(BatchDone::Written(w)) => {
                assert!(w.created);
                assert_eq!(w.record.key(), r.key());
            }
            other => panic!("{other:?}"),
        }
    }
    for r in &records {
        one.put(r.clone(), later).await.unwrap();
    }
    for c in ["a", "b", "c", "d", "e"] {
        assert_eq!(
            bulk.customer_inputs(&id(c), now).await.unwrap(),
            one.customer_inputs(&id(c), now).await.unwrap(),
            "{c}"
        );
        assert_eq!(
            due_at(&bulk, &cust(c)).await,
            due_at(&one, &cust(c)).await,
            "{c}"
        );
    }
    assert_eq!(due_at(&bulk, &cust("d")).await, Some(later));
    assert_eq!(due_at(&bulk, &cust("e")).await, Some(later));
    // The references were written: a customer with bookings cannot be deleted.
    assert!(matches!(
        bulk.delete(Kind::Customer, "d", now).await,
        Err(StoreError::InUse { .. })
    ));

    // A missing reference, a booking ahead of its customer and a key written twice each go
    // one at a time: the item fails, the others are written.
    let done = bulk
        .apply_batch(
            vec![
                put(booking("B3", "f", "R")),
                put(customer("f")),
                put(booking("B4", "nobody", "R")),
                put(booking("B5", "f", "R")),
                put(customer("g")),
                put(customer("g")),
            ],
            now,
            false,
        )
        .await
        .unwrap();
    let failed: Vec<bool> = done.iter().map(|d| d.is_err()).collect();
    assert_eq!(failed, [true, false, true, false, false, false], "{done:?}");
    assert!(matches!(done[2], Err(StoreError::UnknownReference { .. })));
    // A record already stored is an update, also one at a time: `created` says so.
    let done = bulk
        .apply_batch(vec![put(customer("g")), put(customer("h"))], now, false)
        .await
        .unwrap();
    let created: Vec<bool> = done
        .iter()
        .map(|d| matches!(d, Ok(BatchDone::Written(w)) if w.created))
        .collect();
    assert_eq!(created, [false, true]);
    bulk.close().await;
    one.close().await;
    bulk_db.drop_db().await;
    one_db.drop_db().await;
}

fn mirrored(user: &str, groups: &[&str], added: &[&str]) -> MirrorUser {
    let mut m = MirrorUser::found(
        user.into(),
        false,
        groups.iter().map(|g| g.to_string()).collect(),
    );
    m.added = added.iter().map(|g| g.to_string()).collect();
    m
}

fn entry(subject: &Subject, operation: &str, at: Timestamp) -> AuditEntry {
    AuditEntry {
        seq: 0,
        at,
        subject: subject.key(),
        group_id: None,
        operation: operation.into(),
        cause: None,
        outcome: "ok".into(),
        latency_ms: Some(0),
        detail: None,
    }
}

/// Every write a reconcile makes carries its claim's fence: once another claim has taken the
/// subject (the lease ran out while the run stalled), the database refuses the old run's
/// writes, whoever made them; an instance never claims a subject it still runs; and the
/// mirror is written as the rows that changed, with its audit entries, in one transaction.
async fn a_claim_fences_out_the_writes_of_the_run_before_it(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let store = db.store().await;
    let t0 = t("2026-06-01T09:00:00Z");
    let lease = SignedDuration::from_secs(30);
    let s = cust("x");
    store.put(customer("x"), t0).await.unwrap();
    let first = store.claim_due("w1", t0, lease, 10).await.unwrap();
    assert_eq!(subjects(first.clone()), vec![s.clone()]);
    let f1 = first[0].fence("w1");
    let m1 = mirrored("u1", &["g1", "g2"], &["g1"]);
    store
        .mirror_save(&f1, "c", Some(&m1), &[entry(&s, "create_user", t0)])
        .await
        .unwrap();
    assert_eq!(store.mirror_user("c", &s).await.unwrap(), Some(m1.clone()));

    // w1 stalls past its lease: it does not claim the subject again while it runs it; w2 does.
    let later = t("2026-06-01T09:01:00Z");
    let running = [s.clone()].into_iter().collect();
    assert!(
        store
            .claim_in("w1", later, lease, 10, Lane::All, &running)
            .await
            .unwrap()
            .is_empty()
    );
    let taken = store.claim_due("w2", later, lease, 10).await.unwrap();
    assert_eq!(subjects(taken.clone()), vec![s.clone()]);
    let f2 = taken[0].fence("w2");
    assert!(f2.token > f1.token);
    let fenced = |r: Result<()>| matches!(r, Err(StoreError::Fenced(_)));
    let stale = mirrored("u1", &["g1"], &["g1"]);
    assert!(fenced(
        store
            .mirror_save(&f1, "c", Some(&stale), &[entry(&s, "late", later)])
            .await
    ));
    assert!(fenced(
        store
            .append_run_audit(&f1, &[entry(&s, "late", later)])
            .await
    ));
    let groups = ["g9".to_string()].into_iter().collect();
    assert!(fenced(store.set_held_past(&f1, "c", &groups, later).await));
    assert!(fenced(store.clear_invitation_request(&f1, t0).await));
    assert!(!store.renew_lease(&f1, later).await.unwrap());
    let retry = Outcome::Failed {
        retry_at: later,
        error: "late".into(),
    };
    store.finish(&f1, retry.clone()).await.unwrap();
    let row = store.schedule_row(&s).await.unwrap().unwrap();
    assert_eq!((row.lease_owner.as_deref(), row.attempts), (Some("w2"), 0));
    assert_eq!(store.mirror_user("c", &s).await.unwrap(), Some(m1));
    assert!(store.held_past(Some(&s), 10).await.unwrap().is_empty());

    // The holder's writes land: only what changed is rewritten.
    let m2 = mirrored("u1", &["g2", "g3"], &["g2", "g3"]);
    store
        .mirror_save(&f2, "c", Some(&m2), &[entry(&s, "add_to_group", later)])
        .await
        .unwrap();
    assert_eq!(store.mirror_user("c", &s).await.unwrap(), Some(m2));
    store
        .finish(
            &f2,
            Outcome::Done {
                next_due_at: Some(later),
                revokes: false,
            },
        )
        .await
        .unwrap();
    // A token is stale for its own owner too, once a newer claim exists.
    let again = store.claim_due("w2", later, lease, 10).await.unwrap();
    let f3 = again[0].fence("w2");
    assert!(fenced(store.mirror_save(&f2, "c", None, &[]).await));
    let m3 = mirrored("u2", &["g1"], &[]);
    store.mirror_save(&f3, "c", Some(&m3), &[]).await.unwrap();
    assert_eq!(store.mirror_user("c", &s).await.unwrap(), Some(m3));
    store.mirror_save(&f3, "c", None, &[]).await.unwrap();
    assert_eq!(store.mirror_user("c", &s).await.unwrap(), None);
    assert!(
        store
            .mirror_group_members("c", "g1")
            .await
            .unwrap()
            .is_empty()
    );

    let ops: Vec<String> = store
        .audit(&AuditFilter::default(), None, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.operation)
        .collect();
    assert_eq!(ops, ["add_to_group", "create_user"]);
    store.close().await;
    db.drop_db().await;
}

/// A location's new lead or lag reaches everyone with a booking of its rooms, but only those
/// who hold a room's group may lose access by it: they alone are marked at revocation priority,
/// so that a revocation falling due just after the edit is not served after thousands of
/// reconciles that change nothing. A subject due later to lose access, marked now for anything
/// else, is claimed now at normal priority.
async fn a_lead_edit_puts_only_holders_of_its_rooms_in_the_revocation_lane(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let store = db.store().await;
    let t0 = t("2026-06-01T09:00:00Z");
    let lease = SignedDuration::from_secs(30);
    store.put(location("L"), t0).await.unwrap();
    store.put(resource("R", "L"), t0).await.unwrap();
    store
        .put(link(LinkKind::Resource, "R", "room"), t0)
        .await
        .unwrap();
    let pass = Record::Pass(Pass {
        id: id("P"),
        location_id: id("L"),
        name: "Pass".into(),
    });
    store.put(pass, t0).await.unwrap();
    store
        .put(link(LinkKind::Pass, "P", "pass"), t0)
        .await
        .unwrap();
    // in-room: in the room's group now; member: in the pass's group, with a room booked too;
    // leaving: in nothing doorsync reads here, and due to lose access tomorrow.
    for c in ["in-room", "member", "leaving"] {
        store.put(customer(c), t0).await.unwrap();
    }
    store.put(booking("B1", "in-room", "R"), t0).await.unwrap();
    store.put(booking("B2", "member", "R"), t0).await.unwrap();
    store.put(booking("B3", "leaving", "R"), t0).await.unwrap();
    store.put(grant("G", "member", "P"), t0).await.unwrap();
    let now = t("2026-06-01T10:30:00Z");
    let tomorrow = t("2026-06-02T00:00:00Z");
    for claim in store.claim_due("w", now, lease, 100).await.unwrap() {
        let fence = claim.fence("w");
        let held: &[&str] = match claim.subject.key().as_str() {
            "customer:in-room" => &["room"],
            "customer:member" => &["pass"],
            _ => &[],
        };
        let user = format!("u-{}", claim.subject.key());
        let m = mirrored(&user, held, held);
        store.mirror_save(&fence, "c", Some(&m), &[]).await.unwrap();
        let leaving = claim.subject == cust("leaving");
        let done = Outcome::Done {
            next_due_at: leaving.then_some(tomorrow),
            revokes: leaving,
        };
        store.finish(&fence, done).await.unwrap();
    }
    let Some(Record::Location(mut l)) = store.get(Kind::Location, "L").await.unwrap() else {
        panic!("no location");
    };
    l.lead = SignedDuration::from_mins(5);
    store.put(Record::Location(l), now).await.unwrap();
    let lane = store
        .claim_in("w", now, lease, 100, Lane::Revocations, &Default::default())
        .await
        .unwrap();
    assert_eq!(subjects(lane), vec![cust("in-room")]);
    let mut rest = subjects(store.claim_due("w", now, lease, 100).await.unwrap());
    rest.sort();
    assert_eq!(rest, vec![cust("leaving"), cust("member")]);
    store.close().await;
    db.drop_db().await;
}

/// However the database plans it, and while writes mark the same subjects again, a claim takes
/// no more subjects than asked for: a lease no worker runs would hold its subject until it ran
/// out.
async fn a_claim_never_takes_more_than_its_limit(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let store = db.store().await;
    let t0 = t("2026-06-01T09:00:00Z");
    let lease = SignedDuration::from_secs(30);
    let ops = (0..300)
        .map(|i| put(customer(&format!("c{i:03}"))))
        .collect();
    store.apply_batch(ops, t0, false).await.unwrap();
    store.optimize().await.unwrap();
    // Claims race writes that mark the same subjects again.
    let store = std::sync::Arc::new(store);
    let mut tasks = vec![];
    for w in 0..4 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let owner = format!("racer-{w}");
            for round in 0..60 {
                let lane = if round % 2 == 0 {
                    Lane::All
                } else {
                    Lane::Revocations
                };
                let got = store
                    .claim_in(&owner, t0, lease, 1, lane, &Default::default())
                    .await
                    .unwrap();
                assert!(got.len() <= 1, "{} claimed, 1 asked", got.len());
                for c in got {
                    store
                        .mark_due(&cust(&format!("c{:03}", round * 5 % 300)), t0)
                        .await
                        .unwrap();
                    let back = Outcome::Done {
                        next_due_at: Some(t0),
                        revokes: round % 3 == 0,
                    };
                    store.finish(&c.fence(&owner), back).await.unwrap();
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut seen = 0;
    for limit in [1_u32, 1, 3, 1, 7, 1, 1000] {
        for lane in [Lane::Revocations, Lane::All] {
            let got = store
                .claim_in("w", t0, lease, limit, lane, &Default::default())
                .await
                .unwrap();
            assert!(
                got.len() <= limit as usize,
                "{} claimed, {limit} asked",
                got.len()
            );
            seen += got.len();
        }
    }
    assert_eq!(seen, 300);
    store.close().await;
    db.drop_db().await;
}

testkit::on_both_backends!(
    a_claim_never_takes_more_than_its_limit,
    a_lead_edit_puts_only_holders_of_its_rooms_in_the_revocation_lane,
    a_claim_fences_out_the_writes_of_the_run_before_it,
    records_round_trip_and_page,
    unknown_references_are_refused_and_leave_nothing,
    records_in_use_cannot_be_deleted,
    writes_mark_the_customers_they_reach_due,
    the_store_keeps_status_times,
    leases_keep_one_worker_per_subject_and_marks_win,
    tokens_are_found_by_hash_only,
    the_audit_log_filters_and_pages,
    inputs_gather_everything_that_decides_access,
    credentials_are_sealed_at_rest,
    no_secret_appears_in_the_records_table,
    a_write_racing_a_delete_never_leaves_a_dangling_reference,
    credentials_are_never_dropped_unread_or_sent_to_a_new_host,
    records_stored_before_the_input_tables_are_projected_once,
    a_revocation_due_is_claimed_before_grants_due_earlier,
    group_names_are_read_for_the_groups_asked_only,
    a_batch_of_new_records_is_stored_as_writing_each_would,
    sign_in_links_work_once_and_expire,
    mail_is_kept_until_delivered_or_expired,
    a_remote_unlock_is_matched_to_one_event_only,
    an_alert_goes_out_once_an_hour_while_its_condition_lasts,
    migrations_are_checked_and_an_earlier_history_is_taken_over,
    members_are_found_by_address_and_hosts_by_their_visitors,
    administrators_removing_each_other_at_once_leave_one,
    a_setup_code_makes_one_first_administrator_once,
);

/// A setup code is checked by its hash, works until its end and once: of many claims at the same
/// moment (several instances on one database, or one form posted twice) one makes the first
/// administrator and the rest find it there; every other code ends with it.
async fn a_setup_code_makes_one_first_administrator_once(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let store = std::sync::Arc::new(db.store().await);
    let now = t("2026-06-01T09:00:00Z");
    let hour = SignedDuration::from_hours(1);
    store.add_setup_code("old", now - hour, now).await.unwrap();
    // Two instances sharing the database, each with its own code.
    store.add_setup_code("mine", now, now + hour).await.unwrap();
    store
        .add_setup_code("theirs", now, now + hour)
        .await
        .unwrap();
    let claim = |code: &str, email: &str| {
        let (s, code, email) = (store.clone(), code.to_owned(), email.to_owned());
        async move {
            s.create_first_admin(&code, (&format!("adm_{email}"), &email, "hash"), now)
                .await
                .unwrap()
        }
    };
    assert_eq!(claim("guess", "eve").await, FirstAdmin::WrongCode);
    assert_eq!(claim("old", "eve").await, FirstAdmin::ExpiredCode);
    assert_eq!(store.admin_count().await.unwrap(), 0);
    let mut claims = tokio::task::JoinSet::new();
    for i in 0..8 {
        let code = if i % 2 == 0 { "mine" } else { "theirs" };
        claims.spawn(claim(code, &format!("ops{i}")));
    }
    let outcomes = claims.join_all().await;
    let created = outcomes
        .iter()
        .filter(|o| matches!(o, FirstAdmin::Created(_)))
        .count();
    assert_eq!(created, 1, "{outcomes:?}");
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o, FirstAdmin::Created(_) | FirstAdmin::AdminExists)),
        "{outcomes:?}"
    );
    assert_eq!(store.admin_count().await.unwrap(), 1);
    // The first run is over: no code, used or not, makes another.
    for code in ["mine", "theirs"] {
        assert_eq!(claim(code, "late").await, FirstAdmin::AdminExists);
    }
    let a = store.admins().await.unwrap().remove(0);
    assert_eq!(
        store.delete_admin(&a.id).await.unwrap(),
        AdminRemoval::LastAdmin
    );
    assert_eq!(
        store.delete_admin("adm_nobody").await.unwrap(),
        AdminRemoval::NotFound
    );
    db.drop_db().await;
}

/// Administrators removing each other all at once: the "not the last one" rule holds inside the
/// removal, so that whatever the interleaving one remains (on PostgreSQL, a count taken before
/// the delete in READ COMMITTED would let every removal see the others still there).
async fn administrators_removing_each_other_at_once_leave_one(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let store = std::sync::Arc::new(db.store().await);
    let now = t("2026-06-01T09:00:00Z");
    for round in 0..25 {
        for i in 0..5 {
            let id = format!("adm_{round}_{i}");
            store
                .create_admin(&id, &format!("{id}@example.com"), "hash", now)
                .await
                .unwrap()
                .unwrap();
        }
        // Everyone there, the one left by the last round too, removed at the same moment.
        let mut removals = tokio::task::JoinSet::new();
        for a in store.admins().await.unwrap() {
            let s = store.clone();
            removals.spawn(async move { s.delete_admin(&a.id).await.unwrap() });
        }
        let outcomes = removals.join_all().await;
        let left = store.admins().await.unwrap();
        assert_eq!(left.len(), 1, "round {round}: {outcomes:?}");
    }
    db.drop_db().await;
}

async fn migrations_recorded(conn: &mut sqlx::AnyConnection) -> i64 {
    sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM _sqlx_migrations")
        .fetch_one(conn)
        .await
        .unwrap()
}

async fn migrations_are_checked_and_an_earlier_history_is_taken_over(backend: Backend) {
    use sqlx::Connection;
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let now = t("2026-06-01T09:00:00Z");
    let store = db.store().await;
    let mut conn = sqlx::AnyConnection::connect(&db.url).await.unwrap();
    let all = migrations_recorded(&mut conn).await;
    assert!(all >= 14, "{all}");
    // Versions as recorded: numbers can skip where branches were merged.
    let versions: Vec<i64> = sqlx::query_scalar("SELECT version FROM _sqlx_migrations")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    // A database the earlier runner migrated: its history in schema_migrations only.
    sqlx::query("DROP TABLE _sqlx_migrations")
        .execute(&mut conn)
        .await
        .unwrap();
    sqlx::query(
        "CREATE TABLE schema_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    for v in versions {
        sqlx::query(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, 'x', 0)",
        )
        .bind(v)
        .execute(&mut conn)
        .await
        .unwrap();
    }
    assert!(
        store.migrate(now).await.unwrap().is_empty(),
        "nothing is applied again"
    );
    assert_eq!(migrations_recorded(&mut conn).await, all);
    // A migration changed after it was applied is refused.
    sqlx::query("UPDATE _sqlx_migrations SET checksum = $1 WHERE version = 3")
        .bind(vec![0u8; 48])
        .execute(&mut conn)
        .await
        .unwrap();
    let err = store.migrate(now).await.unwrap_err().to_string();
    assert!(
        err.contains("migration 3") && err.contains("changed"),
        "{err}"
    );
    sqlx::query("DELETE FROM _sqlx_migrations WHERE version = 3")
        .execute(&mut conn)
        .await
        .unwrap();
    // A database a newer doorsync migrated is refused, and left as it is.
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
            VALUES (999, 'from the future', TRUE, $1, 0)",
    )
    .bind(vec![1u8; 48])
    .execute(&mut conn)
    .await
    .unwrap();
    let err = store.migrate(now).await.unwrap_err().to_string();
    assert!(err.contains("newer than this doorsync"), "{err}");
    let _ = conn.close().await;
    store.close().await;
    db.drop_db().await;
}

async fn an_alert_goes_out_once_an_hour_while_its_condition_lasts(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let store = db.store().await;
    let now = t("2026-06-01T09:00:00Z");
    let hour = SignedDuration::from_hours(1);
    let send = |n: u32| AlertSend {
        hooks: vec![OutgoingHook {
            id: format!("h{n}"),
            url: "http://127.0.0.1:9/hook".into(),
            body: format!("{{\"n\":{n}}}"),
            attempts: 0,
        }],
        mails: vec![],
    };
    let c = "credentials_refused:brivo";
    let a = store
        .observe_alert(c, "credentials_refused", Some("brivo"), "refused", now)
        .await
        .unwrap();
    assert_eq!((a.active_since, a.last_sent_at), (now, None));
    assert!(
        store
            .send_alert(c, now, hour, &send(1), now + hour * 24)
            .await
            .unwrap()
    );
    let later = now + SignedDuration::from_mins(30);
    store
        .observe_alert(
            c,
            "credentials_refused",
            Some("brivo"),
            "still refused",
            later,
        )
        .await
        .unwrap();
    assert!(
        !store
            .send_alert(c, later, hour, &send(2), later + hour)
            .await
            .unwrap(),
        "once an hour"
    );
    let active = store.active_alerts().await.unwrap();
    assert_eq!(active.len(), 1);
    assert_eq!(
        (active[0].message.as_str(), active[0].active_since),
        ("still refused", now)
    );
    assert_eq!(active[0].last_sent_at, Some(now));
    let next = now + hour;
    assert!(
        store
            .send_alert(c, next, hour, &send(3), next + hour)
            .await
            .unwrap()
    );
    // Queued calls: the first and the third.
    let due = store.due_hooks(next, 10).await.unwrap();
    assert_eq!(
        due.iter().map(|h| h.id.as_str()).collect::<Vec<_>>(),
        ["h1", "h3"]
    );
    store.hook_attempted("h1", next, None).await.unwrap();
    store
        .hook_attempted("h3", next, Some(("answered 500", next + hour)))
        .await
        .unwrap();
    assert!(store.due_hooks(next, 10).await.unwrap().is_empty());
    // Resolved, then back: a new alert, sent at once.
    store.resolve_alert(c, next).await.unwrap();
    assert!(store.active_alerts().await.unwrap().is_empty());
    assert!(
        !store
            .send_alert(c, next + hour * 2, hour, &send(4), next + hour * 3)
            .await
            .unwrap()
    );
    let back = next + SignedDuration::from_mins(5);
    let a = store
        .observe_alert(
            c,
            "credentials_refused",
            Some("brivo"),
            "refused again",
            back,
        )
        .await
        .unwrap();
    assert_eq!((a.active_since, a.last_sent_at), (back, None));
    assert!(
        store
            .send_alert(c, back, hour, &send(5), back + hour)
            .await
            .unwrap()
    );
    store.close().await;
    db.drop_db().await;
}

async fn sign_in_links_work_once_and_expire(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let store = db.store().await;
    let now = t("2026-06-01T09:00:00Z");
    let expires = now + SignedDuration::from_mins(15);
    let mail = |id: &str| OutgoingMail {
        id: id.into(),
        to: "ana@example.com".into(),
        subject: "Your sign-in link".into(),
        body: "http://x/app/signin/T".into(),
        attempts: 0,
    };
    store
        .create_member_link("link-1", "ana", &mail("m1"), now, expires)
        .await
        .unwrap();
    store
        .create_member_link("link-2", "ana", &mail("m2"), now, expires)
        .await
        .unwrap();
    let later = now + SignedDuration::from_hours(24 * 30);
    let used = store
        .use_member_link("link-1", "session-1", "csrf-1", now, later)
        .await
        .unwrap();
    assert_eq!(used.as_deref(), Some("ana"));
    assert_eq!(
        store
            .use_member_link("link-1", "session-x", "csrf-x", now, later)
            .await
            .unwrap(),
        None,
        "a link works once"
    );
    assert_eq!(
        store
            .use_member_link("link-2", "session-y", "csrf-y", expires, later)
            .await
            .unwrap(),
        None,
        "a link stops working when it expires"
    );
    assert_eq!(
        store
            .use_member_link("nothing", "session-z", "csrf-z", now, later)
            .await
            .unwrap(),
        None
    );
    let session = store
        .member_session("session-1", now)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (session.customer_id.as_str(), session.csrf.as_str()),
        ("ana", "csrf-1")
    );
    assert_eq!(store.member_session("session-x", now).await.unwrap(), None);
    assert_eq!(
        store.member_session("session-1", later).await.unwrap(),
        None,
        "sessions expire"
    );
    store.end_member_session("session-1").await.unwrap();
    assert_eq!(store.member_session("session-1", now).await.unwrap(), None);
    store.close().await;
    db.drop_db().await;
}

async fn mail_is_kept_until_delivered_or_expired(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let store = db.store().await;
    let now = t("2026-06-01T09:00:00Z");
    let expires = now + SignedDuration::from_mins(15);
    for (link, m) in [("l1", "m1"), ("l2", "m2")] {
        let mail = OutgoingMail {
            id: m.into(),
            to: format!("{m}@example.com"),
            subject: "s".into(),
            body: "b".into(),
            attempts: 0,
        };
        store
            .create_member_link(link, "ana", &mail, now, expires)
            .await
            .unwrap();
    }
    let due = store.due_mail(now, 10).await.unwrap();
    assert_eq!(
        due.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(),
        ["m1", "m2"]
    );
    store.mail_attempted("m1", now, None).await.unwrap();
    let retry = now + SignedDuration::from_secs(5);
    store
        .mail_attempted("m2", now, Some(("connection refused", retry)))
        .await
        .unwrap();
    assert!(
        store.due_mail(now, 10).await.unwrap().is_empty(),
        "sent, or waiting to retry"
    );
    let again = store.due_mail(retry, 10).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!((again[0].id.as_str(), again[0].attempts), ("m2", 1));
    assert!(
        store.due_mail(expires, 10).await.unwrap().is_empty(),
        "mail that can no longer help is dropped"
    );
    store.close().await;
    db.drop_db().await;
}

async fn a_remote_unlock_is_matched_to_one_event_only(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let store = db.store().await;
    let now = t("2026-06-01T09:00:00Z");
    let window = SignedDuration::from_mins(2);
    store
        .record_remote_unlock("u1", "brivo", "door-1", "ana", now)
        .await
        .unwrap();
    store
        .record_remote_unlock(
            "u2",
            "brivo",
            "door-1",
            "ben",
            now + SignedDuration::from_secs(1),
        )
        .await
        .unwrap();
    store
        .record_remote_unlock("u3", "brivo", "door-2", "cy", now)
        .await
        .unwrap();
    store.forget_remote_unlock("u3").await.unwrap();
    let claim = |event: &'static str, door: &'static str, at: Timestamp| {
        let store = store.clone();
        async move {
            store
                .claim_remote_unlock("brivo", door, event, at - window, at + window)
                .await
                .unwrap()
        }
    };
    let at = now + SignedDuration::from_secs(2);
    assert_eq!(
        claim("e1", "door-1", at).await.as_deref(),
        Some("ana"),
        "the earliest first"
    );
    assert_eq!(
        claim("e1", "door-1", at).await.as_deref(),
        Some("ana"),
        "the same event again"
    );
    assert_eq!(claim("e2", "door-1", at).await.as_deref(), Some("ben"));
    assert_eq!(
        claim("e3", "door-1", at).await,
        None,
        "each unlock counts once"
    );
    assert_eq!(
        claim("e4", "door-2", at).await,
        None,
        "an unlock that did not happen"
    );
    store
        .record_remote_unlock("u4", "brivo", "door-1", "ana", now)
        .await
        .unwrap();
    let late = now + SignedDuration::from_mins(10);
    assert_eq!(claim("e5", "door-1", late).await, None, "too far apart");
    store.close().await;
    db.drop_db().await;
}

fn connection_with(c: &str, credentials: Credentials) -> Connection {
    Connection {
        id: id(c),
        provider: Provider::Brivo,
        api_url: None,
        auth_url: None,
        credentials,
        no_access_policy: NoAccessPolicy::RemoveFromGroups,
        visitor_group_ids: vec![],
        exempt_user_ids: vec![],
        redeem_passes_automatically: false,
        list_doors_in_app: true,
        link_users_by_email: false,
        monthly_call_budget: DEFAULT_MONTHLY_CALL_BUDGET,
        requests_per_second: doorsync_core::DEFAULT_REQUESTS_PER_SECOND,
        enabled: true,
    }
}

async fn credentials_are_sealed_at_rest(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let store = db.store().await;
    let now = t("2026-06-01T09:00:00Z");
    let connection = |password: Option<&str>| {
        let credentials = Credentials {
            api_key: Some("key-123".into()),
            password: password.map(str::to_owned),
            ..Default::default()
        };
        Record::Connection(connection_with("brivo", credentials))
    };
    store
        .put(connection(Some("hunter2-secret")), now)
        .await
        .unwrap();
    // Without the key the sealed credentials cannot be read: they read as absent.
    let raw = SqlStore::connect(&db.url).await.unwrap();
    let Some(Record::Connection(bare)) = raw.get(Kind::Connection, "brivo").await.unwrap() else {
        panic!()
    };
    assert_eq!(bare.credentials, Credentials::default());
    raw.close().await;
    // A PUT that leaves the password out keeps it.
    let w = store.put(connection(None), now).await.unwrap();
    let Record::Connection(c) = w.record else {
        panic!()
    };
    assert_eq!(c.credentials.password.as_deref(), Some("hunter2-secret"));
    let Some(Record::Connection(c)) = store.get(Kind::Connection, "brivo").await.unwrap() else {
        panic!()
    };
    assert_eq!(c.credentials.api_key.as_deref(), Some("key-123"));
    // A store with another key opens nothing; a write that brings only some of them is refused
    // (it could neither keep nor read the others), putting all of them again repairs them.
    let other = SqlStore::connect(&db.url)
        .await
        .unwrap()
        .with_secret_key(SecretKey::parse(&SecretKey::generate()).unwrap());
    let Some(Record::Connection(c)) = other.get(Kind::Connection, "brivo").await.unwrap() else {
        panic!()
    };
    assert_eq!(
        c.credentials,
        Credentials::default(),
        "another key opens nothing"
    );
    let err = other
        .put(connection(Some("new-pass")), now)
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::CredentialsUnreadable(_)),
        "{err:?}"
    );
    let Record::Connection(mut all) = connection(Some("new-pass")) else {
        panic!()
    };
    // An empty one clears what this instance cannot read.
    for unused in [
        &mut all.credentials.client_id,
        &mut all.credentials.client_secret,
        &mut all.credentials.admin_id,
    ] {
        *unused = Some(String::new());
    }
    other.put(Record::Connection(all), now).await.unwrap();
    let Some(Record::Connection(c)) = other.get(Kind::Connection, "brivo").await.unwrap() else {
        panic!()
    };
    assert_eq!(c.credentials.password.as_deref(), Some("new-pass"));
    other.close().await;
    // A store with no key cannot store credentials at all.
    let keyless = SqlStore::connect(&db.url).await.unwrap();
    let Record::Connection(mut fresh) = connection(Some("x")) else {
        panic!()
    };
    fresh.id = id("another");
    let err = keyless
        .put(Record::Connection(fresh), now)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Invalid {
                field: "api_key",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        keyless
            .get(Kind::Connection, "another")
            .await
            .unwrap()
            .is_none(),
        "nothing half-written"
    );
    keyless.close().await;
    store.close().await;
    db.drop_db().await;
}

/// The raw bytes of the database never contain a credential.
async fn no_secret_appears_in_the_records_table(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let store = db.store().await;
    let now = t("2026-06-01T09:00:00Z");
    let mut c = connection_with(
        "c",
        Credentials {
            client_secret: Some("s3cr3t-value".into()),
            ..Default::default()
        },
    );
    store.put(Record::Connection(c.clone()), now).await.unwrap();
    c.credentials.client_secret = None;
    use sqlx::Connection as _;
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(&db.url).await.unwrap();
    let rows: Vec<String> = sqlx::query_scalar("SELECT body FROM records")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    assert!(!rows.is_empty());
    assert!(rows.iter().all(|b| !b.contains("s3cr3t-value")), "{rows:?}");
    assert!(rows.iter().any(|b| b.contains("sealed")));
    let _ = conn.close().await;
    store.close().await;
    db.drop_db().await;
}

/// A booking written while its customer is deleted: one of the two must lose, every time, so
/// that no booking ever points at nobody (on PostgreSQL the two run truly concurrently).
async fn a_write_racing_a_delete_never_leaves_a_dangling_reference(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let store = std::sync::Arc::new(db.store().await);
    let now = t("2026-06-01T09:00:00Z");
    seed(&store, now).await;
    let (mut both, mut deletes) = (0, 0);
    for i in 0..300 {
        let c = format!("racer-{i}");
        store.put(customer(&c), now).await.unwrap();
        let (a, b) = (store.clone(), store.clone());
        let (bc, dc) = (c.clone(), c.clone());
        let write = async move { a.put(booking(&format!("bk-{bc}"), &bc, "R"), now).await };
        let delete = async move { b.delete(Kind::Customer, &dc, now).await };
        // Each goes first half the time.
        let (write, delete) = if i % 2 == 0 {
            let w = tokio::spawn(write);
            let d = tokio::spawn(delete);
            (w.await.unwrap(), d.await.unwrap())
        } else {
            let d = tokio::spawn(delete);
            let w = tokio::spawn(write);
            (w.await.unwrap(), d.await.unwrap())
        };
        match &write {
            Ok(_) => {}
            Err(StoreError::UnknownReference { field, .. }) => assert_eq!(*field, "customer_id"),
            Err(e) => panic!("write {i}: {e:?}"),
        }
        match &delete {
            Ok(true) => deletes += 1,
            Err(StoreError::InUse { .. }) => {}
            other => panic!("delete {i}: {other:?}"),
        }
        if write.is_ok() && matches!(delete, Ok(true)) {
            both += 1;
        }
        let customer_there = store.get(Kind::Customer, &c).await.unwrap().is_some();
        let booking_there = store
            .get(Kind::Booking, &format!("bk-{c}"))
            .await
            .unwrap()
            .is_some();
        assert!(
            customer_there || !booking_there,
            "try {i}: booking left pointing at a deleted customer"
        );
    }
    assert_eq!(
        both, 0,
        "a write and the delete of its target both succeeded"
    );
    assert!(deletes > 0, "the race never let a delete through");
    store.close().await;
    db.drop_db().await;
}

async fn credentials_are_never_dropped_unread_or_sent_to_a_new_host(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let store = db.store().await;
    let now = t("2026-06-01T09:00:00Z");
    let with = |secret: Option<&str>, api_url: Option<&str>| {
        let mut c = connection_with(
            "brivo",
            Credentials {
                client_secret: secret.map(str::to_owned),
                ..Default::default()
            },
        );
        c.api_url = api_url.map(str::to_owned);
        Record::Connection(c)
    };
    let secret_of = |r: Option<Record>| match r {
        Some(Record::Connection(c)) => c.credentials.client_secret,
        _ => panic!("no connection"),
    };
    store
        .put(with(Some("s3cret"), Some("https://api.example")), now)
        .await
        .unwrap();
    // Started without the key, or with another, a settings-only write is refused and the
    // sealed credentials stay as they were.
    for other in [
        SqlStore::connect(&db.url).await.unwrap(),
        SqlStore::connect(&db.url)
            .await
            .unwrap()
            .with_secret_key(SecretKey::parse(&SecretKey::generate()).unwrap()),
    ] {
        let err = other
            .put(with(None, Some("https://api.example")), now)
            .await
            .unwrap_err();
        assert!(
            matches!(err, StoreError::CredentialsUnreadable(_)),
            "{err:?}"
        );
        other.close().await;
    }
    assert_eq!(
        secret_of(store.get(Kind::Connection, "brivo").await.unwrap()).as_deref(),
        Some("s3cret"),
        "the right key still opens them"
    );
    // Pointing the connection elsewhere without the credentials is refused...
    let err = store
        .put(with(None, Some("https://evil.example")), now)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Invalid {
                field: "api_url",
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        secret_of(store.get(Kind::Connection, "brivo").await.unwrap()).as_deref(),
        Some("s3cret")
    );
    // ...and with them, only what was sent goes there.
    let mut moved = connection_with(
        "brivo",
        Credentials {
            api_key: Some("new-key".into()),
            ..Default::default()
        },
    );
    moved.api_url = Some("https://other.example".into());
    store.put(Record::Connection(moved), now).await.unwrap();
    let Some(Record::Connection(c)) = store.get(Kind::Connection, "brivo").await.unwrap() else {
        panic!()
    };
    assert_eq!(c.credentials.api_key.as_deref(), Some("new-key"));
    assert_eq!(c.credentials.client_secret, None, "the old secret followed");
    store.close().await;
    db.drop_db().await;
}

/// Records written before the `in_*` tables existed are projected at the next start, once.
async fn records_stored_before_the_input_tables_are_projected_once(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let store = db.store().await;
    let now = t("2026-06-01T09:00:00Z");
    seed(&store, now).await;
    store.put(booking("B", "a", "R"), now).await.unwrap();
    store
        .put(link(LinkKind::Resource, "R", "10"), now)
        .await
        .unwrap();
    let before = store.customer_inputs(&id("a"), now).await.unwrap().unwrap();
    assert_eq!(before.bookings.len(), 1);
    assert_eq!(before.catalog.links.len(), 1);
    // As a database migrated from an older version: the tables empty, the backfill pending.
    use sqlx::Connection as _;
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(&db.url).await.unwrap();
    for table in ["in_bookings", "in_items", "in_links", "in_locations"] {
        sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM {table}")))
            .execute(&mut conn)
            .await
            .unwrap();
    }
    sqlx::query("INSERT INTO backfill (name) VALUES ('inputs')")
        .execute(&mut conn)
        .await
        .unwrap();
    let _ = conn.close().await;
    let empty = store.customer_inputs(&id("a"), now).await.unwrap().unwrap();
    assert!(empty.bookings.is_empty());
    store.migrate(now).await.unwrap();
    let after = store.customer_inputs(&id("a"), now).await.unwrap().unwrap();
    assert_eq!(after, before);
    // Once: a second start projects nothing again (the marker is gone).
    store.migrate(now).await.unwrap();
    assert_eq!(
        store.customer_inputs(&id("a"), now).await.unwrap().unwrap(),
        after
    );
    store.close().await;
    db.drop_db().await;
}

/// Revocations first: a subject whose transition takes access away is claimed ahead of
/// subjects that fell due earlier for anything else.
async fn a_revocation_due_is_claimed_before_grants_due_earlier(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let store = db.store().await;
    let t0 = t("2026-06-01T09:00:00Z");
    let lease = SignedDuration::from_secs(30);
    store.put(customer("leaving"), t0).await.unwrap();
    let claimed = store.claim_due("w", t0, lease, 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    let end = t("2026-06-01T10:00:00Z");
    store
        .finish(
            &lease_of(&store, &cust("leaving"), "w").await,
            Outcome::Done {
                next_due_at: Some(end),
                revokes: true,
            },
        )
        .await
        .unwrap();
    // A crowd of new customers falls due before it.
    for i in 0..20 {
        store
            .put(customer(&format!("new-{i:02}")), t("2026-06-01T09:59:00Z"))
            .await
            .unwrap();
    }
    let first = store.claim_due("w", end, lease, 1).await.unwrap();
    assert_eq!(subjects(first), vec![cust("leaving")]);
    let rest = store.claim_due("w", end, lease, 100).await.unwrap();
    assert_eq!(rest.len(), 20);
    // A write that may take access away (a booking cut short) is claimed before a crowd of
    // new customers due before it: until a reconcile nobody knows whether it revokes.
    for s in (0..20)
        .map(|i| format!("new-{i:02}"))
        .chain(["leaving".into()])
    {
        store
            .finish(
                &lease_of(&store, &cust(&s), "w").await,
                Outcome::Done {
                    next_due_at: None,
                    revokes: false,
                },
            )
            .await
            .unwrap();
    }
    store.put(location("L"), end).await.unwrap();
    store.put(resource("R", "L"), end).await.unwrap();
    store.put(customer("cut"), end).await.unwrap();
    let cut = |end: &str| {
        Record::Booking(Booking {
            id: id("B"),
            customer_id: id("cut"),
            resource_id: id("R"),
            start: t("2026-06-01T09:00:00Z"),
            end: t(end),
            status: BookingStatus::Confirmed,
            cancelled_at: None,
        })
    };
    store
        .put(link(LinkKind::Resource, "R", "room"), end)
        .await
        .unwrap();
    store.put(cut("2026-06-01T18:00:00Z"), end).await.unwrap();
    store
        .claim_due("w", end, lease, 10)
        .await
        .unwrap()
        .iter()
        .for_each(|c| assert_eq!(c.subject, cust("cut")));
    // Its reconcile puts the customer in the room's group.
    let holds = mirrored("u-cut", &["room"], &["room"]);
    let fence = lease_of(&store, &cust("cut"), "w").await;
    store
        .mirror_save(&fence, "c", Some(&holds), &[])
        .await
        .unwrap();
    store
        .finish(
            &fence,
            Outcome::Done {
                next_due_at: None,
                revokes: false,
            },
        )
        .await
        .unwrap();
    let t1 = t("2026-06-01T11:00:00Z");
    for i in 20..40 {
        store
            .put(customer(&format!("new-{i:02}")), t1)
            .await
            .unwrap();
    }
    let later = t("2026-06-01T11:00:01Z");
    store.put(cut("2026-06-01T11:30:00Z"), later).await.unwrap();
    let first = store.claim_due("w", later, lease, 1).await.unwrap();
    assert_eq!(subjects(first), vec![cust("cut")]);
    // Written again unchanged, a record reaches nobody.
    store
        .finish(
            &lease_of(&store, &cust("cut"), "w").await,
            Outcome::Done {
                next_due_at: None,
                revokes: false,
            },
        )
        .await
        .unwrap();
    store.put(cut("2026-06-01T11:30:00Z"), later).await.unwrap();
    assert_eq!(due_at(&store, &cust("cut")).await, None);
    store.close().await;
    db.drop_db().await;
}

/// A member's sign-in finds them by their address (any case; not a longer address containing
/// it), as it is now; their visitors are the ones that name them as host, without the visits
/// long past. Customers stored before the address table existed are found after a start.
async fn members_are_found_by_address_and_hosts_by_their_visitors(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let store = db.store().await;
    let now = t("2026-06-01T09:00:00Z");
    let with_email = |c: &str, email: &str| {
        let Record::Customer(mut x) = customer(c) else {
            unreachable!()
        };
        x.email = Email::parse(email).unwrap();
        Record::Customer(x)
    };
    for r in [
        with_email("a", "Ana@Example.com"),
        with_email("b", "banana@example.com"),
        with_email("c", "ana@example.com.au"),
        location("L"),
    ] {
        store.put(r, now).await.unwrap();
    }
    let ids = |rs: Vec<Record>| rs.iter().map(Record::key).collect::<Vec<_>>();
    let found = store.customers_by_email(" ana@EXAMPLE.com ").await.unwrap();
    assert_eq!(ids(found), ["a"]);
    store
        .put(with_email("a", "ana@new.example"), now)
        .await
        .unwrap();
    assert!(
        store
            .customers_by_email("ana@example.com")
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        ids(store.customers_by_email("ana@new.example").await.unwrap()),
        ["a"]
    );
    // Stored before the table: found once a start has projected them.
    use sqlx::Connection as _;
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(&db.url).await.unwrap();
    for sql in [
        "DELETE FROM in_customer_emails",
        "INSERT INTO backfill (name) VALUES ('customer_emails')",
    ] {
        sqlx::query(sql).execute(&mut conn).await.unwrap();
    }
    let _ = conn.close().await;
    assert!(
        store
            .customers_by_email("banana@example.com")
            .await
            .unwrap()
            .is_empty()
    );
    store.migrate(now).await.unwrap();
    assert_eq!(
        ids(store
            .customers_by_email("banana@example.com")
            .await
            .unwrap()),
        ["b"]
    );
    assert!(store.delete(Kind::Customer, "b", now).await.unwrap());
    assert!(
        store
            .customers_by_email("banana@example.com")
            .await
            .unwrap()
            .is_empty()
    );

    let visitor = |v: &str, host: &str, arrival: &str, departure: Option<&str>| {
        Record::Visitor(Visitor {
            id: id(v),
            name: format!("Visitor {v} for ana"),
            email: Email::parse("v@example.com").unwrap(),
            host_customer_id: id(host),
            location_id: id("L"),
            arrival: t(arrival),
            departure: departure.map(t),
        })
    };
    for r in [
        visitor("today", "a", "2026-06-01T14:00:00Z", None),
        visitor(
            "tomorrow",
            "a",
            "2026-06-02T10:00:00Z",
            Some("2026-06-02T12:00:00Z"),
        ),
        visitor(
            "last-month",
            "a",
            "2026-05-01T10:00:00Z",
            Some("2026-05-01T12:00:00Z"),
        ),
        visitor("not-hers", "c", "2026-06-01T14:00:00Z", None),
    ] {
        store.put(r, now).await.unwrap();
    }
    let hosted = store.hosted_visitors("a", now).await.unwrap();
    assert_eq!(ids(hosted), ["today", "tomorrow"]);
    store.close().await;
    db.drop_db().await;
}
