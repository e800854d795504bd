//! Invitation e-mails delivered over SMTP to a tiny in-test sink.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::Method;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use super::{Harness, eventually};
use crate::SimOptions;

/// Accepts SMTP conversations and keeps each message's DATA section.
async fn smtp_sink() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let messages: Arc<Mutex<Vec<String>>> = Arc::default();
    let store = messages.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let store = store.clone();
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut lines = BufReader::new(read).lines();
                write.write_all(b"220 sink ready\r\n").await.unwrap();
                let mut data: Option<String> = None;
                while let Ok(Some(line)) = lines.next_line().await {
                    if let Some(body) = &mut data {
                        if line == "." {
                            store.lock().unwrap().push(data.take().unwrap());
                            write.write_all(b"250 queued\r\n").await.unwrap();
                        } else {
                            body.push_str(&line);
                            body.push('\n');
                        }
                        continue;
                    }
                    let verb = line.split(' ').next().unwrap_or("").to_ascii_uppercase();
                    let answer: &[u8] = match verb.as_str() {
                        "EHLO" => b"250-sink\r\n250 8BITMIME\r\n",
                        "DATA" => {
                            data = Some(String::new());
                            b"354 go ahead\r\n"
                        }
                        "QUIT" => {
                            write.write_all(b"221 bye\r\n").await.unwrap();
                            break;
                        }
                        _ => b"250 ok\r\n",
                    };
                    write.write_all(answer).await.unwrap();
                }
            });
        }
    });
    (addr, messages)
}

#[tokio::test]
async fn invitation_emails_are_delivered_over_smtp_when_configured() {
    let (addr, messages) = smtp_sink().await;
    let h = Harness::start_with(SimOptions {
        smtp: Some(addr),
        ..SimOptions::default()
    })
    .await;
    let user = h.create_user("Ada", "Lovelace", None).await;
    let inv = h
        .post(
            &format!(
                "/users/{user}/credentials/digital-invitations?sendInvitationEmail=true&language=en"
            ),
            json!({"referenceId": "ada@example.com"}),
        )
        .await
        .json();
    let code = inv["accessCode"].as_str().unwrap().to_string();
    let message = eventually(Duration::from_secs(5), || {
        let messages = messages.clone();
        async move { messages.lock().unwrap().first().cloned() }
    })
    .await;
    assert!(message.contains("To: <ada@example.com>"), "{message}");
    assert!(message.contains("Subject: Your Brivo Mobile Pass invitation"));
    assert!(message.contains(&code));
    assert!(message.contains(&format!("/__sim/redeem/{code}")));

    let delivered = eventually(Duration::from_secs(5), || {
        let h = &h;
        async move {
            let outbox = h.admin(Method::GET, "/outbox", None).await.json();
            (outbox[0]["delivered"] == true).then_some(outbox)
        }
    })
    .await;
    assert_eq!(delivered[0]["access_code"], code.as_str());
}
