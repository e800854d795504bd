//! Paging across more than one page, and filters whose values contain the syntax's own
//! separators.

use std::collections::HashSet;

use super::{calls, start};
use crate::{Filter, NewUser};

#[tokio::test]
async fn group_members_span_several_pages() {
    let env = start().await;
    let client = env.client();
    let group = client.create_group("Big Event").await.unwrap();
    let mut ids = HashSet::new();
    for n in 0..130 {
        let user = client
            .create_user(&NewUser {
                first_name: format!("Member{n}"),
                last_name: "Paging".into(),
                external_id: Some(format!("paging-{n}")),
                ..NewUser::default()
            })
            .await
            .unwrap();
        if n % 2 == 0 {
            client.add_user_to_group(group.id, user.id).await.unwrap();
        } else {
            let groups = client
                .update_user_groups(user.id, &[group.id], &[])
                .await
                .unwrap();
            assert!(groups.iter().any(|g| g.id == group.id));
        }
        ids.insert(user.id);
    }

    let members = client.group_members(group.id).await.unwrap();
    assert_eq!(members.len(), 130);
    assert_eq!(members.iter().map(|m| m.id).collect::<HashSet<_>>(), ids);
    // 100 + 30: two calls, and the short page ends the walk without a third.
    assert_eq!(calls(&client, "GET /groups/{id}/users", "ok"), 2);

    // Page by page, with a smaller page size.
    let mut pager = client.group_members_pager(group.id).page_size(50);
    let mut sizes = Vec::new();
    while let Some(page) = pager.next_page().await.unwrap() {
        sizes.push(page.len());
    }
    assert_eq!(sizes, [50, 50, 30]);
    assert!(pager.next_page().await.unwrap().is_none());

    let users = client
        .list_users(Some(&Filter::new().eq("lastname", ["Paging"])))
        .await
        .unwrap();
    assert_eq!(users.len(), 130);
}

#[tokio::test]
async fn query_special_characters_round_trip() {
    // `&`, `+`, `=`, `#`, `?` and spaces are the query encoding's business.
    let env = start().await;
    let client = env.client();
    let odd = client.create_group("R&D + Ops = #1?").await.unwrap();
    client.create_group("R").await.unwrap();
    let found = client
        .list_groups(Some(&Filter::new().eq("name", ["R&D + Ops = #1?"])))
        .await
        .unwrap();
    assert_eq!(found.iter().map(|g| g.id).collect::<Vec<_>>(), [odd.id]);
    let found = client
        .list_groups(Some(&Filter::new().eq("name", ["Day Pass"])))
        .await
        .unwrap();
    assert!(!found.is_empty());
    assert!(found.iter().all(|g| g.name.contains("Day Pass")));
}

#[tokio::test]
async fn separators_inside_values_cannot_change_the_filter() {
    let env = start().await;
    let client = env.client();
    let comma = client.create_group("Smith, Jones; Ltd").await.unwrap();
    client.create_group("Smith").await.unwrap();
    client.create_group("Jones").await.unwrap();
    // Split at `,` or `;` this would match "Smith" and "Jones" too (or be a syntax error).
    let found = client
        .list_groups(Some(&Filter::new().eq("name", ["Smith, Jones; Ltd"])))
        .await
        .unwrap();
    assert_eq!(
        found.iter().map(|g| g.id).collect::<Vec<_>>(),
        [comma.id],
        "{found:?}"
    );
    // An injected condition stays part of the value: no "Day Pass or anything but zzz".
    let found = client
        .list_groups(Some(&Filter::new().eq("name", ["Day Pass;name__ne:zzz"])))
        .await
        .unwrap();
    assert!(found.is_empty(), "{found:?}");
    let found = client
        .list_groups(Some(&Filter::new().eq("name", ["Day Pass,Staff"])))
        .await
        .unwrap();
    assert!(found.is_empty(), "{found:?}");
    // Several values are still several values.
    let found = client
        .list_groups(Some(&Filter::new().eq("name", ["Smith", "Jones"])))
        .await
        .unwrap();
    assert_eq!(found.len(), 3);
}
