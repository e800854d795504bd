//! `doorsync import FILE`: a platform's first load or nightly reconciliation from NDJSON, one
//! batch operation per line (`{"op": "put", "collection": "customers", "id": "c1", "body": {...}}`),
//! straight into the database, in the chunks and with the checks of `POST /api/v1/batch`.

use crate::app::SystemClock;
use anyhow::Context;
use doorsync_store::SqlStore;
use doorsync_web::batch::{self, Summary};
use serde_json::Value;
use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;
use std::time::Instant;

/// Lines read before a chunk of them is applied.
const READ_AHEAD: usize = batch::CHUNK * 4;

struct Progress {
    total_bytes: u64,
    tty: bool,
    started: Instant,
    last_line: Instant,
}

impl Progress {
    fn show(&mut self, lines: usize, bytes: u64, done: bool) {
        let pct = if self.total_bytes == 0 {
            100.0
        } else {
            100.0 * bytes as f64 / self.total_bytes as f64
        };
        let secs = self.started.elapsed().as_secs_f64().max(0.001);
        let text = format!(
            "{pct:5.1}%  {lines} lines  {:.0} lines/s",
            lines as f64 / secs
        );
        let mut err = std::io::stderr();
        if self.tty {
            let _ = write!(err, "\r{text}");
            if done {
                let _ = writeln!(err);
            }
        } else if done || self.last_line.elapsed().as_secs() >= 10 {
            // A log, not a terminal: a line every ten seconds.
            let _ = writeln!(err, "{text}");
            self.last_line = Instant::now();
        }
    }
}

/// Applies the file; returns the summary, or an error when `strict` and a line failed.
pub async fn run(store: &SqlStore, file: &Path, strict: bool) -> anyhow::Result<Summary> {
    let f = std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?;
    let total_bytes = f.metadata().map(|m| m.len()).unwrap_or(0);
    let mut reader = std::io::BufReader::new(f);
    let clock = SystemClock;
    let mut progress = Progress {
        total_bytes,
        tty: std::io::stderr().is_terminal(),
        started: Instant::now(),
        last_line: Instant::now(),
    };
    let mut summary = Summary::default();
    let (mut line_no, mut bytes) = (0usize, 0u64);
    let mut buf = Vec::new();
    loop {
        // Read ahead: the operations and the line each came from.
        let mut ops: Vec<Value> = vec![];
        let mut lines: Vec<usize> = vec![];
        let mut eof = false;
        while ops.len() < READ_AHEAD {
            buf.clear();
            // Bytes, not a String: one line that is not UTF-8 is that line's fault, not the file's.
            let n = reader
                .read_until(b'\n', &mut buf)
                .with_context(|| format!("reading {}", file.display()))?;
            if n == 0 {
                eof = true;
                break;
            }
            line_no += 1;
            bytes += n as u64;
            match parse_line(&buf) {
                Ok(None) => {}
                Ok(Some(v)) => {
                    ops.push(v);
                    lines.push(line_no);
                }
                Err(why) => {
                    summary.failed += 1;
                    eprintln!("{}line {line_no}: {why}", clear(&progress));
                    anyhow::ensure!(
                        !strict,
                        "stopped at line {line_no} (--strict); the lines before it are applied"
                    );
                }
            }
        }
        if !ops.is_empty() {
            let results = batch::apply(store, &clock, ops, strict, |_| {}).await?;
            for r in &results {
                summary.count(r.status);
                if let Some(e) = &r.error {
                    let field = e
                        .field
                        .as_ref()
                        .map(|f| format!(" (field {f})"))
                        .unwrap_or_default();
                    eprintln!(
                        "{}line {}: {} {}: {}{field}",
                        clear(&progress),
                        lines[r.index],
                        r.status,
                        e.code,
                        e.message,
                    );
                    anyhow::ensure!(
                        !strict,
                        "stopped at line {} (--strict); the lines before it are applied",
                        lines[r.index]
                    );
                }
            }
        }
        progress.show(line_no, bytes, eof);
        if eof {
            break;
        }
    }
    Ok(summary)
}

/// One line's operation, `None` for a blank line, or what is wrong with it in words.
fn parse_line(line: &[u8]) -> Result<Option<Value>, String> {
    let text = std::str::from_utf8(line).map_err(|e| {
        format!(
            "not UTF-8 text (byte {} of the line); save the file as UTF-8",
            e.valid_up_to() + 1
        )
    })?;
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    serde_json::from_str(text)
        .map(Some)
        .map_err(|e| format!("malformed JSON: {e}"))
}

/// On a terminal, the progress line is cleared before a message is printed under it.
fn clear(p: &Progress) -> &'static str {
    if p.tty { "\r\x1b[2K" } else { "" }
}
