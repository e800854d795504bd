//! Mobile Pass digital invitations (reference §12): create, 409 while pending, outbox, redeem,
//! list, cancel.

use reqwest::Method;
use serde_json::json;

use super::{Harness, reply};

fn invitations(user: u64) -> String {
    format!("/users/{user}/credentials/digital-invitations")
}

#[tokio::test]
async fn invitation_lifecycle_with_email_and_redeem() {
    let h = Harness::start().await;
    let user = h.create_user("Ada", "Lovelace", Some("cust-1")).await;
    let r = h
        .post(
            &format!("{}?sendInvitationEmail=true&language=en", invitations(user)),
            json!({"referenceId": "ada@example.com"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let inv = r.json();
    assert_eq!(inv["status"], "PENDING");
    assert_eq!(inv["referenceId"], "ada@example.com");
    assert_eq!(inv["nfcEnabled"], false);
    assert!(inv["id"].is_u64() && inv["credentialId"].is_u64());
    let code = inv["accessCode"].as_str().unwrap().to_string();
    assert_eq!(code.len(), 8);
    let created: jiff::Timestamp = inv["created"].as_str().unwrap().parse().unwrap();
    let expiration: jiff::Timestamp = inv["expiration"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        expiration.duration_since(created),
        jiff::SignedDuration::from_hours(72)
    );
    assert!(inv["created"].as_str().unwrap().ends_with('Z'));

    let again = h
        .post(
            &invitations(user),
            json!({"referenceId": "ada@example.com"}),
        )
        .await;
    assert_eq!(again.status, 409);
    assert_eq!(
        again.json()["message"],
        "There is already a pending invitation for the cardHolder. No new invitation will be generated"
    );

    let outbox = h.admin(Method::GET, "/outbox", None).await.json();
    assert_eq!(outbox.as_array().unwrap().len(), 1);
    let mail = &outbox[0];
    assert_eq!(mail["to"], "ada@example.com");
    assert_eq!(mail["access_code"], code.as_str());
    assert_eq!(mail["delivered"], false, "no SMTP server configured");
    let link = format!("{}/__sim/redeem/{code}", h.sim.base_url());
    let body = mail["body"].as_str().unwrap();
    assert!(body.contains(&code) && body.contains(&link), "{body}");

    let pending = h
        .get(&format!("{}?filter=status__eq:pending", invitations(user)))
        .await
        .json();
    assert_eq!(pending["count"], 1);
    assert_eq!(pending["data"][0]["accessCode"], code.as_str());

    assert!(
        h.get(&format!("/users/{user}/credentials")).await.json()["data"]
            .as_array()
            .unwrap()
            .is_empty()
    );

    // The member opens the link in the e-mail.
    let page = reply(h.http.get(&link).send().await.unwrap()).await;
    assert_eq!(page.status, 200);
    assert!(page.text.contains("ready"));

    let redeemed = h
        .get(&format!("{}?filter=status__eq:redeemed", invitations(user)))
        .await
        .json();
    assert_eq!(redeemed["count"], 1);
    let credentials = h.get(&format!("/users/{user}/credentials")).await.json();
    assert_eq!(credentials["count"], 1);
    assert_eq!(credentials["data"][0]["id"], inv["credentialId"]);
    assert_eq!(credentials["data"][0]["credentialFormat"]["id"], 307);

    // Redeeming again is harmless; a new invitation may now be created.
    let r = h
        .admin(Method::POST, &format!("/invitations/{code}/redeem"), None)
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["status"], "REDEEMED");
    let second = h
        .post(
            &invitations(user),
            json!({"referenceId": "ada@example.com"}),
        )
        .await;
    assert_eq!(second.status, 200);
    assert_eq!(
        h.admin(Method::GET, "/outbox", None)
            .await
            .json()
            .as_array()
            .unwrap()
            .len(),
        1,
        "sendInvitationEmail defaults to false"
    );
}

#[tokio::test]
async fn cancelling_a_pending_invitation() {
    let h = Harness::start().await;
    let user = h.create_user("Ada", "Lovelace", None).await;
    let inv = h
        .post(
            &invitations(user),
            json!({"referenceId": "ada@example.com"}),
        )
        .await
        .json();
    let r = h.delete(&invitations(user)).await;
    assert_eq!(r.status, 200);
    let cancelled = r.json();
    assert_eq!(cancelled["status"], "CANCELLED");
    assert_eq!(cancelled["id"], inv["id"]);
    assert!(cancelled["cancelDate"].is_string());

    let r = h.delete(&invitations(user)).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["message"], "Digital invitation not found");

    let code = inv["accessCode"].as_str().unwrap();
    let r = h
        .admin(Method::POST, &format!("/invitations/{code}/redeem"), None)
        .await;
    assert_eq!(r.status, 410);

    let all = h
        .get(&format!("{}?filter=status__eq:all", invitations(user)))
        .await
        .json();
    assert_eq!(all["count"], 1);
    // Without a status filter only pending invitations are listed.
    let unfiltered = h.get(&invitations(user)).await.json();
    assert_eq!(unfiltered["count"], 0, "{unfiltered}");
    let second = h
        .post(
            &invitations(user),
            json!({"referenceId": "ada@example.com"}),
        )
        .await
        .json();
    let unfiltered = h.get(&invitations(user)).await.json();
    assert_eq!(unfiltered["count"], 1);
    assert_eq!(unfiltered["data"][0]["id"], second["id"]);
    assert_eq!(unfiltered["data"][0]["status"], "PENDING");
    let cancelled_only = h
        .get(&format!(
            "{}?filter=status__eq:cancelled",
            invitations(user)
        ))
        .await
        .json();
    assert_eq!(cancelled_only["data"][0]["id"], inv["id"]);
    let all = h
        .get(&format!("{}?filter=status__eq:all", invitations(user)))
        .await
        .json();
    assert_eq!(all["count"], 2);
    assert_eq!(
        h.post(&invitations(user), json!({"referenceId": "not an email"}))
            .await
            .status,
        400
    );
    assert_eq!(
        h.post(&invitations(999), json!({"referenceId": "a@example.com"}))
            .await
            .status,
        404
    );
}

/// A fresh account has the allotment of Brivo's documented example, not an unbounded one.
#[tokio::test]
async fn the_default_wallet_pass_allotment_is_the_documented_500() {
    let h = Harness::start().await;
    let allotment = h.get("/credentials/digital/allotment").await.json();
    assert_eq!(allotment, json!({"allotted": 500, "assigned": 0}));
}

#[tokio::test]
async fn the_wallet_pass_allotment_bounds_invitations() {
    let h = Harness::start().await;
    let r = h
        .admin(Method::PUT, "/config", Some(json!({"wallet_passes": 1})))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let a = h.create_user("Ada", "Lovelace", Some("a")).await;
    let b = h.create_user("Bob", "Byron", Some("b")).await;
    let allotment = h.get("/credentials/digital/allotment").await.json();
    assert_eq!(allotment, json!({"allotted": 1, "assigned": 0}));
    let first = h
        .post(&invitations(a), json!({"referenceId": "ada@example.com"}))
        .await;
    assert_eq!(first.status, 200, "{}", first.text);
    let second = h
        .post(&invitations(b), json!({"referenceId": "bob@example.com"}))
        .await;
    assert_eq!(second.status, 412, "{}", second.text);
    assert_eq!(
        second.json()["message"],
        "You don't have any Brivo Wallet Passes available."
    );
    assert_eq!(
        h.get("/credentials/digital/allotment").await.json(),
        json!({"allotted": 1, "assigned": 1})
    );
    // A cancelled invitation gives its pass back.
    assert_eq!(h.delete(&invitations(a)).await.status, 200);
    let third = h
        .post(&invitations(b), json!({"referenceId": "bob@example.com"}))
        .await;
    assert_eq!(third.status, 200, "{}", third.text);
}
