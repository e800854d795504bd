//! `doorsync serve` under a low descriptor limit (`ulimit -n 256`, soft and hard), against
//! clients that open half-sent requests as fast as the server takes them, from several addresses:
//! `/healthz` and the API keep answering, from a clean address and from an attacking one, and the
//! log says so in a few lines rather than one per refused connection.

use crate::cli::{Guard, LISTENING, tempdir};
use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::{Instant, timeout};

const BIN: &str = env!("CARGO_BIN_EXE_doorsync");

struct Served {
    child: Guard,
    addr: SocketAddr,
    log: PathBuf,
}

/// `doorsync serve` started by `sh` after `limits` (a `ulimit` command), its log in a file.
async fn serve_under(dir: &Path, url: &str, limits: &str) -> Served {
    let log = dir.join("serve.log");
    let child = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{limits} && exec \"$0\" serve --listen 127.0.0.1:0"
        ))
        .arg(BIN)
        .current_dir(dir)
        .env("DOORSYNC_DATABASE_URL", url)
        .env_remove("DOORSYNC_LISTEN")
        .env("DOORSYNC_LOG", "info")
        .env("DOORSYNC_LOG_FORMAT", "text")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let child = Guard(child);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| l.starts_with(LISTENING)) {
            let addr = line
                .trim_start_matches(LISTENING)
                .trim()
                .trim_start_matches("http://")
                .parse()
                .unwrap();
            return Served { child, addr, log };
        }
        assert!(
            Instant::now() < deadline,
            "doorsync serve did not start: {text}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn connect_from(ip: Ipv4Addr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    // Churned connections leave ports in TIME_WAIT; an explicit bind would otherwise run out.
    socket.set_reuseaddr(true)?;
    socket.bind(SocketAddr::new(ip.into(), 0))?;
    socket.connect(to).await
}

/// One GET on a connection of its own from `ip`: its status, or `None` without an answer in 2 s
/// (a few milliseconds when the server is not flooded).
async fn status_of(ip: Ipv4Addr, to: SocketAddr, path: &str, token: Option<&str>) -> Option<u16> {
    let ask = async {
        let mut s = connect_from(ip, to).await.ok()?;
        let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n").as_bytes(),
        )
        .await
        .ok()?;
        let mut answer = Vec::new();
        s.read_to_end(&mut answer).await.ok()?;
        let answer = String::from_utf8_lossy(&answer);
        answer.split(' ').nth(1)?.parse().ok()
    };
    timeout(Duration::from_secs(2), ask).await.ok().flatten()
}

/// Opens connections from `ip` that send half a request and then nothing, as fast as the server
/// takes them, holding the newest `hold` of them, until `stop` turns true.
async fn half_open_flood(
    ip: Ipv4Addr,
    to: SocketAddr,
    hold: usize,
    opened: Arc<AtomicUsize>,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut held = VecDeque::new();
    while !*stop.borrow() {
        match timeout(Duration::from_secs(1), connect_from(ip, to)).await {
            Ok(Ok(mut s)) => {
                let _ = s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await;
                held.push_back(s);
                if held.len() > hold {
                    held.pop_front();
                }
                opened.fetch_add(1, Ordering::Relaxed);
            }
            _ => tokio::task::yield_now().await,
        }
    }
}

fn token(dir: &Path, url: &str) -> String {
    let out = Command::new(BIN)
        .current_dir(dir)
        .env("DOORSYNC_DATABASE_URL", url)
        .args(["token", "create", "--name", "probe"])
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .last()
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_floods_cannot_starve_health_and_api_under_a_low_descriptor_limit() {
    let dir = tempdir("slow-clients");
    let url = format!("sqlite://{}", dir.join("d.db").display());
    let token = token(&dir, &url);
    let served = serve_under(&dir, &url, "ulimit -n 256").await;
    let to = served.addr;

    let (stop, stopped) = tokio::sync::watch::channel(false);
    let opened = Arc::new(AtomicUsize::new(0));
    // One address holds more half-open connections than the server has descriptors; seven more
    // hold a share each, so that together they pass any connection cap below the limit even
    // where each is bound.
    let attackers = std::iter::once((1, 300)).chain((2..=8).map(|last| (last, 40)));
    let floods: Vec<_> = attackers
        .map(|(last, hold)| {
            let ip = Ipv4Addr::new(127, 0, 0, last);
            tokio::spawn(half_open_flood(
                ip,
                to,
                hold,
                opened.clone(),
                stopped.clone(),
            ))
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    while opened.load(Ordering::Relaxed) < 2000 {
        assert!(Instant::now() < deadline, "the flood never got going");
        tokio::task::yield_now().await;
    }

    // The attacking address itself, and one that is not attacking.
    let probes = [Ipv4Addr::new(127, 0, 0, 1), Ipv4Addr::new(127, 0, 0, 9)];
    let rounds = 16;
    let mut health = [0; 2];
    let mut api = [0; 2];
    let mut slowest = Duration::ZERO;
    for _ in 0..rounds {
        for (i, &ip) in probes.iter().enumerate() {
            let asked = Instant::now();
            if status_of(ip, to, "/healthz", None).await == Some(200) {
                health[i] += 1;
            }
            if status_of(ip, to, "/api/v1/customers?limit=1", Some(&token)).await == Some(200) {
                api[i] += 1;
            }
            slowest = slowest.max(asked.elapsed());
        }
    }
    let flooded = opened.load(Ordering::Relaxed);
    stop.send(true).unwrap();
    for f in floods {
        f.await.unwrap();
    }
    let log = std::fs::read_to_string(&served.log).unwrap();
    let log_lines = log.lines().count();
    eprintln!(
        "during a flood of {flooded} half-open connections: /healthz answered {}/{rounds} from the \
         attacking address and {}/{rounds} from another; the API {}/{rounds} and {}/{rounds}; \
         slowest pair {slowest:?}; {log_lines} log lines",
        health[0], health[1], api[0], api[1]
    );
    assert_eq!(
        (health, api),
        ([rounds; 2], [rounds; 2]),
        "requests went unanswered during the flood; the log:\n{log}"
    );
    assert!(
        log.lines().filter(|l| l.contains("accept failed")).count() <= 3,
        "one log line per failed accept:\n{log}"
    );
    assert!(log_lines < 40, "the flood filled the log:\n{log}");
    assert!(
        log.contains("connection limits reached"),
        "the flood reached the cap:\n{log}"
    );
    let cap: usize = log
        .lines()
        .find_map(|l| l.split("max_connections=").nth(1))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("the connection cap is logged at start:\n{log}"));
    assert!(cap < 256, "a cap of {cap} does not fit 256 descriptors");
    drop(served.child);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The soft limit is often far below the hard one (1024 and 524288 under systemd): serve raises
/// it, and sizes its connection cap on what it got.
#[tokio::test]
async fn serve_raises_the_soft_descriptor_limit_to_the_hard_one() {
    let dir = tempdir("raise-nofile");
    let url = format!("sqlite://{}", dir.join("d.db").display());
    let served = serve_under(&dir, &url, "ulimit -Sn 256 && ulimit -Hn 2048").await;
    let log = std::fs::read_to_string(&served.log).unwrap();
    let line = log
        .lines()
        .find(|l| l.contains("max_connections="))
        .unwrap_or_else(|| panic!("the connection cap is logged at start:\n{log}"));
    assert!(
        line.contains("descriptors=2048") && line.contains("raised_from=256"),
        "{line}"
    );
    drop(served.child);
    std::fs::remove_dir_all(&dir).unwrap();
}
