//! The client-side rate limit, and the server's over-QPS answer when the limit is too generous.

use std::time::{Duration, Instant};

use super::{calls, start};
use crate::BrivoClient;

#[tokio::test]
async fn calls_are_spaced_to_the_configured_rate_across_clones_and_clients() {
    let env = start().await;
    let mut config = env.config();
    config.requests_per_second = 20.0;
    let client = BrivoClient::new(config.clone()).unwrap();
    // Another client with the same key draws from the same budget.
    let other = BrivoClient::new(config).unwrap();
    client.sign_in().await.unwrap();
    other.sign_in().await.unwrap();

    let started = Instant::now();
    let tasks: Vec<_> = (0..40)
        .map(|n| {
            let client = if n % 2 == 0 {
                client.clone()
            } else {
                other.clone()
            };
            tokio::spawn(async move { client.list_sites(None).await })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    // 40 calls at 20/s, evenly spaced (no saved-up burst; the sign-ins took earlier slots): at
    // least 39 intervals of 50 ms.
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(1950), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(4), "{elapsed:?}");
}

#[tokio::test]
async fn server_over_qps_pauses_and_everything_still_succeeds() {
    let env = start().await;
    let client = env.client();
    client.sign_in().await.unwrap();
    env.server_rate_limit(Some(5)).await;
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.list_sites(None).await })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    env.server_rate_limit(None).await;
    assert!(calls(&client, "GET /sites", "over_qps") >= 1);
    assert_eq!(calls(&client, "GET /sites", "ok"), 8);
}
