//! Validated identifiers and values that arrive from outside: parsed once at the edge, trusted after.

use serde::{Deserialize, Deserializer, Serialize, de};
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error(
        "an id is 1 to 128 characters of A-Z, a-z, 0-9, '.', '_', ':' and '-', other than \".\" and \"..\""
    )]
    Id,
    #[error("not an e-mail address")]
    Email,
    #[error("unknown time zone {0:?}; use an IANA name such as Europe/London")]
    Zone(String),
}

/// A caller's own id for a record: 1–128 characters of `[A-Za-z0-9._:-]`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Id(String);

impl Id {
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        // `.` and `..` would name a path segment's parent in a URL, not a record.
        let ok = (1..=128).contains(&s.len())
            && s != "."
            && s != ".."
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
        if ok {
            Ok(Id(s.to_owned()))
        } else {
            Err(ParseError::Id)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::borrow::Borrow<str> for Id {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Id::parse(&s).map_err(de::Error::custom)
    }
}

/// Unicode's bidirectional embeddings, overrides and isolates: text carrying them can display
/// in another order than it reads (a name that shows as someone else's), so no value takes them.
pub fn is_bidi_override(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// An e-mail address, checked for shape (one `@`, a dotted domain, no spaces), not deliverability.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Email(String);

impl Email {
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        let s = s.trim();
        let (local, domain) = s.split_once('@').ok_or(ParseError::Email)?;
        let ok = !local.is_empty()
            && local.len() <= 64
            && s.len() <= 254
            && !domain.contains('@')
            && domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !domain.contains("..")
            && !s.chars().any(|c| {
                c.is_whitespace()
                    || c.is_control()
                    || is_bidi_override(c)
                    || matches!(c, '<' | '>' | '\u{200E}' | '\u{200F}' | '\u{061C}')
            });
        if ok {
            Ok(Email(s.to_owned()))
        } else {
            Err(ParseError::Email)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for Email {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Email::parse(&s).map_err(de::Error::custom)
    }
}

/// An IANA time zone name known to the bundled time zone database.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Zone(String);

impl Zone {
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        jiff::tz::TimeZone::get(s).map_err(|_| ParseError::Zone(s.to_owned()))?;
        Ok(Zone(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn tz(&self) -> jiff::tz::TimeZone {
        // Parsing proved the zone exists; the database is bundled, so it cannot vanish later.
        jiff::tz::TimeZone::get(&self.0).unwrap_or(jiff::tz::TimeZone::UTC)
    }
}

impl<'de> Deserialize<'de> for Zone {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Zone::parse(&s).map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_accept_the_documented_alphabet_only() {
        assert!(Id::parse("cust-1.a_b:C").is_ok());
        assert!(Id::parse(&"x".repeat(128)).is_ok());
        assert_eq!(Id::parse(""), Err(ParseError::Id));
        assert_eq!(Id::parse(&"x".repeat(129)), Err(ParseError::Id));
        assert!(Id::parse("...").is_ok());
        for bad in ["a b", "a/b", "é", "a?b", "a%20", ".", ".."] {
            assert_eq!(Id::parse(bad), Err(ParseError::Id), "{bad}");
        }
    }

    #[test]
    fn emails_need_a_local_part_and_a_dotted_domain() {
        assert!(Email::parse("ana@example.com").is_ok());
        for bad in [
            "ana",
            "ana@",
            "@example.com",
            "ana@example",
            "a b@example.com",
            "a@b@c.com",
            "a@.com",
            "a@x..com",
            "ana\u{202E}moc@example.com",
            "ana@example.com\u{2066}",
        ] {
            assert_eq!(Email::parse(bad), Err(ParseError::Email), "{bad}");
        }
    }

    #[test]
    fn zones_must_exist() {
        assert!(Zone::parse("Europe/London").is_ok());
        assert!(Zone::parse("Mars/Olympus").is_err());
    }
}
