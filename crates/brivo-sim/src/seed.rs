//! The accounts a fresh emulator starts with. Ids are fixed and look like Brivo's (eight- and
//! nine-digit numbers) so tests and demos can name them; new records take ids from 15 570 000 up.

use jiff::Timestamp;

use crate::model::*;
use crate::state::{AccountInfo, State};
use crate::{Account, Seed};

pub const ACCOUNT_ID: u64 = 2_206_431;
pub const ADMIN_USER_ID: u64 = 912_347;
pub const SITE_ID: u64 = 4_218_870;
pub const PANEL_ID: u64 = 508_331;
/// The first door's id; the others follow in the order of [`DOORS`].
pub const FIRST_DOOR_ID: u64 = 408_023_601;
/// The first group's id; the others follow in the order of [`GROUPS`], then "Staff".
pub const FIRST_GROUP_ID: u64 = 15_541_101;
pub const STAFF_GROUP_ID: u64 = FIRST_GROUP_ID + GROUPS.len() as u64;
pub const CLEANER_USER_ID: u64 = 15_560_001;
/// The account's schedules: "24x7 - Always On", which every seeded permission uses, and
/// "Office Hours".
pub const ALWAYS_SCHEDULE_ID: u64 = 4_218_880;
pub const OFFICE_HOURS_SCHEDULE_ID: u64 = 4_218_881;
const FIRST_FREE_ID: u64 = 15_570_000;

/// Door names, and the floor each one is on (0 for the ground-floor front door).
pub const DOORS: [(&str, u8); 13] = [
    ("Front Door", 0),
    ("Floor 1 Door", 1),
    ("Floor 2 Door", 2),
    ("Meeting Room 1 Door", 1),
    ("Meeting Room 2 Door", 1),
    ("Meeting Room 3 Door", 2),
    ("Meeting Room 4 Door", 2),
    ("Office 1 Door", 1),
    ("Office 2 Door", 1),
    ("Office 3 Door", 1),
    ("Office 4 Door", 2),
    ("Office 5 Door", 2),
    ("Office 6 Door", 2),
];

/// The 13 groups of the demo space, each with the door (by name) it opens besides the front
/// door and its floor door; `None` for passes, which open both floors.
pub const GROUPS: [(&str, Option<&str>); 13] = [
    ("Day Pass", None),
    ("10-Day Pass", None),
    ("Membership Pass", None),
    ("Meeting Room 1", Some("Meeting Room 1 Door")),
    ("Meeting Room 2", Some("Meeting Room 2 Door")),
    ("Meeting Room 3", Some("Meeting Room 3 Door")),
    ("Meeting Room 4", Some("Meeting Room 4 Door")),
    ("Private Office 1", Some("Office 1 Door")),
    ("Private Office 2", Some("Office 2 Door")),
    ("Private Office 3", Some("Office 3 Door")),
    ("Private Office 4", Some("Office 4 Door")),
    ("Private Office 5", Some("Office 5 Door")),
    ("Private Office 6", Some("Office 6 Door")),
];

pub fn build(seed: Seed, credentials: Account, now: Timestamp) -> State {
    let account = AccountInfo {
        credentials,
        account_id: ACCOUNT_ID,
        admin_user_id: ADMIN_USER_ID,
        admin_name: "Sim Admin".into(),
    };
    let mut state = State::new(account, FIRST_FREE_ID);
    add_building(&mut state);
    add_schedules(&mut state);
    if seed == Seed::Demo {
        add_demo_groups(&mut state, now);
    }
    state
}

fn add_building(state: &mut State) {
    state.sites.insert(
        SITE_ID,
        Site {
            id: SITE_ID,
            site_name: "Flex Space HQ".into(),
            time_zone: "Europe/London".into(),
            address: Address {
                street_address1: Some("1 Example Street".into()),
                city: Some("London".into()),
                postal_code: Some("EC1A 1AA".into()),
                country: Some("United Kingdom".into()),
                ..Address::default()
            },
        },
    );
    state.panels.insert(
        PANEL_ID,
        ControlPanel {
            id: PANEL_ID,
            name: "Flex Space HQ Panel".into(),
            site_id: SITE_ID,
            online: true,
        },
    );
    for (i, (name, _)) in DOORS.iter().enumerate() {
        let id = FIRST_DOOR_ID + i as u64;
        state.access_points.insert(
            id,
            AccessPoint {
                id,
                name: (*name).into(),
                control_panel_id: PANEL_ID,
                site_id: SITE_ID,
                activation_enabled: true,
                two_factor_enabled: false,
            },
        );
    }
}

/// Schedules are account-wide ("Universal"), so both seeds have them.
pub fn add_schedules(state: &mut State) {
    for (id, name) in [
        (ALWAYS_SCHEDULE_ID, "24x7 - Always On"),
        (OFFICE_HOURS_SCHEDULE_ID, "Office Hours"),
    ] {
        state.schedules.insert(
            id,
            Schedule {
                id,
                name: name.into(),
            },
        );
    }
}

/// A permission on the always-on schedule.
fn always() -> Permission {
    Permission {
        schedule_id: ALWAYS_SCHEDULE_ID,
        privacy_mode_override: false,
    }
}

fn door_id(name: &str) -> u64 {
    let index = DOORS
        .iter()
        .position(|(n, _)| *n == name)
        .expect("seed names only doors it defines");
    FIRST_DOOR_ID + index as u64
}

fn floor_door(floor: u8) -> u64 {
    door_id(&format!("Floor {floor} Door"))
}

fn add_demo_groups(state: &mut State, now: Timestamp) {
    let front = door_id("Front Door");
    for (i, (name, own_door)) in GROUPS.iter().enumerate() {
        let id = FIRST_GROUP_ID + i as u64;
        state.groups.insert(id, group(id, name));
        state.group_doors.insert((id, front), always());
        match own_door {
            None => {
                state.group_doors.insert((id, floor_door(1)), always());
                state.group_doors.insert((id, floor_door(2)), always());
            }
            Some(door) => {
                let floor = DOORS
                    .iter()
                    .find(|(n, _)| n == door)
                    .map(|(_, f)| *f)
                    .unwrap_or(1);
                state.group_doors.insert((id, floor_door(floor)), always());
                state.group_doors.insert((id, door_id(door)), always());
            }
        }
    }
    state
        .groups
        .insert(STAFF_GROUP_ID, group(STAFF_GROUP_ID, "Staff"));
    for door in state.access_points.keys().copied().collect::<Vec<_>>() {
        state.group_doors.insert((STAFF_GROUP_ID, door), always());
    }
    state.insert_user(User {
        id: CLEANER_USER_ID,
        external_id: None,
        first_name: "Pat".into(),
        middle_name: None,
        last_name: "Cleaner".into(),
        pin: None,
        effective_from: None,
        effective_to: None,
        ble_two_factor_exempt: None,
        emails: vec![Email {
            address: "cleaner@flexspace.example".into(),
            kind: Some("work".into()),
        }],
        phone_numbers: Vec::new(),
        suspended: false,
        created: now,
        updated: now,
    });
    state.add_membership(STAFF_GROUP_ID, CLEANER_USER_ID, now);
}

fn group(id: u64, name: &str) -> Group {
    Group {
        id,
        name: name.into(),
        keypad_unlock: false,
        immune_to_antipassback: false,
        excluded_from_lockdown: false,
        antipassback_reset_time: None,
    }
}
