//! `--state FILE`: the account survives a restart.

use reqwest::Method;

use super::Harness;
use crate::{MembershipOp, SimOptions};

#[tokio::test]
async fn state_is_written_after_each_change_and_loaded_at_start() {
    let dir = std::env::temp_dir().join(format!("brivo-sim-state-{}", crate::util::random_hex(8)));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("state.json");
    let options = SimOptions {
        state_file: Some(file.clone()),
        ..SimOptions::default()
    };

    let h = Harness::start_with(options.clone()).await;
    let g = h.create_group("Persistent").await;
    let u = h.create_user("Ada", "Lovelace", Some("cust-1")).await;
    h.put(&format!("/groups/{g}/users/{u}"), None).await;
    let token = h.token.clone();
    assert!(file.exists());
    assert!(!dir.join("state.json.tmp").exists(), "written by rename");
    h.sim.shutdown().await;

    let h2 = Harness::start_with(options).await;
    let r = h2
        .call_with_token(Method::GET, "/users/cust-1/external", None, &token)
        .await;
    assert_eq!(r.status, 200, "tokens and users survive: {}", r.text);
    assert_eq!(r.json()["id"], u);
    let members = h2.get(&format!("/groups/{g}/users")).await.json();
    assert_eq!(members["data"][0]["id"], u);
    let history = h2.sim.membership_history();
    assert!(
        history
            .iter()
            .any(|c| c.group_id == g && c.user_id == u && c.op == MembershipOp::Add)
    );
    // New ids do not collide with loaded ones.
    let next = h2.create_user("Grace", "Hopper", None).await;
    assert!(next > u);
    h2.sim.shutdown().await;
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Permissions keep their schedule across a restart, and a state file from before schedules
/// were emulated (permissions as `[group, door]` pairs) still loads, on the always-on schedule.
#[tokio::test]
async fn permissions_and_schedules_survive_and_old_files_load() {
    use crate::seed::{
        ALWAYS_SCHEDULE_ID, FIRST_DOOR_ID, FIRST_GROUP_ID, OFFICE_HOURS_SCHEDULE_ID,
    };
    let dir = std::env::temp_dir().join(format!("brivo-sim-state-{}", crate::util::random_hex(8)));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("state.json");
    let options = SimOptions {
        state_file: Some(file.clone()),
        ..SimOptions::default()
    };
    let office_1 = FIRST_DOOR_ID + 7;
    let path = format!("/groups/{FIRST_GROUP_ID}/access/access-points");

    let h = Harness::start_with(options.clone()).await;
    let r = h
        .put(
            &format!("{path}/{office_1}"),
            Some(serde_json::json!({"schedule": {"id": OFFICE_HOURS_SCHEDULE_ID}})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    h.sim.shutdown().await;

    let h2 = Harness::start_with(options.clone()).await;
    let list = h2.get(&path).await.json();
    assert_eq!(list["count"], 4);
    assert_eq!(list["data"][3]["schedule"]["id"], OFFICE_HOURS_SCHEDULE_ID);
    h2.sim.shutdown().await;

    // Rewrite the file the way older versions wrote it.
    let mut state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    let pairs: Vec<serde_json::Value> = state["group_doors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| serde_json::json!([p["group_id"], p["access_point_id"]]))
        .collect();
    state["group_doors"] = pairs.into();
    state.as_object_mut().unwrap().remove("schedules");
    std::fs::write(&file, serde_json::to_vec(&state).unwrap()).unwrap();

    let h3 = Harness::start_with(options).await;
    let list = h3.get(&path).await.json();
    assert_eq!(list["count"], 4);
    assert_eq!(list["data"][3]["schedule"]["id"], ALWAYS_SCHEDULE_ID);
    assert_eq!(list["data"][3]["schedule"]["name"], "24x7 - Always On");
    h3.sim.shutdown().await;
    std::fs::remove_dir_all(&dir).unwrap();
}
