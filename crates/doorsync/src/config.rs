//! Settings: defaults, then `doorsync.toml`, then `DOORSYNC_*` variables, then flags.

use anyhow::{Context, bail};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use std::path::Path;

pub const DEFAULT_DATABASE_URL: &str = "sqlite://doorsync.db";
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

#[derive(Debug, Clone)]
pub struct Config {
    pub database_url: String,
    pub listen: String,
    pub log: String,
    /// `text` (the default) or `json`, one object a line, for log shippers.
    pub log_format: LogFormat,
    /// 64 hex characters; seals provider credentials in the database.
    pub secret_key: Option<SecretString>,
    /// The longest a subject goes without a reconcile when nothing marks it due.
    pub resync_interval: std::time::Duration,
    /// Where Brivo reaches this service, for its event webhook (`https://doorsync.example.com`).
    pub public_url: Option<String>,
    /// Where mail goes out (the member app's sign-in links); none is sent without it.
    pub mail: Option<doorsync_engine::mail::MailConfig>,
    /// Where alerts go, and after how long a pause alerts.
    pub alerts: doorsync_engine::alerts::AlertConfig,
    /// The most connections one client address (IPv6: one /64) may hold open.
    pub connections_per_address: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// The sender when `mail_from` names none.
pub const DEFAULT_MAIL_FROM: &str = "doorsync <doorsync@localhost>";

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    database_url: Option<String>,
    listen: Option<String>,
    log: Option<String>,
    log_format: Option<String>,
    secret_key: Option<String>,
    resync_interval: Option<String>,
    public_url: Option<String>,
    smtp_url: Option<String>,
    mail_from: Option<String>,
    alert_webhook_url: Option<String>,
    alert_webhook_secret: Option<String>,
    alert_emails: Option<Vec<String>>,
    alert_pause_after: Option<String>,
    connections_per_address: Option<usize>,
}

impl Config {
    /// Reads `path` if given (it must exist) or `doorsync.toml` if present, then `env`.
    pub fn load(
        path: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
    ) -> anyhow::Result<Config> {
        let file = match path {
            Some(p) => Some(read(p)?),
            None if Path::new("doorsync.toml").exists() => Some(read(Path::new("doorsync.toml"))?),
            None => None,
        }
        .unwrap_or_default();
        let pick = |var: &str, from_file: Option<String>, default: &str| {
            env(var)
                .filter(|v| !v.is_empty())
                .or(from_file)
                .unwrap_or_else(|| default.to_owned())
        };
        let resync = pick("DOORSYNC_RESYNC_INTERVAL", file.resync_interval, "PT4H");
        let resync_interval = iso_duration(&resync)
            .filter(|d| *d >= std::time::Duration::from_secs(60))
            .with_context(|| {
                format!("resync_interval: {resync:?} is not an ISO 8601 duration of a minute or more, such as PT4H")
            })?;
        let public_url = env("DOORSYNC_PUBLIC_URL")
            .filter(|v| !v.is_empty())
            .or(file.public_url)
            .map(|u| u.trim_end_matches('/').to_owned());
        if let Some(u) = &public_url {
            match url::Url::parse(u) {
                Ok(p) if matches!(p.scheme(), "http" | "https") && p.path() == "/" => {}
                _ => bail!(
                    "public_url: {u:?} is not an http or https address without a path, such as https://doorsync.example.com"
                ),
            }
        }
        let mail = env("DOORSYNC_SMTP_URL")
            .filter(|v| !v.is_empty())
            .or(file.smtp_url)
            .map(|smtp_url| doorsync_engine::mail::MailConfig {
                smtp_url: smtp_url.into(),
                from: pick(
                    "DOORSYNC_MAIL_FROM",
                    file.mail_from.clone(),
                    DEFAULT_MAIL_FROM,
                ),
            });
        if let Some(m) = &mail {
            doorsync_engine::mail::check(m).map_err(|e| anyhow::anyhow!(e))?;
        }
        let alerts = alerts(
            &env,
            (
                file.alert_webhook_url,
                file.alert_webhook_secret,
                file.alert_emails,
                file.alert_pause_after,
            ),
            mail.is_some(),
        )?;
        let connections_per_address =
            match env("DOORSYNC_CONNECTIONS_PER_ADDRESS").filter(|v| !v.is_empty()) {
                Some(v) => v.parse().ok(),
                None => Some(
                    file.connections_per_address
                        .unwrap_or(doorsync_web::server::PER_CLIENT),
                ),
            }
            .filter(|n| *n >= 1)
            .context("connections_per_address: not a whole number of 1 or more")?;
        let config = Config {
            connections_per_address,
            resync_interval,
            public_url,
            mail,
            alerts,
            database_url: pick(
                "DOORSYNC_DATABASE_URL",
                file.database_url,
                DEFAULT_DATABASE_URL,
            ),
            listen: pick("DOORSYNC_LISTEN", file.listen, DEFAULT_LISTEN),
            log: pick("DOORSYNC_LOG", file.log, "info"),
            log_format: match pick("DOORSYNC_LOG_FORMAT", file.log_format, "text").as_str() {
                "text" => LogFormat::Text,
                "json" => LogFormat::Json,
                other => bail!("log_format: {other:?} is neither text nor json"),
            },
            secret_key: env("DOORSYNC_SECRET_KEY")
                .filter(|v| !v.is_empty())
                .or(file.secret_key)
                .map(SecretString::from),
        };
        if let Some(k) = &config.secret_key {
            doorsync_store::SecretKey::parse(k.expose_secret())
                .map_err(|e| anyhow::anyhow!("secret_key: {e}"))?;
        }
        if !(config.database_url.starts_with("sqlite:")
            || config.database_url.starts_with("postgres://")
            || config.database_url.starts_with("postgresql://"))
        {
            bail!(
                "database_url must start with sqlite:// or postgres://, not {:?}",
                config.database_url
            );
        }
        Ok(config)
    }
}

/// The alert settings: a webhook (an http or https address with a secret to sign its calls),
/// operators' e-mail addresses (mail must be set up), and after how long a pause alerts.
/// An ISO 8601 duration (`PT10M`), not negative; jiff also reads the friendly `10m`, which the
/// settings do not take.
fn iso_duration(text: &str) -> Option<std::time::Duration> {
    Some(text)
        .filter(|r| r.starts_with(['P', 'p']))
        .and_then(|r| r.parse::<jiff::SignedDuration>().ok())
        .and_then(|d| std::time::Duration::try_from(d).ok())
}

type AlertFile = (
    Option<String>,
    Option<String>,
    Option<Vec<String>>,
    Option<String>,
);

fn alerts(
    env: &impl Fn(&str) -> Option<String>,
    (file_url, file_secret, file_emails, file_after): AlertFile,
    mail: bool,
) -> anyhow::Result<doorsync_engine::alerts::AlertConfig> {
    use doorsync_engine::alerts::{AlertConfig, AlertWebhook};
    let get =
        |var: &str, from_file: Option<String>| env(var).filter(|v| !v.is_empty()).or(from_file);
    let webhook = match (
        get("DOORSYNC_ALERT_WEBHOOK_URL", file_url),
        get("DOORSYNC_ALERT_WEBHOOK_SECRET", file_secret),
    ) {
        (None, _) => None,
        (Some(url), secret) => {
            match url::Url::parse(&url) {
                Ok(u) if matches!(u.scheme(), "http" | "https") => {}
                _ => bail!("alert_webhook_url: {url:?} is not an http or https address"),
            }
            let secret = secret.filter(|s| s.len() >= 16).with_context(|| {
                "alert_webhook_secret: the alert webhook needs a secret of 16 characters or more to sign its calls"
            })?;
            Some(AlertWebhook {
                url,
                secret: secret.into(),
            })
        }
    };
    let emails: Vec<String> = match env("DOORSYNC_ALERT_EMAILS").filter(|v| !v.is_empty()) {
        Some(list) => list
            .split(',')
            .map(|e| e.trim().to_owned())
            .filter(|e| !e.is_empty())
            .collect(),
        None => file_emails.unwrap_or_default(),
    };
    for e in &emails {
        if doorsync_core::Email::parse(e).is_err() {
            bail!("alert_emails: {e:?} is not an e-mail address");
        }
    }
    if !emails.is_empty() && !mail {
        bail!("alert_emails: e-mailing alerts needs smtp_url");
    }
    let after = get("DOORSYNC_ALERT_PAUSE_AFTER", file_after).unwrap_or_else(|| "PT10M".into());
    let pause_after = iso_duration(&after).with_context(|| {
        format!("alert_pause_after: {after:?} is not an ISO 8601 duration, such as PT10M")
    })?;
    Ok(AlertConfig {
        webhook,
        emails,
        pause_after,
    })
}

fn read(path: &Path) -> anyhow::Result<File> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("in {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_override_the_file_and_the_file_overrides_defaults() {
        let dir = std::env::temp_dir().join(format!("doorsync-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("doorsync.toml");
        std::fs::write(
            &file,
            "database_url = \"postgres://db/x\"\nlisten = \"0.0.0.0:9000\"\n",
        )
        .unwrap();
        let c = Config::load(Some(&file), |_| None).unwrap();
        assert_eq!(
            (c.database_url.as_str(), c.listen.as_str()),
            ("postgres://db/x", "0.0.0.0:9000")
        );
        let c = Config::load(Some(&file), |v| {
            (v == "DOORSYNC_LISTEN").then(|| "127.0.0.1:1".into())
        })
        .unwrap();
        assert_eq!(
            (c.database_url.as_str(), c.listen.as_str()),
            ("postgres://db/x", "127.0.0.1:1")
        );
        std::fs::write(&file, "databse_url = \"x\"\n").unwrap();
        let err = format!("{:#}", Config::load(Some(&file), |_| None).unwrap_err());
        assert!(err.contains("databse_url"), "{err}");
        assert!(Config::load(Some(&dir.join("missing.toml")), |_| None).is_err());
        let err = Config::load(None, |v| {
            (v == "DOORSYNC_SMTP_URL").then(|| "mail.example".into())
        })
        .unwrap_err();
        assert!(format!("{err:#}").starts_with("smtp_url"), "{err:#}");
        let c = Config::load(None, |v| match v {
            "DOORSYNC_SMTP_URL" => Some("smtp://127.0.0.1:2525".into()),
            "DOORSYNC_MAIL_FROM" => Some("Desk <desk@space.example>".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(c.mail.unwrap().from, "Desk <desk@space.example>");
        let err = Config::load(None, |v| {
            (v == "DOORSYNC_ALERT_WEBHOOK_URL").then(|| "https://hooks.example/x".into())
        })
        .unwrap_err();
        assert!(
            format!("{err:#}").contains("alert_webhook_secret"),
            "{err:#}"
        );
        let err = Config::load(None, |v| {
            (v == "DOORSYNC_ALERT_EMAILS").then(|| "ops@example.com".into())
        })
        .unwrap_err();
        assert!(format!("{err:#}").contains("smtp_url"), "{err:#}");
        let c = Config::load(None, |v| match v {
            "DOORSYNC_ALERT_WEBHOOK_URL" => Some("https://hooks.example/x".into()),
            "DOORSYNC_ALERT_WEBHOOK_SECRET" => Some("0123456789abcdef".into()),
            "DOORSYNC_SMTP_URL" => Some("smtp://127.0.0.1:2525".into()),
            "DOORSYNC_ALERT_EMAILS" => Some("ops@example.com, desk@example.com".into()),
            "DOORSYNC_ALERT_PAUSE_AFTER" => Some("PT2M".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(c.alerts.emails.len(), 2);
        assert_eq!(c.alerts.pause_after, std::time::Duration::from_secs(120));
        // Secrets print as [REDACTED], whatever logs the settings.
        let c = Config::load(None, |v| match v {
            "DOORSYNC_SECRET_KEY" => Some("ab".repeat(32)),
            "DOORSYNC_SMTP_URL" => Some("smtp://desk:mail-password@127.0.0.1:2525".into()),
            "DOORSYNC_ALERT_WEBHOOK_URL" => Some("https://hooks.example/x".into()),
            "DOORSYNC_ALERT_WEBHOOK_SECRET" => Some("hook-secret-0123456789".into()),
            _ => None,
        })
        .unwrap();
        let shown = format!("{c:?}");
        for secret in [
            "ab".repeat(32).as_str(),
            "mail-password",
            "hook-secret-0123456789",
        ] {
            assert!(!shown.contains(secret), "{shown}");
        }
        let c = Config::load(None, |v| {
            (v == "DOORSYNC_DATABASE_URL").then(|| "mysql://x".into())
        });
        assert!(c.is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_public_url_is_an_address_without_a_path() {
        let with = |v: &str| {
            let v = v.to_owned();
            Config::load(None, move |k| {
                (k == "DOORSYNC_PUBLIC_URL").then(|| v.clone())
            })
        };
        assert_eq!(
            with("https://doorsync.example.com/")
                .unwrap()
                .public_url
                .as_deref(),
            Some("https://doorsync.example.com")
        );
        for bad in [
            "doorsync.example.com",
            "ftp://x.example",
            "https://x.example/hooks",
        ] {
            assert!(
                with(bad).unwrap_err().to_string().contains("public_url"),
                "{bad}"
            );
        }
        assert_eq!(with("").unwrap().public_url, None);
    }

    #[test]
    fn connections_per_address_is_a_whole_number_of_one_or_more() {
        let with = |v: &'static str| {
            Config::load(None, move |k| {
                (k == "DOORSYNC_CONNECTIONS_PER_ADDRESS").then(|| v.to_owned())
            })
        };
        let c = Config::load(None, |_| None).unwrap();
        assert_eq!(c.connections_per_address, 32);
        assert_eq!(with("1000").unwrap().connections_per_address, 1000);
        for bad in ["0", "-1", "many"] {
            let e = with(bad).unwrap_err().to_string();
            assert!(e.contains("connections_per_address"), "{bad}: {e}");
        }
    }

    #[test]
    fn the_resync_interval_is_an_iso_duration_of_a_minute_or_more() {
        let c = Config::load(None, |_| None).unwrap();
        assert_eq!(c.resync_interval, std::time::Duration::from_secs(4 * 3600));
        let with = |v: &'static str| {
            Config::load(None, move |k| {
                (k == "DOORSYNC_RESYNC_INTERVAL").then(|| v.to_owned())
            })
        };
        assert_eq!(
            with("PT30M").unwrap().resync_interval,
            std::time::Duration::from_secs(1800)
        );
        for bad in ["15m", "PT1S", "-PT1H"] {
            let e = with(bad).unwrap_err().to_string();
            assert!(e.contains("resync_interval"), "{bad}: {e}");
        }
    }
}
