//! A local SMTP server that keeps what it receives: `doorsync demo` shows its mail at
//! `/app/outbox`, and the tests read sign-in links from it. It speaks just enough SMTP for a
//! client such as lettre (EHLO, MAIL, RCPT, DATA with dot-unstuffing, RSET, NOOP, QUIT); it
//! never relays.

use std::sync::{Arc, Mutex};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// A mail as the sink received it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ReceivedMail {
    pub from: String,
    pub to: Vec<String>,
    pub subject: String,
    /// The message's text, headers left out and quoted-printable soft breaks undone.
    pub body: String,
    pub received_at: jiff::Timestamp,
}

/// The mail received so far, newest last.
#[derive(Clone, Default)]
pub struct Inbox(Arc<Mutex<Vec<ReceivedMail>>>);

impl Inbox {
    pub fn all(&self) -> Vec<ReceivedMail> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn push(&self, m: ReceivedMail) {
        let mut all = self.0.lock().unwrap_or_else(|e| e.into_inner());
        // A demo left running keeps the latest mail only.
        if all.len() >= 500 {
            all.remove(0);
        }
        all.push(m);
    }
}

/// Listens on `addr` (`127.0.0.1:0` for any free port); returns the address it got and the
/// inbox it fills.
pub async fn start(addr: &str) -> std::io::Result<(std::net::SocketAddr, Inbox)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let inbox = Inbox::default();
    let fill = inbox.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let fill = fill.clone();
            tokio::spawn(async move {
                if let Err(e) = conversation(stream, fill).await {
                    tracing::debug!(error = %e, "SMTP sink: a conversation ended early");
                }
            });
        }
    });
    Ok((local, inbox))
}

fn address(arg: &str) -> String {
    let a = arg.split_once(':').map_or(arg, |(_, a)| a).trim();
    let a = a.split_whitespace().next().unwrap_or("");
    a.trim_start_matches('<').trim_end_matches('>').to_owned()
}

async fn conversation(stream: tokio::net::TcpStream, inbox: Inbox) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    write.write_all(b"220 doorsync sink ready\r\n").await?;
    let (mut from, mut to) = (String::new(), Vec::new());
    while let Some(line) = lines.next_line().await? {
        let verb = line.get(..4).unwrap_or(&line).to_ascii_uppercase();
        let answer: &[u8] = match verb.as_str() {
            "EHLO" => b"250-doorsync sink\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n",
            "HELO" => b"250 doorsync sink\r\n",
            "MAIL" => {
                from = address(&line);
                to.clear();
                b"250 ok\r\n"
            }
            "RCPT" => {
                to.push(address(&line));
                b"250 ok\r\n"
            }
            "DATA" => {
                write.write_all(b"354 end with a dot\r\n").await?;
                let mut data = Vec::new();
                while let Some(l) = lines.next_line().await? {
                    if l == "." {
                        break;
                    }
                    data.push(l.strip_prefix('.').map_or(l.clone(), str::to_owned));
                }
                inbox.push(parse(&from, &to, &data));
                b"250 queued\r\n"
            }
            "RSET" => {
                from.clear();
                to.clear();
                b"250 ok\r\n"
            }
            "QUIT" => {
                write.write_all(b"221 bye\r\n").await?;
                return Ok(());
            }
            "NOOP" => b"250 ok\r\n",
            _ => b"502 not implemented\r\n",
        };
        write.write_all(answer).await?;
    }
    Ok(())
}

fn parse(from: &str, to: &[String], data: &[String]) -> ReceivedMail {
    let split = data.iter().position(String::is_empty).unwrap_or(data.len());
    let (headers, body) = data.split_at(split);
    let header = |name: &str| {
        headers.iter().find_map(|h| {
            let (k, v) = h.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    };
    let quoted = header("Content-Transfer-Encoding")
        .is_some_and(|e| e.eq_ignore_ascii_case("quoted-printable"));
    let mut text = String::new();
    for line in body.iter().skip(1) {
        if quoted {
            match line.strip_suffix('=') {
                Some(soft) => text.push_str(&unquote(soft)),
                None => {
                    text.push_str(&unquote(line));
                    text.push('\n');
                }
            }
        } else {
            text.push_str(line);
            text.push('\n');
        }
    }
    ReceivedMail {
        from: from.to_owned(),
        to: to.to_vec(),
        subject: header("Subject").unwrap_or_default(),
        body: text,
        received_at: jiff::Timestamp::now(),
    }
}

/// Undoes quoted-printable `=XX` escapes.
fn unquote(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'='
            && let Some(b) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quoted_printable_body_is_read_back() {
        let data: Vec<String> = [
            "Subject: Your sign-in link",
            "Content-Transfer-Encoding: quoted-printable",
            "",
            "Open http://x/app/signin/ab=",
            "cd =3D now",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let m = parse("a@b", &["c@d".into()], &data);
        assert_eq!(m.subject, "Your sign-in link");
        assert_eq!(m.body, "Open http://x/app/signin/abcd = now\n");
    }
}
