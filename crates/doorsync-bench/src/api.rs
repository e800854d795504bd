//! `doorsync-bench api`: a real `doorsync serve` process on a database a `run` loaded, measured
//! from outside as a platform meets it: the latency of `GET /customers/{id}/access` and of a
//! booking `PUT`, one request at a time, and the process's peak memory.

use anyhow::{Context, bail, ensure};
use doorsync_store::{DirectoryEntry, SqlStore, Store};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::workload::{Rng, Size};

pub struct Options {
    pub database: String,
    pub size: Size,
    pub size_name: String,
    pub requests: usize,
    /// Groups the connection's directory lists, as a large Brivo account would.
    pub directory_groups: u64,
    pub doorsync: PathBuf,
    /// Wait for the engine to settle before measuring.
    pub settle: bool,
}

/// The `doorsync` binary beside this one (both built by the same `cargo build`).
pub fn default_binary() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("doorsync")))
        .unwrap_or_else(|| PathBuf::from("doorsync"))
}

/// Kills the server however the measurement ends.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn doorsync(o: &Options) -> Command {
    let mut c = Command::new(&o.doorsync);
    c.env("DOORSYNC_DATABASE_URL", &o.database)
        .env("DOORSYNC_LOG", "warn")
        .env_remove("DOORSYNC_LISTEN");
    c
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Peak resident memory of process `pid`, in MiB.
fn peak_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// A connection whose directory lists `n` groups, the workload's among them, so that the access
/// view names groups out of a directory the size of a large account's.
async fn fill_directory(database: &str, n: u64) -> anyhow::Result<()> {
    let store = SqlStore::connect(database).await?;
    store.migrate(jiff::Timestamp::now()).await?;
    let entries: Vec<DirectoryEntry> = (0..n)
        .map(|i| DirectoryEntry {
            provider_id: (10_001 + i).to_string(),
            name: format!("Group {i}"),
            parent_id: None,
        })
        .collect();
    store
        .replace_directory("bench-directory", "group", &entries)
        .await?;
    store.close().await;
    Ok(())
}

fn token(o: &Options) -> anyhow::Result<String> {
    let out = doorsync(o)
        .args(["token", "create", "--name", "doorsync-bench api"])
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running {}", o.doorsync.display()))?;
    ensure!(out.status.success(), "doorsync token create failed");
    String::from_utf8(out.stdout)?
        .lines()
        .last()
        .map(|l| l.trim().to_string())
        .context("doorsync token create printed no token")
}

async fn wait_ready(http: &reqwest::Client, base: &str, server: &mut Server) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(status) = server.0.try_wait()? {
            bail!("doorsync serve exited before answering: {status}");
        }
        if let Ok(r) = http.get(format!("{base}/healthz")).send().await
            && r.status().is_success()
        {
            return Ok(());
        }
        ensure!(Instant::now() < deadline, "doorsync serve never answered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the engine has reconciled everyone due (a freshly loaded database makes every
/// customer due), so that the requests meet a service in its steady state, not one catching up.
async fn settle(http: &reqwest::Client, base: &str, token: &str) -> anyhow::Result<f64> {
    let started = Instant::now();
    let deadline = started + Duration::from_secs(1800);
    loop {
        let status: Value = http
            .get(format!("{base}/api/v1/sync/status"))
            .bearer_auth(token)
            .send()
            .await?
            .json()
            .await?;
        let due = status["due"].as_i64().context("sync status without due")?;
        let in_flight = status["in_flight"].as_i64().unwrap_or(0);
        eprint!("\rsettling: {due} due, {in_flight} in flight   ");
        if due == 0 && in_flight == 0 {
            eprintln!();
            return Ok(started.elapsed().as_secs_f64());
        }
        ensure!(
            Instant::now() < deadline,
            "the engine never settled: {status}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * v.len() as f64).ceil().max(1.0) as usize;
    v[rank.min(v.len()) - 1]
}

pub async fn run(o: &Options) -> anyhow::Result<Value> {
    if o.directory_groups > 0 {
        fill_directory(&o.database, o.directory_groups).await?;
    }
    let token = token(o)?;
    let port = free_port()?;
    let base = format!("http://127.0.0.1:{port}");
    let mut server = Server(
        doorsync(o)
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", o.doorsync.display()))?,
    );
    let http = reqwest::Client::new();
    wait_ready(&http, &base, &mut server).await?;
    let settle_seconds = if o.settle {
        Some(settle(&http, &base, &token).await?)
    } else {
        None
    };
    let mut rng = Rng::new(7);
    let customers = o.size.customers;

    let get = |id: String| {
        http.get(format!("{base}/api/v1/customers/{id}/access"))
            .bearer_auth(&token)
            .send()
    };
    for _ in 0..50.min(o.requests) {
        get(format!("c{}", rng.below(customers))).await?;
    }
    let mut gets = Vec::with_capacity(o.requests);
    for i in 0..o.requests {
        let id = format!("c{}", rng.below(customers));
        let started = Instant::now();
        let r = get(id.clone()).await?;
        let status = r.status();
        let _ = r.bytes().await?;
        gets.push(ms(started.elapsed()));
        ensure!(status == 200, "GET access of {id}: {status}");
        if i % 100 == 0 {
            eprint!("\rGET {i}/{}   ", o.requests);
        }
    }
    eprintln!();

    // Bookings of one room next year: a write that reaches one customer and marks them due.
    let year = crate::next_year();
    let puts_n = (o.requests / 4).max(1);
    let mut puts = Vec::with_capacity(puts_n);
    for i in 0..puts_n {
        let start = jiff::Timestamp::from_second(year + 7 * 86_400 + i as i64 * 3_600)?;
        let body = json!({
            "customer_id": format!("c{}", rng.below(customers)),
            "resource_id": "room-0-0",
            "start": start.to_string(),
            "end": (start + jiff::SignedDuration::from_hours(1)).to_string(),
        });
        let started = Instant::now();
        let r = http
            .put(format!("{base}/api/v1/bookings/bench-{i}"))
            .bearer_auth(&token)
            .json(&body)
            .send()
            .await?;
        let status = r.status();
        let _ = r.bytes().await?;
        puts.push(ms(started.elapsed()));
        ensure!(status.is_success(), "PUT booking bench-{i}: {status}");
    }
    // The database stays as `run` loaded it, for the next measurement.
    for i in 0..puts_n {
        http.delete(format!("{base}/api/v1/bookings/bench-{i}"))
            .bearer_auth(&token)
            .send()
            .await?;
    }
    let peak = peak_mib(server.0.id());
    drop(server);

    let backend = if o.database.starts_with("postgres") {
        "PostgreSQL"
    } else {
        "SQLite"
    };
    Ok(json!({
        "size": o.size_name, "backend": backend, "requests": o.requests,
        "directory_groups": o.directory_groups, "settle_seconds": settle_seconds,
        "get_access_ms": {"p50": pct(&mut gets, 50.0), "p99": pct(&mut gets, 99.0), "max": pct(&mut gets, 100.0)},
        "put_booking_ms": {"p50": pct(&mut puts, 50.0), "p99": pct(&mut puts, 99.0), "max": pct(&mut puts, 100.0)},
        "serve_peak_mib": peak,
    }))
}

pub fn table(v: &Value) -> String {
    let f = |x: &Value| x.as_f64().map_or("-".into(), |x| format!("{x:.1}"));
    format!(
        "| size | backend | directory groups | GET access p50 / p99 (ms) | PUT booking p50 / p99 (ms) | serve peak (MiB) |\n\
         | --- | --- | --- | --- | --- | --- |\n\
         | {} | {} | {} | {} / {} | {} / {} | {} |",
        v["size"].as_str().unwrap_or("?"),
        v["backend"].as_str().unwrap_or("?"),
        v["directory_groups"],
        f(&v["get_access_ms"]["p50"]),
        f(&v["get_access_ms"]["p99"]),
        f(&v["put_booking_ms"]["p50"]),
        f(&v["put_booking_ms"]["p99"]),
        f(&v["serve_peak_mib"]),
    )
}

/// Where `run` keeps the SQLite file of a size and seed.
pub fn sqlite_of(size: &str, seed: u64) -> String {
    format!(
        "sqlite://{}",
        Path::new("target/bench")
            .join(format!("{size}-{seed}.db"))
            .display()
    )
}
