//! Mail out: the outbox the store keeps, delivered over SMTP with retries. A mail is queued in
//! the transaction that needs it sent (a sign-in link with its mail), so nothing is lost between
//! the two; delivery is one instance's job at a time, under a work lease.

pub mod sink;

use crate::*;
use doorsync_store::StoreError;
use lettre::message::header::ContentType;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use secrecy::{ExposeSecret, SecretString};

/// Where mail goes out.
#[derive(Debug, Clone)]
pub struct MailConfig {
    /// `smtp://host:port` (plain, or STARTTLS when the server offers it with `?tls=required`),
    /// `smtps://host:port` (TLS from the start); `user:password@` for authentication, so it is
    /// held as a secret.
    pub smtp_url: SecretString,
    /// The sender, `doorsync <no-reply@example.com>`.
    pub from: String,
}

/// Checks a mail configuration without sending anything.
pub fn check(config: &MailConfig) -> Result<(), String> {
    AsyncSmtpTransport::<Tokio1Executor>::from_url(config.smtp_url.expose_secret())
        .map_err(|e| format!("smtp_url: {e}"))?;
    config
        .from
        .parse::<lettre::message::Mailbox>()
        .map_err(|e| format!("mail_from: {e}"))?;
    Ok(())
}

/// Mails tried per round.
const ROUND: u32 = 20;

/// When an outbox entry (a mail, an alert's webhook call) that failed `attempts` times is tried
/// again: 5 s doubling to 5 minutes.
pub(crate) fn retry_after(attempts: i64) -> SignedDuration {
    let secs = 5i64.saturating_mul(1 << attempts.clamp(0, 6));
    SignedDuration::from_secs(secs.min(300))
}

async fn send(config: &MailConfig, to: &str, subject: &str, body: &str) -> Result<(), String> {
    let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(config.smtp_url.expose_secret())
        .map_err(|e| e.to_string())?
        .timeout(Some(Duration::from_secs(30)))
        .build();
    let message = Message::builder()
        .from(config.from.parse().map_err(|e| format!("from: {e}"))?)
        .to(to.parse().map_err(|e| format!("to: {e}"))?)
        .subject(subject)
        .header(ContentType::TEXT_PLAIN)
        .body(body.to_owned())
        .map_err(|e| e.to_string())?;
    transport.send(message).await.map_err(|e| e.to_string())?;
    Ok(())
}

impl Engine {
    /// Delivers the mail that is due, recording each attempt.
    pub async fn deliver_mail(&self) -> Result<usize, StoreError> {
        let Some(config) = &self.config.mail else {
            return Ok(0);
        };
        let store = &self.reconciler.store;
        let now = self.reconciler.clock.now();
        let due = store.due_mail(now, ROUND).await?;
        let count = due.len();
        for m in due {
            match send(config, &m.to, &m.subject, &m.body).await {
                Ok(()) => store.mail_attempted(&m.id, now, None).await?,
                Err(e) => {
                    tracing::warn!(to = %m.to, error = %e, "sending mail failed");
                    let retry = now.saturating_add(retry_after(m.attempts)).unwrap_or(now);
                    store.mail_attempted(&m.id, now, Some((&e, retry))).await?;
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
    fn retries_back_off_to_five_minutes() {
        assert_eq!(retry_after(0), SignedDuration::from_secs(5));
        assert_eq!(retry_after(2), SignedDuration::from_secs(20));
        assert_eq!(retry_after(40), SignedDuration::from_secs(300));
    }

    #[test]
    fn a_bad_configuration_is_named() {
        let bad = MailConfig {
            smtp_url: "ftp://x".into(),
            from: "doorsync <a@b.example>".into(),
        };
        assert!(check(&bad).unwrap_err().starts_with("smtp_url"));
        let bad = MailConfig {
            smtp_url: "smtp://127.0.0.1:2525".into(),
            from: "not an address".into(),
        };
        assert!(check(&bad).unwrap_err().starts_with("mail_from"));
    }
}
