//! The outbox, and delivery of its mail over plain SMTP (no TLS, no authentication) when an SMTP
//! server is configured: enough for a local sink such as the tests' own or Mailpit. A minimal
//! client suffices for that (EHLO, MAIL, RCPT, DATA, QUIT), so no mail library is pulled in.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::model::OutboxMail;
use crate::sim::Sim;

const FROM: &str = "no-reply@brivo-sim.invalid";
const CONVERSATION_TIMEOUT: Duration = Duration::from_secs(30);

/// Puts a mail in the outbox and, when SMTP is configured, delivers it in the background and
/// marks it delivered (or records the error).
pub fn send_mail(
    sim: &Arc<Sim>,
    to: String,
    subject: String,
    body: String,
    access_code: Option<String>,
) {
    let sent_at = Timestamp::now();
    let mail = OutboxMail {
        to,
        subject,
        body,
        access_code,
        sent_at,
        delivered: false,
        error: None,
    };
    let index = sim.write(|s| {
        s.outbox.push(mail.clone());
        s.outbox.len() - 1
    });
    let Some(server) = sim.smtp.clone() else {
        return;
    };
    let sim = sim.clone();
    tokio::spawn(async move {
        let result = tokio::time::timeout(CONVERSATION_TIMEOUT, deliver(&server, &mail)).await;
        let error = match result {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e.to_string()),
            Err(_) => Some("SMTP conversation timed out".to_string()),
        };
        if let Some(e) = &error {
            tracing::warn!(server = %server, to = %mail.to, error = %e, "SMTP delivery failed");
        }
        sim.write(|s| {
            // The outbox may have been reset meanwhile; only touch the same mail.
            if let Some(m) = s.outbox.get_mut(index)
                && m.sent_at == mail.sent_at
                && m.to == mail.to
            {
                m.delivered = error.is_none();
                m.error = error;
            }
        });
    });
}

async fn read_reply<R: AsyncBufReadExt + Unpin>(reader: &mut R) -> anyhow::Result<(u16, String)> {
    let mut text = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).await? == 0 {
            anyhow::bail!("SMTP server closed the connection");
        }
        let code: u16 = line
            .get(..3)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| anyhow::anyhow!("malformed SMTP reply: {line:?}"))?;
        text.push_str(line.get(4..).unwrap_or("").trim_end());
        // "250-..." continues a multi-line reply; "250 ..." ends it.
        if line.as_bytes().get(3) != Some(&b'-') {
            return Ok((code, text));
        }
        text.push(' ');
    }
}

async fn command<R, W>(reader: &mut R, writer: &mut W, line: &str, ok: &[u16]) -> anyhow::Result<()>
where
    R: AsyncBufReadExt + Unpin,
    W: AsyncWriteExt + Unpin,
{
    writer.write_all(format!("{line}\r\n").as_bytes()).await?;
    writer.flush().await?;
    let (code, text) = read_reply(reader).await?;
    if !ok.contains(&code) {
        anyhow::bail!("SMTP server answered {code} {text} to {line}");
    }
    Ok(())
}

fn safe_address(address: &str) -> anyhow::Result<&str> {
    if address.is_empty()
        || address
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || c == '<' || c == '>')
    {
        anyhow::bail!("refusing to send to the address {address:?}");
    }
    Ok(address)
}

/// The message in wire form: headers, a blank line, the body with CRLF line ends and leading
/// dots doubled, and the terminating dot line.
fn message(mail: &OutboxMail) -> String {
    let date = mail.sent_at.strftime("%a, %d %b %Y %H:%M:%S +0000");
    let subject: String = mail.subject.chars().filter(|c| !c.is_control()).collect();
    let mut out = format!(
        "From: Brivo <{FROM}>\r\nTo: <{to}>\r\nSubject: {subject}\r\nDate: {date}\r\n\
         Message-ID: <{id}@brivo-sim.invalid>\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n",
        to = mail.to,
        id = crate::util::random_hex(12),
    );
    for line in mail.body.replace("\r\n", "\n").split('\n') {
        if line.starts_with('.') {
            out.push('.');
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str(".\r\n");
    out
}

pub async fn deliver(server: &str, mail: &OutboxMail) -> anyhow::Result<()> {
    let to = safe_address(&mail.to)?;
    let stream = TcpStream::connect(server).await?;
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    let (code, text) = read_reply(&mut read).await?;
    if code != 220 {
        anyhow::bail!("SMTP server greeted with {code} {text}");
    }
    if command(&mut read, &mut write, "EHLO brivo-sim", &[250])
        .await
        .is_err()
    {
        command(&mut read, &mut write, "HELO brivo-sim", &[250]).await?;
    }
    command(
        &mut read,
        &mut write,
        &format!("MAIL FROM:<{FROM}>"),
        &[250],
    )
    .await?;
    command(
        &mut read,
        &mut write,
        &format!("RCPT TO:<{to}>"),
        &[250, 251],
    )
    .await?;
    command(&mut read, &mut write, "DATA", &[354]).await?;
    write.write_all(message(mail).as_bytes()).await?;
    write.flush().await?;
    let (code, text) = read_reply(&mut read).await?;
    if code != 250 {
        anyhow::bail!("SMTP server refused the message: {code} {text}");
    }
    // The message is accepted; a failing QUIT does not matter.
    let _ = command(&mut read, &mut write, "QUIT", &[221]).await;
    Ok(())
}
