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
