//! Small helpers shared by the modules: Brivo's date formats, random strings, base64 for Basic
//! auth and the JWT look-alike, HTML escaping.

use jiff::Timestamp;

/// Brivo's documented date format: UTC at second precision (`2015-04-15T17:00:00Z`).
pub fn fmt_seconds(ts: Timestamp) -> String {
    ts.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// The format events and invitations really carry: UTC with milliseconds.
pub fn fmt_millis(ts: Timestamp) -> String {
    ts.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// Parses an input date: RFC 3339 with optional fraction and any offset, or a bare date (which
/// Brivo accepted for credential assignment and echoed as midnight UTC).
pub fn parse_instant(s: &str) -> Option<Timestamp> {
    let s = s.trim();
    if let Ok(ts) = s.parse::<Timestamp>() {
        return Some(ts);
    }
    let date = s.parse::<jiff::civil::Date>().ok()?;
    date.to_zoned_datetime(jiff::tz::TimeZone::UTC)
        .ok()
        .map(|z| z.timestamp())
}

/// Truncates to whole milliseconds, the precision events are shown with, so that a value read
/// back from JSON compares equal to the stored one.
pub fn to_millis(ts: Timestamp) -> Timestamp {
    Timestamp::from_millisecond(ts.as_millisecond()).unwrap_or(ts)
}

pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    // The OS random source failing is not something a test emulator can recover from.
    getrandom::fill(&mut buf).expect("the operating system's random source is unavailable");
    buf
}

pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).expect("the operating system's random source is unavailable");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// Random letters and digits, like Brivo's invitation access codes (`i9o7aR37`).
pub fn random_alnum(len: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut buf = vec![0u8; len];
    getrandom::fill(&mut buf).expect("the operating system's random source is unavailable");
    buf.iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect()
}

/// A random (version 4) UUID in its usual text form, as Brivo uses for `jti` and event `uuid`.
pub fn uuid_v4() -> String {
    let mut b = random_bytes::<16>();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding, or the URL-safe alphabet without padding (for JWT parts).
pub fn base64_encode(data: &[u8], url_safe: bool) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let n = match chunk.len() {
            3 => (u32::from(chunk[0]) << 16) | (u32::from(chunk[1]) << 8) | u32::from(chunk[2]),
            2 => (u32::from(chunk[0]) << 16) | (u32::from(chunk[1]) << 8),
            _ => u32::from(chunk[0]) << 16,
        };
        let chars = chunk.len() + 1;
        for i in 0..4 {
            if i < chars {
                let c = B64[((n >> (18 - 6 * i)) & 63) as usize];
                out.push(match (url_safe, c) {
                    (true, b'+') => '-',
                    (true, b'/') => '_',
                    _ => c as char,
                });
            } else if !url_safe {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes standard base64 (padding optional); `None` on any invalid character.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let text = text.trim().trim_end_matches('=');
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for c in text.bytes() {
        let v = B64.iter().position(|&b| b == c)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

pub fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips_every_length() {
        for len in 0..10 {
            let data: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            let enc = base64_encode(&data, false);
            assert_eq!(enc.len() % 4, 0);
            assert_eq!(base64_decode(&enc).unwrap(), data);
        }
        assert_eq!(
            base64_encode(b"sim-client:sim-secret", false),
            "c2ltLWNsaWVudDpzaW0tc2VjcmV0"
        );
        assert_eq!(base64_encode(&[0xfb, 0xff], true), "-_8");
        assert!(base64_decode("a$b").is_none());
    }

    #[test]
    fn parses_brivo_dates() {
        let a = parse_instant("2015-04-15T17:00:00-05:00").unwrap();
        assert_eq!(fmt_seconds(a), "2015-04-15T22:00:00Z");
        let b = parse_instant("2017-09-13").unwrap();
        assert_eq!(fmt_seconds(b), "2017-09-13T00:00:00Z");
        let c = parse_instant("2024-04-17T08:52:39.724Z").unwrap();
        assert_eq!(fmt_millis(c), "2024-04-17T08:52:39.724Z");
        assert!(parse_instant("yesterday").is_none());
    }

    #[test]
    fn uuid_has_the_usual_shape() {
        let u = uuid_v4();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
    }
}
