//! `doorsync demo`: a whole coworking space on one machine. An in-process brivo-sim (over real
//! HTTP) holds the example account of Brivo's setup guide; doorsync, on an SQLite file, is seeded
//! with passes, rooms, offices, customers, teams, contracts, bookings through the day and a
//! visitor, all linked; its engine then moves people in and out of groups as the day goes, and
//! the demo prints each change as it happens.

use crate::app;
use anyhow::Context;
use brivo_client::{BrivoClient, ClientConfig, Grant};
use brivo_sim::{SimOptions, spawn};
use doorsync_core::*;
use doorsync_store::{AuditFilter, Kind, Record, SecretKey, SqlStore, Store};
use jiff::{SignedDuration, Timestamp};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub struct DemoArgs {
    pub listen: String,
    pub sim_listen: String,
    pub dir: Option<PathBuf>,
    pub limits: doorsync_web::server::Limits,
}

fn id(s: &str) -> Id {
    Id::parse(s).expect("demo ids are valid")
}

fn mins(m: i64) -> SignedDuration {
    SignedDuration::from_mins(m)
}

/// The directory's secret key, made on first use so a restart can read its own credentials.
fn secret_key(dir: &Path) -> anyhow::Result<SecretKey> {
    let file = dir.join("secret.key");
    let key = match std::fs::read_to_string(&file) {
        Ok(k) => k,
        Err(_) => {
            let k = SecretKey::generate();
            std::fs::write(&file, &k).with_context(|| format!("writing {}", file.display()))?;
            k
        }
    };
    Ok(SecretKey::parse(&key)?)
}

/// The demo's administrator, whose password is kept beside the demo's database so that a resumed
/// demo prints one that works (a real installation keeps only the hash).
async fn demo_admin(store: &SqlStore, dir: &Path) -> anyhow::Result<(String, String)> {
    const EMAIL: &str = "admin@example.com";
    let file = dir.join("dashboard-password");
    let kept = std::fs::read_to_string(&file).ok();
    let known = store.admin_credentials(EMAIL).await?;
    if let (Some(p), Some(_)) = (&kept, &known) {
        return Ok((EMAIL.into(), p.trim().to_owned()));
    }
    let password = doorsync_web::admin::new_password();
    let hash = doorsync_web::admin::hash_password(&password);
    // Its password file lost: a new password rather than a removal, which would be the last
    // administrator's.
    match known {
        Some((a, _)) => {
            store.set_admin_password(&a.id, &hash).await?;
        }
        None => {
            store
                .create_admin("adm_demo", EMAIL, &hash, Timestamp::now())
                .await?;
        }
    }
    std::fs::write(&file, &password).with_context(|| format!("writing {}", file.display()))?;
    Ok((EMAIL.into(), password))
}

/// The demo's API token, kept beside its database like the dashboard password: a resumed demo
/// prints the same token rather than adding another each start.
async fn demo_token(store: &SqlStore, dir: &Path) -> anyhow::Result<String> {
    let file = dir.join("api-token");
    let now = Timestamp::now();
    if let Ok(kept) = std::fs::read_to_string(&file) {
        let kept = kept.trim().to_owned();
        if store
            .token_by_hash(&doorsync_web::auth::hash(&kept), now)
            .await?
            .is_some()
        {
            return Ok(kept);
        }
    }
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    let token = format!(
        "ds_{}",
        b.iter().map(|x| format!("{x:02x}")).collect::<String>()
    );
    store
        .create_token("demo", &doorsync_web::auth::hash(&token), now)
        .await?;
    std::fs::write(&file, &token).with_context(|| format!("writing {}", file.display()))?;
    Ok(token)
}

pub async fn run(
    args: DemoArgs,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let dir = match args.dir {
        Some(d) => d,
        None => std::env::temp_dir().join(format!("doorsync-demo-{}", std::process::id())),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let sim_listener = tokio::net::TcpListener::bind(&args.sim_listen)
        .await
        .with_context(|| {
            format!(
                "brivo-sim cannot listen on {} (use --sim-listen)",
                args.sim_listen
            )
        })?;
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("doorsync cannot listen on {} (use --listen)", args.listen))?;
    let addr = listener.local_addr()?;
    let sim = spawn(
        sim_listener,
        SimOptions {
            state_file: Some(dir.join("brivo-sim.json")),
            // The dashboard's "Sign in with Brivo" comes back here.
            redirect_uri: format!("http://{addr}/admin/oauth/callback"),
            ..Default::default()
        },
    )
    .await?;
    let url = format!("sqlite://{}", dir.join("doorsync.db").display());
    let _only = crate::sole_instance(&url)?;
    let store = SqlStore::connect(&url)
        .await?
        .with_secret_key(secret_key(&dir)?);
    store.migrate(Timestamp::now()).await?;
    store.expire_leases().await?;
    let account = sim.account();
    let brivo = BrivoClient::new(ClientConfig::new(
        sim.api_url(),
        sim.auth_url(),
        account.api_key.clone(),
        account.client_id.clone(),
        account.client_secret.clone(),
        Grant::Password {
            username: account.admin_id.clone(),
            password: account.password.clone().into(),
        },
    ))?;
    let fresh = match store.get(Kind::Connection, "brivo").await? {
        None => {
            seed(&store, &brivo, &sim).await?;
            true
        }
        Some(Record::Connection(mut c)) => {
            // Resumed: the emulator may listen elsewhere this time.
            c.api_url = Some(sim.api_url());
            c.auth_url = Some(sim.auth_url());
            store.put(Record::Connection(c), Timestamp::now()).await?;
            false
        }
        Some(_) => false,
    };
    let token = demo_token(&store, &dir).await?;
    let (admin_email, admin_password) = demo_admin(&store, &dir).await?;
    println!("doorsync demo: a coworking space kept in step with brivo-sim (Ctrl-C stops it)");
    println!(
        "  data:       {} ({})",
        dir.display(),
        if fresh { "new" } else { "resumed" }
    );
    println!("  dashboard:  http://{addr}/admin");
    println!("  api:        http://{addr}/api/v1 (OpenAPI at /api/v1/openapi.json)");
    println!(
        "  brivo-sim:  {} (admin surface under /__sim/)",
        sim.base_url()
    );
    println!(
        "  sign-in:    brivo-sim admin id {:?}, password {:?}",
        account.admin_id, account.password
    );
    println!(
        "  try:        curl -H \"Authorization: Bearer $TOKEN\" http://{addr}/api/v1/customers/jo/access"
    );
    // The member app's sign-in mail goes to a local SMTP server, shown at /app/outbox.
    let (smtp, outbox) = doorsync_engine::mail::sink::start("127.0.0.1:0").await?;
    println!(
        "  member app: http://{addr}/app (sign in as ana@example.com; the mail shows at http://{addr}/app/outbox)"
    );
    println!("dashboard sign-in: {admin_email} {admin_password}");
    println!("api token: {token}");
    let feed = tokio::spawn(feed(store.clone()));
    let swiping = swipes(store.clone(), &sim);
    // brivo-sim delivers door events to the demo's webhook as Brivo would.
    let options = app::Options {
        engine: doorsync_engine::EngineConfig {
            public_url: Some(format!("http://{addr}")),
            mail: Some(doorsync_engine::mail::MailConfig {
                smtp_url: format!("smtp://{smtp}").into(),
                from: crate::config::DEFAULT_MAIL_FROM.into(),
            }),
            ..Default::default()
        },
        outbox: Some(outbox),
        limits: args.limits,
    };
    let result = tokio::select! {
        r = app::run(store, listener, options, shutdown) => r,
        () = swiping => Ok(()),
    };
    feed.abort();
    sim.shutdown().await;
    result
}

/// Members (and a member of staff) come through the front door now and then, so that presence
/// fills in: check-ins, and failed check-ins for whoever nothing covers. Never ends.
async fn swipes(store: SqlStore, sim: &brivo_sim::SimHandle) {
    const WHO: [&str; 8] = ["ana", "staff", "fay", "gus", "hana", "ben", "ivan", "lena"];
    let mut turn = 0usize;
    loop {
        tokio::time::sleep(std::time::Duration::from_secs(8)).await;
        let who = WHO[turn % WHO.len()];
        turn += 1;
        let connection = match store.get(Kind::Connection, "brivo").await {
            Ok(Some(Record::Connection(c))) => c,
            _ => continue,
        };
        let door = store
            .list(Kind::Door, None, 500)
            .await
            .unwrap_or_default()
            .into_iter()
            .find_map(|r| match r {
                Record::Door(d) if d.presence_role == PresenceRole::CheckIn => d.provider_door_id,
                _ => None,
            });
        let user = if who == "staff" {
            connection.exempt_user_ids.first().cloned()
        } else {
            match Id::parse(who) {
                Ok(c) => store
                    .mirror_user("brivo", &Subject::Customer(c))
                    .await
                    .ok()
                    .flatten()
                    .map(|m| m.user_id),
                Err(_) => None,
            }
        };
        if let (Some(door), Some(user)) = (door, user)
            && let (Ok(door), Ok(user)) = (door.parse::<u64>(), user.parse::<u64>())
        {
            sim.swipe(user, door);
        }
    }
}

/// Prints each change doorsync makes in Brivo, with the group's name and the cause.
async fn feed(store: SqlStore) {
    let mut seen = store
        .audit(&AuditFilter::default(), None, 1)
        .await
        .ok()
        .and_then(|a| a.first().map(|e| e.seq))
        .unwrap_or(0);
    let mut names: BTreeMap<String, String> = BTreeMap::new();
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        if names.is_empty()
            && let Ok(dir) = store.directory("brivo", "group").await
        {
            names = dir.into_iter().map(|e| (e.provider_id, e.name)).collect();
        }
        let Ok(mut entries) = store.audit(&AuditFilter::default(), None, 200).await else {
            continue;
        };
        entries.retain(|e| e.seq > seen);
        entries.reverse();
        for e in entries {
            seen = e.seq;
            let group = e.group_id.as_ref().map(|g| {
                names
                    .get(g)
                    .cloned()
                    .unwrap_or_else(|| format!("group {g}"))
            });
            let local = e.at.to_zoned_datetime(
                jiff::tz::TimeZone::get("Europe/London").unwrap_or(jiff::tz::TimeZone::UTC),
            );
            println!(
                "{}  {:<22} {:<18} {:<20} {}{}",
                local.strftime("%H:%M:%S"),
                e.operation,
                e.subject,
                group.unwrap_or_default(),
                e.cause.map(|c| format!("({c}) ")).unwrap_or_default(),
                if e.outcome == "ok" {
                    String::new()
                } else {
                    e.outcome
                },
            );
        }
    }
}

async fn seed(
    store: &SqlStore,
    brivo: &BrivoClient,
    sim: &brivo_sim::SimHandle,
) -> anyhow::Result<()> {
    let now = Timestamp::now();
    let groups: BTreeMap<String, u64> = brivo
        .list_groups(None)
        .await?
        .into_iter()
        .map(|g| (g.name, g.id))
        .collect();
    let site = brivo
        .list_sites(None)
        .await?
        .first()
        .map(|s| s.id.to_string());
    let visitors = match groups.get("Visitors") {
        Some(g) => *g,
        None => brivo.create_group("Visitors").await?.id,
    };
    // Staff (cleaners) are the operator's: never touched.
    let mut exempt = vec![];
    if let Some(staff) = groups.get("Staff") {
        exempt = brivo
            .group_members(*staff)
            .await?
            .into_iter()
            .map(|u| u.id.to_string())
            .collect();
    }
    let account = sim.account();
    let put = |r: Record| async move { store.put(r, now).await.map(|_| ()) };
    put(Record::Connection(Connection {
        id: id("brivo"),
        provider: Provider::Brivo,
        api_url: Some(sim.api_url()),
        auth_url: Some(sim.auth_url()),
        credentials: Credentials {
            api_key: Some(account.api_key),
            client_id: Some(account.client_id),
            client_secret: Some(account.client_secret),
            admin_id: Some(account.admin_id),
            password: Some(account.password),
            refresh_token: None,
        },
        no_access_policy: NoAccessPolicy::RemoveFromGroups,
        visitor_group_ids: vec![visitors.to_string()],
        exempt_user_ids: exempt,
        redeem_passes_automatically: false,
        list_doors_in_app: true,
        link_users_by_email: false,
        monthly_call_budget: DEFAULT_MONTHLY_CALL_BUDGET,
        requests_per_second: doorsync_core::DEFAULT_REQUESTS_PER_SECOND,
        enabled: true,
    }))
    .await?;
    let london = Zone::parse("Europe/London")?;
    put(Record::Location(Location {
        end_access_when_days_used: false,
        id: id("hq"),
        name: "Flex Space HQ".into(),
        timezone: london.clone(),
        connection_id: Some(id("brivo")),
        site_id: site,
        lead: DEFAULT_LEAD,
        lag: DEFAULT_LAG,
    }))
    .await?;
    // The front door checks members in, as the guide's Entry locks activity has it.
    for door in brivo.list_access_points(None).await? {
        if door.name == "Front Door" {
            put(Record::Door(Door {
                id: id(&format!("brivo:door:{}", door.id)),
                location_id: id("hq"),
                name: door.name,
                presence_role: PresenceRole::CheckIn,
                provider_door_id: Some(door.id.to_string()),
                gone_at: None,
            }))
            .await?;
        }
    }
    let link = |kind: LinkKind, item: &str, group: &str| {
        let group_id = groups.get(group).map(|g| g.to_string());
        let item = id(item);
        async move {
            match group_id {
                Some(group_id) => store
                    .put(
                        Record::Link(Link {
                            kind,
                            item_id: item,
                            group_id,
                        }),
                        now,
                    )
                    .await
                    .map(|_| ()),
                None => Ok(()),
            }
        }
    };
    for (p, name) in [
        ("day-pass", "Day Pass"),
        ("ten-day-pass", "10-Day Pass"),
        ("membership", "Membership Pass"),
    ] {
        put(Record::Pass(Pass {
            id: id(p),
            location_id: id("hq"),
            name: name.into(),
        }))
        .await?;
        link(LinkKind::Pass, p, name).await?;
    }
    for n in 1..=4 {
        let (r, name) = (format!("room-{n}"), format!("Meeting Room {n}"));
        put(Record::Resource(Resource {
            id: id(&r),
            location_id: id("hq"),
            name: name.clone(),
            lead: None,
            lag: None,
        }))
        .await?;
        link(LinkKind::Resource, &r, &name).await?;
    }
    for n in 1..=6 {
        let (d, name) = (format!("office-{n}"), format!("Private Office {n}"));
        put(Record::Desk(Desk {
            id: id(&d),
            location_id: id("hq"),
            name: name.clone(),
            kind: DeskKind::Office,
        }))
        .await?;
        link(LinkKind::Desk, &d, &name).await?;
    }
    let people = [
        ("ana", "Ana Lima"),
        ("ben", "Ben Okafor"),
        ("chloe", "Chloe Martin"),
        ("dev", "Dev Patel"),
        ("eli", "Eli Cohen"),
        ("fay", "Fay Wong"),
        ("gus", "Gus Berg"),
        ("hana", "Hana Sato"),
        ("ivan", "Ivan Petrov"),
        ("jo", "Jo Silva"),
        ("kai", "Kai Müller"),
        ("lena", "Lena Novak"),
    ];
    for (c, name) in people {
        put(Record::Customer(Customer {
            id: id(c),
            name: name.into(),
            email: Email::parse(&format!("{c}@example.com"))?,
            phone: None,
            status: CustomerStatus::Active,
            status_since: now,
        }))
        .await?;
    }
    let today = now.to_zoned_datetime(london.tz()).date();
    let contract =
        |k: &str, c: &str, desk: &str, start: jiff::civil::Date, end: Option<jiff::civil::Date>| {
            Record::Contract(Contract {
                id: id(k),
                customer_id: id(c),
                desk_ids: vec![id(desk)],
                start_date: start,
                end_date: end,
                status: ContractStatus::Active,
                cancelled_at: None,
            })
        };
    put(contract(
        "acme-office",
        "ana",
        "office-1",
        today.first_of_month(),
        None,
    ))
    .await?;
    put(contract(
        "nova-office",
        "dev",
        "office-2",
        today,
        today.checked_add(jiff::Span::new().months(3)).ok(),
    ))
    .await?;
    put(contract(
        "old-office",
        "gus",
        "office-3",
        today.first_of_month(),
        today.yesterday().ok(),
    ))
    .await?;
    for (t, name, payer, members) in [
        ("acme", "Acme Ltd", "ana", vec!["ben", "chloe"]),
        ("nova", "Nova Studio", "dev", vec!["eli"]),
    ] {
        put(Record::Team(Team {
            id: id(t),
            name: name.into(),
            paying_member_id: id(payer),
            member_ids: members.into_iter().map(id).collect(),
        }))
        .await?;
    }
    let grant =
        |g: &str, c: &str, pass: &str, from: Timestamp, until: Timestamp, uses: Option<u32>| {
            Record::PassGrant(PassGrant {
                id: id(g),
                customer_id: id(c),
                pass_id: id(pass),
                valid_from: from,
                valid_until: until,
                uses,
            })
        };
    let day = |d: jiff::civil::Date| {
        london
            .tz()
            .to_timestamp(d.to_datetime(jiff::civil::Time::midnight()))
            .unwrap_or(now)
    };
    let tomorrow = today.tomorrow().unwrap_or(today);
    let next_month = today
        .first_of_month()
        .checked_add(jiff::Span::new().months(2))
        .unwrap_or(today);
    put(grant(
        "fay-day",
        "fay",
        "day-pass",
        day(today),
        day(tomorrow),
        Some(1),
    ))
    .await?;
    put(grant(
        "gus-ten",
        "gus",
        "ten-day-pass",
        day(today.first_of_month()),
        day(next_month),
        Some(10),
    ))
    .await?;
    put(grant(
        "hana-member",
        "hana",
        "membership",
        day(today.first_of_month()),
        day(next_month),
        None,
    ))
    .await?;
    // Bookings through the day, placed so that something changes every minute or two: with the
    // 15-minute lead and lag, a booking starting in 16 minutes opens its room in one.
    let at = |m: i64| now.checked_add(mins(m)).unwrap_or(now);
    let bookings = [
        ("ivan-now", "ivan", "room-1", -30, 30),
        ("jo-next", "jo", "room-2", 16, 46),
        ("kai-soon", "kai", "room-3", 17, 47),
        ("lena-done", "lena", "room-4", -60, -13),
        ("ben-later", "ben", "room-4", 19, 79),
        ("jo-afternoon", "jo", "room-1", 120, 180),
    ];
    for (b, c, r, start, end) in bookings {
        put(Record::Booking(Booking {
            id: id(b),
            customer_id: id(c),
            resource_id: id(r),
            start: at(start),
            end: at(end),
            status: BookingStatus::Confirmed,
            cancelled_at: None,
        }))
        .await?;
    }
    put(Record::Visitor(Visitor {
        id: id("victor"),
        name: "Victor Visitor".into(),
        email: Email::parse("victor@example.com")?,
        host_customer_id: id("ana"),
        location_id: id("hq"),
        arrival: at(20),
        departure: Some(at(80)),
    }))
    .await?;
    Ok(())
}
