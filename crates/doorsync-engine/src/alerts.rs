//! Alerts that reach someone: a connection paused longer than a threshold, credentials refused,
//! drift found by the audit. Each goes to an outgoing webhook (signed with HMAC-SHA256, retried
//! with backoff) and to the operators' e-mail, once an hour at most per condition while it
//! lasts; `sync/status` shows the ones that hold.

use crate::*;
use doorsync_store::{Alert, AlertSend, ConnectionState, OutgoingHook, OutgoingMail, StoreError};
use hmac::{KeyInit, Mac};
use secrecy::{ExposeSecret, SecretString};

/// Where alerts go.
#[derive(Debug, Clone, Default)]
pub struct AlertConfig {
    pub webhook: Option<AlertWebhook>,
    /// Operators to e-mail (needs the mail settings).
    pub emails: Vec<String>,
    /// A connection paused this long alerts.
    pub pause_after: Duration,
}

#[derive(Debug, Clone)]
pub struct AlertWebhook {
    pub url: String,
    /// Signs each call: `X-Doorsync-Signature: t=UNIX,v1=HEX`, the HMAC-SHA256 of `UNIX.BODY`.
    pub secret: SecretString,
}

/// One alert per condition per this long, while it lasts.
pub const QUIET: SignedDuration = SignedDuration::from_hours(1);
/// An alert not delivered within this long is dropped.
const DELIVER_WITHIN: SignedDuration = SignedDuration::from_hours(24);
const ROUND: u32 = 20;

/// The signature header's value for `body` sent at `unix` seconds.
pub fn signature(secret: &str, unix: i64, body: &str) -> String {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes())
        .expect("HMAC takes a key of any length");
    mac.update(format!("{unix}.{body}").as_bytes());
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("t={unix},v1={hex}")
}

impl Engine {
    /// Looks at a connection's state: a pause streak longer than the threshold alerts, one for
    /// refused credentials alerts at once; a connection that works again resolves both.
    pub(crate) async fn connection_alerts(
        &self,
        c: &str,
        state: &ConnectionState,
        alerting: &std::collections::BTreeSet<String>,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let store = &self.reconciler.store;
        let paused = state.pauses > 0 && state.paused_until.is_some();
        let reason = state.pause_reason.clone().unwrap_or_default();
        let refused = paused && reason.starts_with(crate::provider::ErrorKind::Auth.as_str());
        let (pause, credentials) = (
            format!("connection_paused:{c}"),
            format!("credentials_refused:{c}"),
        );
        if paused {
            let message = format!("The Brivo connection {c} is paused: {reason}");
            let after = SignedDuration::try_from(self.config.alerts.pause_after)
                .unwrap_or(SignedDuration::ZERO);
            self.raise(&pause, "connection_paused", c, &message, after, now)
                .await?;
        } else if alerting.contains(&pause) {
            store.resolve_alert(&pause, now).await?;
        }
        if refused {
            let message = format!(
                "Brivo refuses the credentials of connection {c}: nothing is synced until they are put right ({reason})"
            );
            self.raise(
                &credentials,
                "credentials_refused",
                c,
                &message,
                SignedDuration::ZERO,
                now,
            )
            .await?;
        } else if alerting.contains(&credentials) {
            store.resolve_alert(&credentials, now).await?;
        }
        Ok(())
    }

    /// After an audit: drift found alerts; an audit that finds none resolves it.
    pub(crate) async fn drift_alert(
        &self,
        report: &crate::drift::AuditReport,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let c = report.connection_id.as_str();
        let condition = format!("drift_found:{c}");
        let found = report.strangers_removed + report.unexpected_members + report.missing_members;
        if found == 0 {
            return self.reconciler.store.resolve_alert(&condition, now).await;
        }
        let message = format!(
            "The drift audit of connection {c} found Brivo's groups changed outside doorsync and repaired them: {} people removed who should not be there, {} found where they were not expected, {} missing",
            report.strangers_removed, report.unexpected_members, report.missing_members
        );
        self.raise(
            &condition,
            "drift_found",
            c,
            &message,
            SignedDuration::ZERO,
            now,
        )
        .await
    }

    /// Notes the condition, and sends it once it has held `after`, at most once per [`QUIET`].
    async fn raise(
        &self,
        condition: &str,
        kind: &str,
        connection: &str,
        message: &str,
        after: SignedDuration,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let store = &self.reconciler.store;
        let alert = store
            .observe_alert(condition, kind, Some(connection), message, now)
            .await?;
        if now.duration_since(alert.active_since) < after {
            return Ok(());
        }
        let send = self.outgoing(&alert, now);
        if send.hooks.is_empty() && send.mails.is_empty() {
            return Ok(());
        }
        let expires = now.saturating_add(DELIVER_WITHIN).unwrap_or(now);
        if store
            .send_alert(condition, now, QUIET, &send, expires)
            .await?
        {
            tracing::warn!(condition, "alert sent: {message}");
        }
        Ok(())
    }

    fn outgoing(&self, alert: &Alert, now: Timestamp) -> AlertSend {
        let config = &self.config.alerts;
        let stamp = now.as_millisecond();
        let mut send = AlertSend::default();
        if let Some(hook) = &config.webhook {
            let body = serde_json::json!({
                "kind": alert.kind,
                "condition": alert.condition,
                "connection_id": alert.connection_id,
                "message": alert.message,
                "since": alert.active_since,
                "at": now,
            });
            send.hooks.push(OutgoingHook {
                id: format!("alert-{}-{stamp}", alert.condition),
                url: hook.url.clone(),
                body: body.to_string(),
                attempts: 0,
            });
        }
        if self.config.mail.is_some() {
            for to in &config.emails {
                send.mails.push(OutgoingMail {
                    id: format!("alert-{}-{to}-{stamp}", alert.condition),
                    to: to.clone(),
                    subject: format!("doorsync alert: {}", alert.kind.replace('_', " ")),
                    body: format!(
                        "{}\n\nSince {}. doorsync sends this once an hour while it lasts; the dashboard's Sync page shows it too.\n",
                        alert.message, alert.active_since
                    ),
                    attempts: 0,
                });
            }
        }
        send
    }

    /// Delivers the webhook calls that are due, signed, recording each attempt.
    pub async fn deliver_hooks(&self) -> Result<usize, StoreError> {
        let Some(hook) = &self.config.alerts.webhook else {
            return Ok(0);
        };
        let store = &self.reconciler.store;
        let now = self.reconciler.clock.now();
        let due = store.due_hooks(now, ROUND).await?;
        let count = due.len();
        if count == 0 {
            return Ok(0);
        }
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| StoreError::Invalid {
                field: "alert_webhook_url",
                message: e.to_string(),
            })?;
        for h in due {
            let unix = self.reconciler.clock.now().as_second();
            let sent = client
                .post(&h.url)
                .header("content-type", "application/json")
                .header(
                    "x-doorsync-signature",
                    signature(hook.secret.expose_secret(), unix, &h.body),
                )
                .body(h.body.clone())
                .send()
                .await;
            let failure = match sent {
                Ok(r) if r.status().is_success() => None,
                Ok(r) => Some(format!("answered {}", r.status())),
                Err(e) => Some(e.to_string()),
            };
            match failure {
                None => store.hook_attempted(&h.id, now, None).await?,
                Some(e) => {
                    tracing::warn!(url = %h.url, error = %e, "an alert webhook call failed");
                    let retry = now
                        .saturating_add(crate::mail::retry_after(h.attempts))
                        .unwrap_or(now);
                    store.hook_attempted(&h.id, now, Some((&e, retry))).await?;
                }
            }
        }
        Ok(count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_the_hmac_of_the_time_and_the_body() {
        // RFC 4231 test case 2's key and data, with the time before the body.
        let s = signature("Jefe", 1, "what do ya want for nothing?");
        assert!(s.starts_with("t=1,v1="), "{s}");
        assert_eq!(s.len(), "t=1,v1=".len() + 64);
        assert_ne!(s, signature("Jefe", 2, "what do ya want for nothing?"));
        assert_ne!(s, signature("jefe", 1, "what do ya want for nothing?"));
    }
}
