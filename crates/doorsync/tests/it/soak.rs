//! The access-integrity soak's short form, against the real `doorsync` binary: it holds, and it
//! notices when brivo-sim loses the removals.

use doorsync_bench::soak::{Options, run};
use std::path::PathBuf;

fn short() -> Options {
    Options::short(PathBuf::from(env!("CARGO_BIN_EXE_doorsync")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_short_soak_keeps_access_integrity() {
    let o = short();
    let report = run(&o).await.expect("soak");
    let json = report.json(&o);
    assert!(report.pass(), "{json:#}");
    // It did what it says: writes, faults, an outage and kills, with access changing throughout.
    assert!(report.writes >= 30, "{json}");
    assert!(report.faults >= o.faults, "{json}");
    assert_eq!((report.kills, report.outages.len()), (o.kills, 1), "{json}");
    assert!(report.membership_changes >= 20, "{json}");
    assert!(report.figures.entitled > 100.0, "{json}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_soak_fails_when_revocations_are_lost() {
    let o = Options {
        lose_revocations: true,
        seconds: 25,
        ..short()
    };
    let report = run(&o).await.expect("soak");
    let json = report.json(&o);
    assert!(!report.pass(), "{json:#}");
    assert!(report.figures.outside > 0.0, "{json}");
    assert!(report.lost_writes.is_empty(), "{json}");
}
