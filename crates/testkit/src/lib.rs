//! Test harness: a fresh database per test (an SQLite file, or a new PostgreSQL database when
//! `DOORSYNC_TEST_PG_URL` names a server), and doorsync served on 127.0.0.1:0.

use doorsync_core::{Clock, ManualClock};

pub mod browser;
pub mod sync;
use doorsync_store::{SqlStore, Store};
use jiff::Timestamp;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A database that exists for one test.
pub struct TestDb {
    pub url: String,
    pub backend: Backend,
    cleanup: Cleanup,
}

enum Cleanup {
    Dir(PathBuf),
    Database { admin_url: String, name: String },
}

impl TestDb {
    /// A fresh database, or `None` (with a note on stderr) when PostgreSQL is wanted but no
    /// server is configured. With `DOORSYNC_REQUIRE_PG=1` a missing server is a failure.
    pub async fn new(backend: Backend) -> Option<TestDb> {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        match backend {
            Backend::Sqlite => {
                // Process ids come round again: a directory an earlier run left behind (one that
                // failed, or was killed) must not hand its database to this test.
                let nanos = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos());
                let dir = std::env::temp_dir()
                    .join(format!("doorsync-test-{}-{n}-{nanos}", std::process::id()));
                let _ = std::fs::remove_dir_all(&dir);
                std::fs::create_dir_all(&dir).expect("temp dir");
                let url = format!("sqlite://{}", dir.join("doorsync.db").display());
                Some(TestDb {
                    url,
                    backend,
                    cleanup: Cleanup::Dir(dir),
                })
            }
            Backend::Postgres => {
                let Ok(admin_url) = std::env::var("DOORSYNC_TEST_PG_URL") else {
                    if std::env::var("DOORSYNC_REQUIRE_PG").is_ok_and(|v| v == "1") {
                        panic!("DOORSYNC_REQUIRE_PG=1 but DOORSYNC_TEST_PG_URL is not set");
                    }
                    eprintln!("skipped: set DOORSYNC_TEST_PG_URL to run the PostgreSQL variant");
                    return None;
                };
                let nanos = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos() % 1_000_000_000_000);
                let name = format!("doorsync_test_{}_{n}_{nanos}", std::process::id());
                admin(&admin_url, &format!("CREATE DATABASE {name}")).await;
                let (path, query) = match admin_url.split_once('?') {
                    Some((p, q)) => (p, format!("?{q}")),
                    None => (admin_url.as_str(), String::new()),
                };
                let base = path.rsplit_once('/').map_or(path, |(b, _)| b);
                let url = format!("{base}/{name}{query}");
                Some(TestDb {
                    url,
                    backend,
                    cleanup: Cleanup::Database { admin_url, name },
                })
            }
        }
    }

    pub async fn store(&self) -> SqlStore {
        let store = SqlStore::connect(&self.url)
            .await
            .expect("connect")
            .with_secret_key(doorsync_store::SecretKey::parse(TEST_SECRET_KEY).expect("key"));
        store.migrate(Timestamp::now()).await.expect("migrate");
        store
    }

    /// Removes the database; call at the end of a test (a failed test leaves it for inspection).
    pub async fn drop_db(self) {
        match self.cleanup {
            Cleanup::Dir(dir) => {
                let _ = std::fs::remove_dir_all(dir);
            }
            Cleanup::Database { admin_url, name } => {
                admin(
                    &admin_url,
                    &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
                )
                .await;
            }
        }
    }
}

async fn admin(url: &str, sql: &str) {
    use sqlx::Connection;
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(url)
        .await
        .expect("connect to DOORSYNC_TEST_PG_URL");
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(&mut conn)
        .await
        .expect(sql);
    let _ = conn.close().await;
}

/// doorsync's API served on an ephemeral port, with a token and a clock the test controls.
pub struct App {
    pub engine: Option<Arc<doorsync_engine::Engine>>,
    pub base: String,
    pub token: String,
    pub client: reqwest::Client,
    pub store: Arc<SqlStore>,
    pub clock: Arc<ManualClock>,
    pub db: TestDb,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

pub const TEST_TOKEN: &str = "ds_test_token";
/// The key that seals connection credentials in tests.
pub const TEST_SECRET_KEY: &str =
    "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

impl App {
    pub async fn spawn(backend: Backend) -> Option<App> {
        App::spawn_with(backend, None, |_| None).await
    }

    /// With a clock of the caller's (the manual one otherwise) and an engine built on the store.
    pub async fn spawn_with(
        backend: Backend,
        clock: Option<Arc<dyn Clock>>,
        engine: impl FnOnce(Arc<dyn Store>) -> Option<Arc<doorsync_engine::Engine>>,
    ) -> Option<App> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        App::spawn_on(listener, backend, clock, engine).await
    }

    /// As [`App::spawn_with`], serving on `listener` (bound first, so that its address can be
    /// given to others before the app starts).
    pub async fn spawn_on(
        listener: tokio::net::TcpListener,
        backend: Backend,
        clock: Option<Arc<dyn Clock>>,
        engine: impl FnOnce(Arc<dyn Store>) -> Option<Arc<doorsync_engine::Engine>>,
    ) -> Option<App> {
        let db = TestDb::new(backend).await?;
        let store = Arc::new(db.store().await);
        let manual = Arc::new(ManualClock::new(
            "2026-06-01T09:00:00Z".parse().expect("instant"),
        ));
        store
            .create_token("test", &doorsync_web::auth::hash(TEST_TOKEN), manual.now())
            .await
            .expect("token");
        let shared: Arc<dyn Store> = store.clone();
        let engine = engine(shared.clone());
        let web_clock: Arc<dyn Clock> = match clock {
            Some(c) => c,
            None => manual.clone(),
        };
        let state = doorsync_web::AppState {
            store: shared,
            clock: web_clock,
            engine: engine.clone(),
            admin: Default::default(),
            outbox: None,
        };
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            doorsync_web::serve(listener, doorsync_web::router(state), async {
                let _ = rx.await;
            })
            .await
            .expect("serve");
        });
        Some(App {
            engine,
            base,
            token: TEST_TOKEN.to_owned(),
            client: reqwest::Client::new(),
            store,
            clock: manual,
            db,
            shutdown: Some(tx),
            task: Some(task),
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.client.get(self.url(path)).bearer_auth(&self.token)
    }

    pub fn put(&self, path: &str, body: serde_json::Value) -> reqwest::RequestBuilder {
        self.client
            .put(self.url(path))
            .bearer_auth(&self.token)
            .json(&body)
    }

    pub fn delete(&self, path: &str) -> reqwest::RequestBuilder {
        self.client.delete(self.url(path)).bearer_auth(&self.token)
    }

    /// PUTs and returns the status and JSON body.
    pub async fn put_json(&self, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
        let res = self.put(path, body).send().await.expect("request");
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(serde_json::Value::Null))
    }

    /// PATCHes with a JSON Merge Patch and returns the status and JSON body.
    pub async fn patch_json(
        &self,
        path: &str,
        patch: serde_json::Value,
    ) -> (u16, serde_json::Value) {
        let res = self
            .client
            .patch(self.url(path))
            .bearer_auth(&self.token)
            .header("content-type", "application/merge-patch+json")
            .body(patch.to_string())
            .send()
            .await
            .expect("request");
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(serde_json::Value::Null))
    }

    pub async fn get_json(&self, path: &str) -> (u16, serde_json::Value) {
        let res = self.get(path).send().await.expect("request");
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(serde_json::Value::Null))
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        self.store.close().await;
        self.db.drop_db().await;
    }
}

/// Runs an async test body once per backend, each in its own test function.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name($crate::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name($crate::Backend::Postgres).await
                }
            )*
        }
    };
}
