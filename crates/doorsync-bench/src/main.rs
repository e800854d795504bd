//! `doorsync-bench`: makes a seeded operator (`generate`) and measures doorsync against it
//! (`run`): loading it through the bulk intake, and planning every customer's access from the
//! store; `sync` measures the engine against brivo-sim, `api` a `doorsync serve` process. It
//! reports JSON and a Markdown table; `soak` runs the access-integrity soak. Not a test: speed
//! targets live here.

mod api;
mod sync;

use doorsync_bench::{soak, workload};

use anyhow::Context;
use clap::{Parser, Subcommand};
use doorsync_core::{Clock, customer_entitlements, desired, next_transition};
use doorsync_store::{SqlStore, Store};
use serde_json::{Value, json};
use std::io::Write;
use std::time::Instant;
use workload::{Size, Workload};

#[derive(Parser)]
#[command(about = "doorsync's workload generator and benchmark harness")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write a workload as NDJSON batch operations (for `doorsync import`) to stdout.
    Generate {
        /// small, medium or large
        #[arg(long, default_value = "small")]
        size: String,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Load a workload into a fresh database through the bulk intake, then plan every
    /// customer's access from the store; prints a Markdown table and writes JSON.
    Run {
        #[arg(long, default_value = "small")]
        size: String,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// A database URL; a fresh SQLite file under target/bench when left out
        #[arg(long)]
        database: Option<String>,
        /// Where the JSON report goes
        #[arg(long, default_value = "target/bench/report.json")]
        report: std::path::PathBuf,
        /// Measure a database an earlier run loaded with the same size and seed, without
        /// loading it again
        #[arg(long)]
        reuse: bool,
    },
    /// A revocation due one second after a location's lead changes, while the edit makes
    /// every customer with a booking of its rooms due (doorsync and brivo-sim in one process).
    LeadEdit {
        /// sqlite, or postgres (on the server DOORSYNC_TEST_PG_URL names)
        #[arg(long, default_value = "sqlite")]
        backend: String,
        #[arg(long, default_value_t = 5_000)]
        customers: usize,
    },
    /// Run doorsync's API and engine against an in-process brivo-sim and measure the sync:
    /// first access, reconcile throughput, write-to-Brivo latency, lateness under the key's
    /// rate, revocations while new customers queue, and an idle hour's calls.
    Sync {
        /// sqlite, or postgres (on the server DOORSYNC_TEST_PG_URL names)
        #[arg(long, default_value = "sqlite")]
        backend: String,
        #[arg(long, default_value_t = 2_000)]
        customers: usize,
        #[arg(long, default_value_t = 200)]
        writes: usize,
        #[arg(long, default_value_t = 2_000)]
        transitions: usize,
        /// The key's limit while the transitions fall due, calls a second
        #[arg(long, default_value_t = 100)]
        transition_rate: u32,
        #[arg(long, default_value_t = 5_000)]
        queued: usize,
        #[arg(long, default_value_t = 20)]
        revocations: usize,
        /// Where the JSON report goes
        #[arg(long, default_value = "target/bench/sync.json")]
        report: std::path::PathBuf,
    },
    /// Start `doorsync serve` on a database `run` loaded and measure the API from outside:
    /// `GET /customers/{id}/access` and a booking `PUT`, one at a time, and the server's peak
    /// memory.
    Api {
        /// The size `run` loaded (it says how many customers there are)
        #[arg(long, default_value = "small")]
        size: String,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// A database URL; the SQLite file `run` made for this size and seed when left out
        #[arg(long)]
        database: Option<String>,
        /// GET requests measured (and a quarter as many PUTs)
        #[arg(long, default_value_t = 2_000)]
        requests: usize,
        /// Groups to list in a connection's directory first, as a large Brivo account has
        #[arg(long, default_value_t = 0)]
        directory_groups: u64,
        /// The doorsync binary [default: the one beside this binary]
        #[arg(long)]
        doorsync: Option<std::path::PathBuf>,
        /// Measure at once instead of waiting for the engine to reconcile everyone a fresh load
        /// made due: the requests then share the database with a busy engine (the worst case)
        #[arg(long)]
        no_settle: bool,
        /// Where the JSON report goes
        #[arg(long, default_value = "target/bench/api.json")]
        report: std::path::PathBuf,
    },
    /// The access-integrity soak: doorsync serve processes against brivo-sim with faults,
    /// outages and SIGKILLs under a random booking workload, judged from brivo-sim's membership
    /// history and the acknowledged writes alone. Exits non-zero when it finds a breach.
    Soak {
        /// sqlite, or postgres (a fresh database on the server DOORSYNC_TEST_PG_URL names)
        #[arg(long, default_value = "sqlite")]
        database: String,
        /// Instances sharing the database [default: 2 on PostgreSQL, 1 on SQLite]
        #[arg(long)]
        instances: Option<usize>,
        /// Seconds of workload [default: 360, or 40 with --short]
        #[arg(long)]
        seconds: Option<u64>,
        /// The form scripts/test runs: 40 s, 2 kills, an 8 s outage
        #[arg(long)]
        short: bool,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Seconds a change may take to reach Brivo before it counts
        #[arg(long)]
        tolerance: Option<f64>,
        /// brivo-sim acknowledges removals and keeps the memberships (the soak must fail)
        #[arg(long)]
        lose_revocations: bool,
        /// The doorsync binary [default: the one beside this binary]
        #[arg(long)]
        doorsync: Option<std::path::PathBuf>,
        /// Where the JSON report goes
        #[arg(long, default_value = "target/bench/soak.json")]
        report: std::path::PathBuf,
    },
}

struct WallClock;

impl Clock for WallClock {
    fn now(&self) -> jiff::Timestamp {
        jiff::Timestamp::now()
    }
}

/// Operations per bulk request, as a platform would send them.
const PIECE: usize = 10_000;

fn size(name: &str) -> anyhow::Result<Size> {
    Size::named(name).with_context(|| format!("unknown size {name:?}: small, medium or large"))
}

/// The year of bookings starts at the next 1 January, so that access is all ahead.
fn next_year() -> i64 {
    let utc = jiff::tz::TimeZone::UTC;
    let year = utc.to_datetime(jiff::Timestamp::now()).year();
    utc.to_ambiguous_timestamp(jiff::civil::date(year + 1, 1, 1).at(0, 0, 0, 0))
        .compatible()
        .map(|t| t.as_second())
        .unwrap_or(1_800_000_000)
}

/// Peak resident memory of this process so far (Linux), in MiB.
fn peak_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn backend_named(name: &str) -> anyhow::Result<testkit::Backend> {
    match name {
        "sqlite" => Ok(testkit::Backend::Sqlite),
        "postgres" => Ok(testkit::Backend::Postgres),
        other => anyhow::bail!("unknown backend {other:?}: sqlite or postgres"),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // The in-process engine's warnings (pauses, failed reconciles) when DOORSYNC_LOG asks.
    if let Ok(filter) = std::env::var("DOORSYNC_LOG") {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::try_new(filter)?)
            .with_writer(std::io::stderr)
            .init();
    }
    match Cli::parse().command {
        Command::Generate { size: s, seed } => {
            let w = Workload {
                size: size(&s)?,
                seed,
                start: next_year(),
            };
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            let mut failed = None;
            w.emit(|v| {
                if failed.is_none()
                    && let Err(e) = writeln!(out, "{v}")
                {
                    failed = Some(e);
                }
            });
            match failed.map_or_else(|| out.flush(), Err) {
                // A reader that has seen enough (`| head`) is not a failure.
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
                _ => Ok(()),
            }
        }
        Command::Run {
            size: s,
            seed,
            database,
            report,
            reuse,
        } => run(&s, seed, database, &report, reuse).await,
        Command::LeadEdit { backend, customers } => {
            let out = sync::lead_edit(backend_named(&backend)?, customers).await?;
            println!("{out}");
            Ok(())
        }
        Command::Sync {
            backend,
            customers,
            writes,
            transitions,
            transition_rate,
            queued,
            revocations,
            report,
        } => {
            let options = sync::Options {
                backend: backend_named(&backend)?,
                customers,
                writes,
                transitions,
                transition_rate,
                queued,
                revocations,
            };
            let out = sync::run(&options).await?;
            write_report(&report, &out)?;
            println!("{}", sync::table(&out));
            Ok(())
        }
        Command::Api {
            size: s,
            seed,
            database,
            requests,
            directory_groups,
            doorsync,
            no_settle,
            report,
        } => {
            let options = api::Options {
                database: database.unwrap_or_else(|| api::sqlite_of(&s, seed)),
                size: size(&s)?,
                size_name: s,
                requests,
                directory_groups,
                doorsync: doorsync.unwrap_or_else(api::default_binary),
                settle: !no_settle,
            };
            let out = api::run(&options).await?;
            write_report(&report, &out)?;
            println!("{}", api::table(&out));
            Ok(())
        }
        Command::Soak {
            database,
            instances,
            seconds,
            short,
            seed,
            tolerance,
            lose_revocations,
            doorsync,
            report,
        } => {
            let backend = match database.as_str() {
                "sqlite" => testkit::Backend::Sqlite,
                "postgres" | "pg" => testkit::Backend::Postgres,
                other => anyhow::bail!("--database {other:?}: sqlite or postgres"),
            };
            let binary = doorsync.unwrap_or_else(api::default_binary);
            let mut o = if short {
                soak::Options {
                    backend,
                    ..soak::Options::short(binary)
                }
            } else {
                soak::Options::long(backend, binary)
            };
            o.instances = instances.unwrap_or(o.instances);
            o.seconds = seconds.unwrap_or(o.seconds);
            o.tolerance = tolerance.unwrap_or(o.tolerance);
            o.seed = seed;
            o.lose_revocations = lose_revocations;
            let out = soak::run(&o).await?;
            write_report(&report, &out.json(&o))?;
            println!("{}", out.table(&o));
            for v in &out.figures.violations {
                println!(
                    "{} {} in group {} from {:.1} s to {:.1} s",
                    v.customer, v.kind, v.group, v.from, v.until
                );
            }
            anyhow::ensure!(
                out.pass(),
                "the soak found a breach (report {}, logs {})",
                report.display(),
                out.logs.display()
            );
            Ok(())
        }
    }
}

fn write_report(report: &std::path::Path, out: &Value) -> anyhow::Result<()> {
    if let Some(parent) = report.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(report, serde_json::to_string_pretty(out)?)?;
    Ok(())
}

async fn run(
    name: &str,
    seed: u64,
    database: Option<String>,
    report: &std::path::Path,
    reuse: bool,
) -> anyhow::Result<()> {
    let size = size(name)?;
    let dir = std::path::Path::new("target/bench");
    std::fs::create_dir_all(dir)?;
    let (url, file) = match database {
        Some(u) => (u, None),
        None => {
            let f = dir.join(format!("{name}-{seed}.db"));
            if !reuse {
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{}{suffix}", f.display()));
                }
            }
            (format!("sqlite://{}", f.display()), Some(f))
        }
    };
    let store = SqlStore::connect(&url).await?;
    store.migrate(jiff::Timestamp::now()).await?;
    let w = Workload {
        size,
        seed,
        start: next_year(),
    };
    let total = size.operations() as usize;
    let (mut load_secs, mut failed) = (None, 0usize);
    if reuse {
        eprintln!("measuring {url} as loaded before ({name}, seed {seed})");
    } else {
        eprintln!("loading {total} operations ({name}, seed {seed}) into {url}");
        // The generator runs on its own thread and hands over request-sized pieces, so the
        // large operator is never held in memory whole.
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<Value>>(4);
        let generator = std::thread::spawn(move || {
            let mut piece = Vec::with_capacity(PIECE);
            w.emit(|v| {
                piece.push(v);
                if piece.len() == PIECE {
                    let _ = tx.send(std::mem::replace(&mut piece, Vec::with_capacity(PIECE)));
                }
            });
            let _ = tx.send(piece);
        });
        let started = Instant::now();
        let mut done = 0usize;
        while let Ok(piece) = tokio::task::block_in_place(|| rx.recv()) {
            if piece.is_empty() {
                continue;
            }
            done += piece.len();
            let results =
                doorsync_web::batch::apply(&store, &WallClock, piece, false, |_| {}).await?;
            failed += results.iter().filter(|r| r.error.is_some()).count();
            eprint!(
                "\r{done}/{total}  {:.0} ops/s   ",
                done as f64 / started.elapsed().as_secs_f64()
            );
        }
        eprintln!();
        generator
            .join()
            .map_err(|_| anyhow::anyhow!("the generator panicked"))?;
        load_secs = Some(started.elapsed().as_secs_f64());
    }
    let db_bytes: u64 = match &file {
        Some(f) => ["", "-wal"]
            .iter()
            .filter_map(|s| std::fs::metadata(format!("{}{s}", f.display())).ok())
            .map(|m| m.len())
            .sum(),
        None => 0,
    };

    // Planning: every customer's inputs read from the store, their desired groups now and their
    // next transition.
    let now = jiff::Timestamp::now();
    let started = Instant::now();
    let (mut groups, mut with_next) = (0usize, 0usize);
    let ids: Vec<doorsync_core::Id> = (0..size.customers)
        .map(|c| doorsync_core::Id::parse(&format!("c{c}")))
        .collect::<Result<_, _>>()?;
    for page in ids.chunks(500) {
        for inputs in store.customers_inputs(page, now).await? {
            let ents = customer_entitlements(&inputs);
            groups += desired(&ents, now).len();
            with_next += usize::from(next_transition(&ents, now).is_some());
        }
    }
    let plan_secs = started.elapsed().as_secs_f64();
    store.close().await;

    let machine = format!(
        "{} cores, {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::env::consts::ARCH
    );
    let backend = if url.starts_with("postgres") {
        "PostgreSQL"
    } else {
        "SQLite"
    };
    let out = json!({
        "size": name, "seed": seed, "backend": backend, "machine": machine,
        "operations": total, "failed": failed,
        "load": {"seconds": load_secs, "ops_per_second": load_secs.map(|l| total as f64 / l), "database_bytes": db_bytes},
        "planning": {"customers": size.customers, "seconds": plan_secs,
                      "ms_per_customer": plan_secs * 1000.0 / size.customers as f64,
                      "groups_now": groups, "with_a_next_transition": with_next},
        "peak_mib": peak_mib(),
    });
    write_report(report, &out)?;
    println!(
        "| size | backend | operations | load (s) | ops/s | database (MiB) | planning (s) | ms/customer | peak (MiB) |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    println!(
        "| {name} | {backend} | {total} | {} | {} | {:.1} | {plan_secs:.2} | {:.3} | {:.0} |",
        load_secs.map_or("-".into(), |l| format!("{l:.1}")),
        load_secs.map_or("-".into(), |l| format!("{:.0}", total as f64 / l)),
        db_bytes as f64 / 1048576.0,
        plan_secs * 1000.0 / size.customers as f64,
        peak_mib().unwrap_or(0.0)
    );
    anyhow::ensure!(failed == 0, "{failed} operations failed to load");
    Ok(())
}
