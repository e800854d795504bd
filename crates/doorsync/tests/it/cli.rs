//! The real `doorsync` binary: help, tokens, configuration errors, and the README's curl session
//! against `doorsync serve`, ended by SIGTERM.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;
use testkit::{Backend, TestDb};

const BIN: &str = env!("CARGO_BIN_EXE_doorsync");

fn doorsync(dir: &Path, url: &str) -> Command {
    let mut c = Command::new(BIN);
    c.current_dir(dir)
        .env("DOORSYNC_DATABASE_URL", url)
        .env_remove("DOORSYNC_LISTEN");
    c
}

#[test]
fn help_explains_each_command() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for word in ["serve", "migrate", "token", "DOORSYNC_DATABASE_URL"] {
        assert!(text.contains(word), "--help lacks {word}:\n{text}");
    }
    let out = Command::new(BIN)
        .args(["token", "create", "--help"])
        .output()
        .unwrap();
    assert!(String::from_utf8(out.stdout).unwrap().contains("last line"));
}

#[test]
fn bad_configuration_fails_with_a_clear_message() {
    let dir = tempdir("badconf");
    let out = doorsync(&dir, "mysql://nope")
        .env_remove("RUST_BACKTRACE")
        .arg("migrate")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("sqlite://") && err.contains("postgres://"),
        "{err}"
    );
    // One line a person reads: no colour codes, no backtrace, no "Caused by" block.
    assert!(
        err.starts_with("error: ") && err.trim_end().lines().count() == 1 && !err.contains('\x1b'),
        "{err:?}"
    );
    let out = doorsync(&dir, "sqlite://x.db")
        .env("DOORSYNC_LOG_FORMAT", "yaml")
        .arg("migrate")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("log_format"));
    // Logs for a shipper: one JSON object a line.
    let out = doorsync(&dir, "sqlite://x.db")
        .env("DOORSYNC_LOG_FORMAT", "json")
        .env("DOORSYNC_LOG", "info")
        .arg("migrate")
        .output()
        .unwrap();
    assert!(out.status.success());
    let logs = String::from_utf8_lossy(&out.stderr);
    let first = logs.lines().next().expect("a log line");
    let line: serde_json::Value = serde_json::from_str(first).expect(first);
    assert_eq!(line["level"], "INFO", "{line}");
    std::fs::write(dir.join("doorsync.toml"), "listen = 8080\n").unwrap();
    let out = Command::new(BIN)
        .current_dir(&dir)
        .arg("migrate")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("doorsync.toml"));
    let out = doorsync(&dir, "sqlite://x.db")
        .args(["token", "create", "--name", " "])
        .output()
        .unwrap();
    assert!(!out.status.success());
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn tokens_are_listed_and_revoked() {
    let dir = tempdir("tokens");
    let url = format!("sqlite://{}", dir.join("t.db").display());
    let run = |args: &[&str]| {
        let out = doorsync(&dir, &url).args(args).output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (ok, out, _) = run(&["token", "create", "--name", "ci-bot"]);
    assert!(ok, "{out}");
    let (ok, list, _) = run(&["token", "list"]);
    assert!(ok);
    let line = list.lines().find(|l| l.contains("ci-bot")).expect("listed");
    assert!(line.contains("never used"), "{line}");
    let id = line.split_whitespace().next().unwrap().to_owned();
    assert!(id.starts_with("tok_"), "{line}");
    assert!(
        !list.contains("ds_"),
        "the token itself is never shown again: {list}"
    );
    let (ok, out, _) = run(&["token", "revoke", &id]);
    assert!(ok, "{out}");
    let (_, list, _) = run(&["token", "list"]);
    assert!(!list.contains("ci-bot"), "{list}");
    let (ok, _, err) = run(&["token", "revoke", &id]);
    assert!(!ok && err.contains("token list"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn import_loads_ndjson_and_reports_bad_lines_by_number() {
    let dir = tempdir("import");
    let url = format!("sqlite://{}", dir.join("i.db").display());
    let file = dir.join("load.ndjson");
    let lines = [
        r#"{"op": "put", "collection": "locations", "id": "L", "body": {"name": "Soho", "timezone": "Europe/London"}}"#,
        r#"{"op": "put", "collection": "resources", "id": "R", "body": {"location_id": "L", "name": "Room"}}"#,
        r#"{"op": "put", "collection": "links", "id": "resource/R", "body": {"group_id": "4101"}}"#,
        r#"{"op": "put", "collection": "customers", "id": "ana", "body": {"name": "Ana", "email": "ana@example.com"}}"#,
        r#"{"op": "put", "collection": "customers", "id": "ben", "body": {"name": "#,
        "",
        r#"{"op": "put", "collection": "bookings", "id": "b1", "body": {"customer_id": "ghost", "resource_id": "R", "start": "2030-01-07T10:00:00Z", "end": "2030-01-07T11:00:00Z"}}"#,
        r#"{"op": "put", "collection": "bookings", "id": "b2", "body": {"customer_id": "ana", "resource_id": "R", "start": "2030-01-07T10:00:00Z", "end": "2030-01-07T11:00:00Z"}}"#,
        r#"{"op": "patch", "collection": "customers", "id": "ana", "body": {"name": "Ana Lima"}}"#,
    ];
    std::fs::write(&file, lines.join("\n")).unwrap();
    let out = doorsync(&dir, &url)
        .args(["import", file.to_str().unwrap()])
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(!out.status.success(), "a failed line fails the run");
    assert!(stderr.contains("line 5: malformed JSON"), "{stderr}");
    assert!(
        stderr.contains("line 7: 422 unknown_reference") && stderr.contains("(field customer_id)"),
        "{stderr}"
    );
    assert!(
        stdout.contains("5 created, 1 replaced, 0 deleted, 2 failed"),
        "{stdout}"
    );
    let explained = doorsync(&dir, &url)
        .args(["explain", "ana"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&explained.stdout);
    assert!(
        text.contains("Ana Lima") && text.contains("booking:b2"),
        "{text}"
    );
    // --strict stops at the first bad line; the lines before it stay.
    let strict = dir.join("strict.ndjson");
    std::fs::write(
        &strict,
        [
            lines[0],
            r#"{"op": "delete", "collection": "planets", "id": "x"}"#,
            lines[3],
        ]
        .join("\n"),
    )
    .unwrap();
    let out = doorsync(&dir, &url)
        .args(["import", "--strict", strict.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("line 2: 400 invalid_collection") && stderr.contains("stopped at line 2"),
        "{stderr}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A line that is not UTF-8 (a file saved as Latin-1, a truncated copy) is one bad line: reported
/// with its number, the rest applied; with --strict the run stops there. A time past the years
/// served is refused in the API's words.
#[test]
fn import_reports_a_line_that_is_not_utf8_and_goes_on() {
    let dir = tempdir("import-bytes");
    let url = format!("sqlite://{}", dir.join("i.db").display());
    let file = dir.join("load.ndjson");
    let mut bytes = Vec::new();
    for line in [
        &br#"{"op": "put", "collection": "locations", "id": "L", "body": {"name": "Soho", "timezone": "Europe/London"}}"#[..],
        b"{\"op\": \"put\", \"collection\": \"customers\", \"id\": \"zoe\", \"body\": {\"name\": \"Zo\xeb\", \"email\": \"zoe@example.com\"}}",
        br#"{"op": "put", "collection": "resources", "id": "R", "body": {"location_id": "L", "name": "Room"}}"#,
        br#"{"op": "put", "collection": "customers", "id": "ana", "body": {"name": "Ana", "email": "ana@example.com"}}"#,
        br#"{"op": "put", "collection": "bookings", "id": "b9", "body": {"customer_id": "ana", "resource_id": "R", "start": "2030-01-07T10:00:00Z", "end": "9999-12-31T23:59:59Z"}}"#,
        b"\xff\xfe",
        br#"{"op": "put", "collection": "customers", "id": "ben", "body": {"name": "Ben", "email": "ben@example.com"}}"#,
    ] {
        bytes.extend_from_slice(line);
        bytes.push(b'\n');
    }
    std::fs::write(&file, &bytes).unwrap();
    let out = doorsync(&dir, &url)
        .args(["import", file.to_str().unwrap()])
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("line 2: not UTF-8 text"), "{stderr}");
    assert!(stderr.contains("line 6: not UTF-8 text"), "{stderr}");
    assert!(
        stderr.contains("line 5: 422 validation_failed: must be an RFC 3339 instant with an offset, such as 2026-06-01T10:00:00Z, in the years 1900 to 9998 (field end)"),
        "{stderr}"
    );
    assert!(
        stdout.contains("4 created, 0 replaced, 0 deleted, 3 failed"),
        "{stdout}"
    );
    let out = doorsync(&dir, &url)
        .args(["import", "--strict", file.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("line 2: not UTF-8 text") && stderr.contains("stopped at line 2"),
        "{stderr}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

pub(crate) fn tempdir(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("doorsync-cli-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The lines of the README's curl session and the error example after it.
fn readme_session() -> (String, Vec<(String, String)>) {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    let start = readme
        .find("<!-- readme-session")
        .expect("README has the marked curl session");
    let block = readme[start..]
        .split("```sh\n")
        .nth(1)
        .unwrap()
        .split("```")
        .next()
        .unwrap();
    let script = block
        .lines()
        .filter(|l| !l.starts_with("TOKEN="))
        .collect::<Vec<_>>()
        .join("\n");
    // Each `curl` line of the next block, with the `# {...}` answer the README promises under it.
    let next = readme[start..]
        .split("```sh\n")
        .nth(2)
        .unwrap()
        .split("```")
        .next()
        .unwrap();
    let lines: Vec<&str> = next.lines().collect();
    let examples = lines
        .windows(2)
        .filter(|w| w[0].starts_with("curl") && w[1].starts_with("# {"))
        .map(|w| (w[0].to_owned(), w[1].trim_start_matches("# ").to_owned()))
        .collect();
    (script, examples)
}

/// A child process that is killed if the test ends (or panics) while it still runs.
pub(crate) struct Guard(pub(crate) Child);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Starts `cmd` with stdout (or stderr) piped and returns once a line satisfies `ready`, with the
/// lines read so far; the rest keep draining so the child never blocks on a full pipe.
fn start_until(
    cmd: &mut Command,
    stdout: bool,
    ready: impl Fn(&str) -> bool,
) -> (Guard, Vec<String>) {
    if stdout {
        cmd.stdout(Stdio::piped()).stderr(Stdio::null());
    } else {
        cmd.stderr(Stdio::piped()).stdout(Stdio::null());
    }
    let mut child = cmd.spawn().unwrap();
    let out: Box<dyn std::io::Read + Send> = if stdout {
        Box::new(child.stdout.take().unwrap())
    } else {
        Box::new(child.stderr.take().unwrap())
    };
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut lines = vec![];
    loop {
        let Ok(line) = rx.recv_timeout(Duration::from_secs(60)) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the child never printed the line awaited; it printed {lines:?}");
        };
        let done = ready(&line);
        lines.push(line);
        if done {
            std::thread::spawn(move || while rx.recv().is_ok() {});
            return (Guard(child), lines);
        }
    }
}

pub(crate) const LISTENING: &str = "doorsync listening on ";

struct Server {
    child: Guard,
    base: String,
}

fn start_serve(dir: &Path, url: &str) -> Server {
    let mut cmd = doorsync(dir, url);
    cmd.args(["serve", "--listen", "127.0.0.1:0"]);
    let (child, lines) = start_until(&mut cmd, false, |l| l.starts_with(LISTENING));
    let base = lines
        .last()
        .unwrap()
        .trim_start_matches(LISTENING)
        .trim()
        .to_owned();
    Server { child, base }
}

async fn the_readme_session_works_against_serve(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let dir = tempdir(&format!("serve-{backend:?}"));
    let out = doorsync(&dir, &db.url)
        .args(["token", "create", "--name", "readme"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let token = stdout.lines().last().unwrap().to_owned();
    assert!(
        token.starts_with("ds_") && !token.contains(' '),
        "the token is alone on the last line: {stdout}"
    );

    let mut server = start_serve(&dir, &db.url);
    // The container's health check.
    let addr = server.base.trim_start_matches("http://");
    let out = doorsync(&dir, &db.url)
        .args(["health", "--listen", addr])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = doorsync(&dir, &db.url)
        .args(["health", "--listen", "127.0.0.1:1"])
        .env_remove("RUST_BACKTRACE")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let (script, examples) = readme_session();
    let script = script.replace("http://127.0.0.1:8080", &server.base);
    let out = Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .env("TOKEN", &token)
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "README session failed:\n{printed}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(printed.contains("\"group_id\":\"4101\""), "{printed}");
    assert!(
        printed.contains("\"from\":\"2030-01-07T09:45:00Z\""),
        "{printed}"
    );
    assert!(
        printed.contains("\"until\":\"2030-01-07T11:15:00Z\""),
        "{printed}"
    );
    assert!(printed.contains("\"booking_id\":\"b-1\""), "{printed}");
    assert!(!examples.is_empty());
    for (curl, promised) in examples {
        let setup = script
            .lines()
            .filter(|l| !l.starts_with("curl"))
            .collect::<Vec<_>>()
            .join("\n");
        let out = Command::new("bash")
            .args(["-euo", "pipefail", "-c", &format!("{setup}\n{curl}")])
            .env("TOKEN", &token)
            .output()
            .unwrap();
        let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let want: serde_json::Value = serde_json::from_str(&promised).unwrap();
        assert_eq!(got, want, "{curl}");
    }

    // `doorsync explain` says the same from the command line.
    let out = doorsync(&dir, &db.url)
        .args(["explain", "ana"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!said.contains("SECRET_KEY"), "explain needs no key: {said}");
    let due = text
        .lines()
        .find(|l| l.contains("is due"))
        .unwrap_or_default();
    assert!(
        due.contains("4101")
            && due.contains("from 2030-01-07T09:45:00Z until 2030-01-07T11:15:00Z"),
        "{text}"
    );
    assert!(text.contains("because of booking:b-1"), "{text}");
    let out = doorsync(&dir, &db.url)
        .args(["explain", "nobody"])
        .output()
        .unwrap();
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("no customer"));

    // SIGTERM ends it cleanly.
    let status = Command::new("kill")
        .args(["-TERM", &server.child.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let waited = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::task::spawn_blocking(move || server.child.0.wait()),
    )
    .await
    .expect("doorsync stopped within 30 s of SIGTERM")
    .unwrap()
    .unwrap();
    assert!(waited.success(), "exit status {waited}");
    if backend == Backend::Sqlite {
        assert!(
            !dir.join("doorsync.db").exists(),
            "the configured URL was used, not the default"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
    db.drop_db().await;
}

#[tokio::test]
async fn serve_starts_in_an_empty_directory_with_the_default_database() {
    let dir = tempdir("default-db");
    let mut cmd = Command::new(BIN);
    cmd.current_dir(&dir)
        .env_remove("DOORSYNC_DATABASE_URL")
        .args(["serve", "--listen", "127.0.0.1:0"]);
    let (mut child, lines) = start_until(&mut cmd, false, |l| l.starts_with(LISTENING));
    let base = lines
        .last()
        .unwrap()
        .trim_start_matches(LISTENING)
        .trim()
        .to_owned();
    let res = reqwest::get(format!("{base}/readyz")).await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(dir.join("doorsync.db").exists());
    Command::new("kill")
        .args(["-INT", &child.0.id().to_string()])
        .status()
        .unwrap();
    let status = tokio::task::spawn_blocking(move || child.0.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success());
    std::fs::remove_dir_all(&dir).unwrap();
}

testkit::on_both_backends!(
    the_readme_session_works_against_serve,
    a_fresh_serve_is_claimed_only_with_the_code_in_its_log,
);

/// A fresh `doorsync serve` warns that it has no administrator and writes a setup code to its
/// log; the dashboard's first-run form takes that code once, and nothing else.
async fn a_fresh_serve_is_claimed_only_with_the_code_in_its_log(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let dir = tempdir(&format!("setup-code-{backend:?}"));
    let mut cmd = doorsync(&dir, &db.url);
    cmd.args(["serve", "--listen", "127.0.0.1:0"]);
    let (child, lines) = start_until(&mut cmd, false, |l| l.contains("setup code: "));
    let base = lines
        .iter()
        .find_map(|l| l.strip_prefix(LISTENING))
        .unwrap()
        .trim()
        .to_owned();
    let said = lines.last().unwrap();
    assert!(
        said.contains("WARN") && said.contains("no administrator yet"),
        "{said}"
    );
    let code = said
        .split("setup code: ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap()
        .to_owned();
    assert_eq!(code.len(), 29, "{code}");
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let page = http
        .get(format!("{base}/admin/setup"))
        .send()
        .await
        .unwrap();
    let (cookie, csrf) = form_session(page).await;
    let claim = |code: &str| {
        http.post(format!("{base}/admin/setup"))
            .header("cookie", &cookie)
            .form(&[
                ("csrf", csrf.as_str()),
                ("code", code),
                ("email", "ops@example.com"),
                ("password", "a long enough password"),
                ("confirm", "a long enough password"),
            ])
            .send()
    };
    let wrong = claim("AAAAA-BBBBB-CCCCC-DDDDD-EEEEE").await.unwrap();
    assert_eq!(wrong.status(), 422);
    let listed = doorsync(&dir, &db.url)
        .args(["admin", "list"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&listed.stdout).contains("no administrators"),
        "{listed:?}"
    );
    let ok = claim(&code).await.unwrap();
    assert_eq!(ok.status(), 303);
    assert_eq!(ok.headers()["location"], "/admin");
    let again = claim(&code).await.unwrap();
    assert_eq!(again.status(), 403);
    let listed = doorsync(&dir, &db.url)
        .args(["admin", "list"])
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(
        listed.contains("ops@example.com") && listed.lines().count() == 1,
        "{listed}"
    );
    drop(child);
    std::fs::remove_dir_all(&dir).unwrap();
    db.drop_db().await;
}

/// One `doorsync serve` per SQLite file: a second is refused with a reason, and one started after
/// a `kill -9` takes back at once what the killed one had leased.
#[tokio::test]
async fn serve_on_sqlite_is_one_instance_and_frees_a_killed_ones_leases() {
    use sqlx::Connection as _;
    let dir = tempdir("sole");
    let url = format!("sqlite://{}", dir.join("doorsync.db").display());
    let mut first = start_serve(&dir, &url);
    let second = doorsync(&dir, &url)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success(), "{err}");
    assert!(err.contains("another doorsync serve is running"), "{err}");
    first.child.0.kill().unwrap();
    first.child.0.wait().unwrap();

    // What the killed process held, as it left it: leases far in the future.
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(&url).await.unwrap();
    let far = jiff::Timestamp::now().as_millisecond() + 3_600_000;
    sqlx::query("INSERT INTO schedule (subject, lease_owner, lease_until) VALUES ('customer:gone', 'killed', $1)")
        .bind(far)
        .execute(&mut conn)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO work_leases (name, owner, lease_until) VALUES ('probe:brivo', 'killed', $1)",
    )
    .bind(far)
    .execute(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();

    let _again = start_serve(&dir, &url);
    let mut conn = sqlx::AnyConnection::connect(&url).await.unwrap();
    let work: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM work_leases WHERE owner = 'killed'")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(work, 0);
    // The subject is claimed again at once, not in an hour.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let owner: Option<String> =
            sqlx::query_scalar("SELECT lease_owner FROM schedule WHERE subject = 'customer:gone'")
                .fetch_one(&mut conn)
                .await
                .unwrap();
        if owner.as_deref() != Some("killed") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the dead lease was never taken back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    conn.close().await.unwrap();
}

struct Demo {
    child: Guard,
    api: String,
    sim: String,
    token: String,
    /// The printed dashboard sign-in: e-mail and password.
    sign_in: (String, String),
}

/// Signs in to the demo's dashboard with `email` and `password`: whether it let them in.
/// The session cookie a dashboard form page sets, and the CSRF token its form carries.
async fn form_session(page: reqwest::Response) -> (String, String) {
    let cookie = page.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let body = page.text().await.unwrap();
    let csrf = body
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap()
        .to_owned();
    (cookie, csrf)
}

async fn dashboard_signs_in(demo: &Demo, email: &str, password: &str) -> bool {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let page = http
        .get(format!("{}/admin/signin", demo.api))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200, "the sign-in page, not the first run");
    let (cookie, csrf) = form_session(page).await;
    let res = http
        .post(format!("{}/admin/signin", demo.api))
        .header("cookie", cookie)
        .form(&[
            ("csrf", csrf.as_str()),
            ("email", email),
            ("password", password),
        ])
        .send()
        .await
        .unwrap();
    res.status() == 303
}

fn start_demo(dir: &Path) -> Demo {
    let mut cmd = Command::new(BIN);
    cmd.args([
        "demo",
        "--listen",
        "127.0.0.1:0",
        "--sim-listen",
        "127.0.0.1:0",
        "--dir",
    ])
    .arg(dir)
    .env("DOORSYNC_LOG", "warn");
    let (child, lines) = start_until(&mut cmd, true, |l| l.starts_with("api token: "));
    let field = |prefix: &str| {
        lines
            .iter()
            .find_map(|l| l.trim().strip_prefix(prefix))
            .map(|v| v.split_whitespace().next().unwrap_or("").to_owned())
    };
    let api = field("api:")
        .expect("api line")
        .trim_end_matches("/api/v1")
        .to_owned();
    assert_eq!(
        field("dashboard:").expect("dashboard line"),
        format!("{api}/admin")
    );
    let sign_in = lines
        .iter()
        .find_map(|l| l.strip_prefix("dashboard sign-in: "))
        .expect("a dashboard sign-in line");
    let sign_in: Vec<String> = sign_in.split_whitespace().map(str::to_owned).collect();
    assert_eq!(sign_in.len(), 2, "{sign_in:?}");
    let sim = field("brivo-sim:").expect("brivo-sim line");
    let token = lines
        .last()
        .unwrap()
        .trim_start_matches("api token: ")
        .trim()
        .to_owned();
    Demo {
        child,
        api,
        sim,
        token,
        sign_in: (sign_in[0].clone(), sign_in[1].clone()),
    }
}

async fn members_by_group(sim: &str) -> std::collections::BTreeMap<String, Vec<String>> {
    let config = brivo_client::ClientConfig::new(
        format!("{sim}/v1/api"),
        sim,
        "sim-api-key",
        "sim-client",
        "sim-secret",
        brivo_client::Grant::Password {
            username: "admin".into(),
            password: "password".into(),
        },
    );
    let client = brivo_client::BrivoClient::new(config).unwrap();
    let mut out = std::collections::BTreeMap::new();
    for g in client.list_groups(None).await.unwrap() {
        let mut m: Vec<String> = client
            .group_members(g.id)
            .await
            .unwrap()
            .into_iter()
            .filter_map(|u| u.external_id)
            .collect();
        m.sort();
        out.insert(g.name, m);
    }
    out
}

async fn settled(demo: &Demo) -> bool {
    let client = reqwest::Client::new();
    let Ok(res) = client
        .get(format!("{}/api/v1/sync/status", demo.api))
        .bearer_auth(&demo.token)
        .send()
        .await
    else {
        return false;
    };
    let status: serde_json::Value = res.json().await.unwrap_or_default();
    status["due"] == 0 && status["in_flight"] == 0
}

async fn wait_for<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !f().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn expected(groups: &std::collections::BTreeMap<String, Vec<String>>) {
    for (group, who) in [
        ("Private Office 1", vec!["ana", "ben", "chloe"]),
        ("Private Office 2", vec!["dev", "eli"]),
        ("Private Office 3", vec![]),
        ("Day Pass", vec!["fay"]),
        ("10-Day Pass", vec!["gus"]),
        ("Membership Pass", vec!["hana"]),
        ("Meeting Room 1", vec!["ivan"]),
    ] {
        assert_eq!(
            groups.get(group).cloned().unwrap_or_default(),
            who,
            "{group}"
        );
    }
}

/// `doorsync demo` from nothing: the seeded space reaches brivo-sim, and a `kill -9` in the middle
/// of the first burst loses nothing once the demo is started again on the same directory.
#[tokio::test]
async fn the_demo_converges_and_survives_kill_9() {
    let dir = tempdir("demo");
    let mut demo = start_demo(&dir);
    let client = reqwest::Client::new();
    let (email, password) = demo.sign_in.clone();
    assert!(dashboard_signs_in(&demo, &email, &password).await);
    // Let the burst begin, then kill the process outright.
    wait_for("the first changes", || async {
        let Ok(res) = client
            .get(format!("{}/api/v1/audit?limit=5", demo.api))
            .bearer_auth(&demo.token)
            .send()
            .await
        else {
            return false;
        };
        let audit: serde_json::Value = res.json().await.unwrap_or_default();
        audit["items"].as_array().is_some_and(|a| a.len() >= 3)
    })
    .await;
    Command::new("kill")
        .args(["-KILL", &demo.child.0.id().to_string()])
        .status()
        .unwrap();
    let _ = demo.child.0.wait();

    let first_token = demo.token.clone();
    // With its password file lost, a resumed demo gives its administrator a new password (it
    // cannot remove the only one) and prints it.
    std::fs::remove_file(dir.join("dashboard-password")).unwrap();
    let mut demo = start_demo(&dir);
    assert_eq!(
        demo.token, first_token,
        "a resumed demo keeps its API token"
    );
    let (email_again, new_password) = demo.sign_in.clone();
    assert_eq!(email_again, email);
    assert_ne!(new_password, password);
    assert!(dashboard_signs_in(&demo, &email, &new_password).await);
    assert!(!dashboard_signs_in(&demo, &email, &password).await);
    wait_for("the demo to settle after the restart", || settled(&demo)).await;
    let groups = members_by_group(&demo.sim).await;
    expected(&groups);
    let res = client
        .get(format!("{}/api/v1/customers/ivan/access", demo.api))
        .bearer_auth(&demo.token)
        .send()
        .await
        .unwrap();
    let access: serde_json::Value = res.json().await.unwrap();
    assert_eq!(access["groups"][0]["state"], "held", "{access}");
    assert_eq!(
        access["groups"][0]["reasons"][0]["cause"]["booking_id"],
        "ivan-now"
    );
    // One provider user per customer, however the crash fell.
    let history: Vec<serde_json::Value> = reqwest::get(format!("{}/__sim/users/history", demo.sim))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut creates = std::collections::BTreeMap::new();
    for h in &history {
        if h["op"] == "create"
            && let Some(e) = h["external_id"].as_str()
        {
            *creates.entry(e.to_owned()).or_insert(0) += 1;
        }
    }
    assert!(creates.values().all(|n| *n == 1), "{creates:?}");
    // Simulated swipes at the front door (a check-in door) fill presence: members' check-ins,
    // and a member of staff's failed check-in.
    for (path, what) in [
        ("/api/v1/checkins", "a check-in"),
        ("/api/v1/failed-checkins", "a failed check-in"),
    ] {
        wait_for(what, || async {
            let Ok(res) = client
                .get(format!("{}{path}", demo.api))
                .bearer_auth(&demo.token)
                .send()
                .await
            else {
                return false;
            };
            let v: serde_json::Value = res.json().await.unwrap_or_default();
            v["items"].as_array().is_some_and(|a| !a.is_empty())
        })
        .await;
    }
    // The member app signs in through the demo's outbox.
    let res = client
        .post(format!("{}/app/api/v1/signin", demo.api))
        .json(&serde_json::json!({"email": "ana@example.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let link: String = loop {
        let html = client
            .get(format!("{}/app/outbox", demo.api))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if let Some(rest) = html.split("/app/signin/").nth(1) {
            break rest.chars().take_while(char::is_ascii_hexdigit).collect();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no sign-in mail: {html}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let session: serde_json::Value = client
        .post(format!("{}/app/api/v1/session", demo.api))
        .json(&serde_json::json!({"token": link}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let member = session["token"].as_str().expect("a member session");
    let me: serde_json::Value = client
        .get(format!("{}/app/api/v1/doors", demo.api))
        .bearer_auth(member)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        me["items"].as_array().is_some_and(|d| !d.is_empty()),
        "Ana has doors to open: {me}"
    );
    Command::new("kill")
        .args(["-TERM", &demo.child.0.id().to_string()])
        .status()
        .unwrap();
    let status = tokio::task::spawn_blocking(move || demo.child.0.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The `brivo-sim` binary next to `doorsync` (built on demand when a partial `cargo test` did not).
fn brivo_sim_binary() -> std::path::PathBuf {
    let bin = Path::new(BIN).with_file_name("brivo-sim");
    if !bin.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "-p", "brivo-sim", "--bin", "brivo-sim"])
            .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
            .status()
            .unwrap();
        assert!(status.success(), "building brivo-sim");
    }
    bin
}

#[tokio::test]
async fn the_readme_session_works_against_the_brivo_sim_binary() {
    let mut cmd = Command::new(brivo_sim_binary());
    cmd.args(["--listen", "127.0.0.1:0"]);
    let (mut child, printed) = start_until(&mut cmd, true, |l| l.starts_with("api_url: "));
    let base = printed
        .last()
        .unwrap()
        .trim_start_matches("api_url: ")
        .trim()
        .trim_end_matches("/v1/api")
        .to_owned();
    for name in [
        "api_key: sim-api-key",
        "client_id: sim-client",
        "client_secret: sim-secret",
        "admin_id: admin",
        "password: password",
    ] {
        assert!(
            printed.iter().any(|l| l == name),
            "{name} not printed: {printed:?}"
        );
    }
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    let start = readme
        .find("<!-- sim-session")
        .expect("README has the marked brivo-sim session");
    let script = readme[start..]
        .split("```sh\n")
        .nth(1)
        .unwrap()
        .split("```")
        .next()
        .unwrap();
    let script = script.replace("http://127.0.0.1:8700", &base);
    let out = Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let _ = child.0.kill();
    let _ = child.0.wait();
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains(r#"{"id":15541101,"name":"Day Pass"}"#),
        "{text}"
    );
    assert!(text.contains(r#""count":14"#), "{text}");
    assert!(text.lines().any(|l| l.trim() == "204"), "{text}");
    assert!(
        text.contains(r#""op":"add""#) && text.contains(r#""external_id":"cust-1""#),
        "{text}"
    );
}
