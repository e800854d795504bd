//! `doorsync serve` processes the soak starts, kills with SIGKILL and starts again.

use anyhow::{Context, bail, ensure};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// What every instance shares: the binary, the database, the key that seals credentials.
pub struct Setup {
    pub binary: PathBuf,
    pub database: String,
    pub secret_key: String,
    /// Where each instance's log goes.
    pub dir: PathBuf,
}

impl Setup {
    fn command(&self) -> Command {
        let mut c = Command::new(&self.binary);
        c.env("DOORSYNC_DATABASE_URL", &self.database)
            .env("DOORSYNC_SECRET_KEY", &self.secret_key)
            .env("DOORSYNC_LOG", "warn")
            .env("NO_COLOR", "1")
            .current_dir(&self.dir);
        c
    }

    /// A new API token, from `doorsync token create`.
    pub fn token(&self) -> anyhow::Result<String> {
        let out = self
            .command()
            .args(["token", "create", "--name", "soak"])
            .stderr(Stdio::inherit())
            .output()
            .with_context(|| format!("running {}", self.binary.display()))?;
        ensure!(out.status.success(), "doorsync token create failed");
        String::from_utf8(out.stdout)?
            .lines()
            .last()
            .map(|l| l.trim().to_string())
            .context("doorsync token create printed no token")
    }
}

/// One instance: its port stays the same across restarts.
pub struct Instance {
    pub n: usize,
    pub base: String,
    port: u16,
    child: Option<Child>,
}

impl Instance {
    pub fn new(n: usize) -> anyhow::Result<Instance> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        Ok(Instance {
            n,
            base: format!("http://127.0.0.1:{port}"),
            port,
            child: None,
        })
    }

    pub fn is_up(&self) -> bool {
        self.child.is_some()
    }

    /// Starts the process and waits until it answers `/healthz`.
    pub async fn start(&mut self, setup: &Setup, http: &reqwest::Client) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log_path(&setup.dir, self.n))?;
        let child = setup
            .command()
            .arg("serve")
            .env("DOORSYNC_LISTEN", format!("127.0.0.1:{}", self.port))
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()
            .with_context(|| format!("starting {}", setup.binary.display()))?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                bail!(
                    "doorsync serve #{} exited on start ({status}); see {}",
                    self.n,
                    log_path(&setup.dir, self.n).display()
                );
            }
            if let Ok(r) = http.get(format!("{}/healthz", self.base)).send().await
                && r.status().is_success()
            {
                return Ok(());
            }
            ensure!(
                Instant::now() < deadline,
                "doorsync serve #{} never answered",
                self.n
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL: no shutdown hook runs, whatever was in flight is cut.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn log_path(dir: &Path, n: usize) -> PathBuf {
    dir.join(format!("doorsync-{n}.log"))
}
