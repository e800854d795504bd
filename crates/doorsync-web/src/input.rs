//! Reading a request body: size, media type, JSON syntax and shape, each failure naming the field.

use crate::error::ApiError;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode, header};
use serde::de::DeserializeOwned;

pub const MAX_BODY: usize = 1024 * 1024;

pub fn json<T: DeserializeOwned>(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<T, ApiError> {
    let bytes = body.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "the body is too large (1 MiB for one record, 32 MiB for a batch)",
            )
        } else {
            ApiError::new(StatusCode::BAD_REQUEST, "unreadable_body", r.body_text())
        }
    })?;
    let ct = headers
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap_or("?").to_owned());
    if !ct.as_deref().is_some_and(is_json) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            match ct {
                Some(ct) => format!("send JSON (Content-Type: application/json), not {ct:?}"),
                None => "send JSON with Content-Type: application/json".to_owned(),
            },
        ));
    }
    let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::bad_request("malformed_json", "body", format!("malformed JSON: {e}"))
    })?;
    from_value(value)
}

/// A JSON object read into `T`, each failure naming its field.
pub fn from_value<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, ApiError> {
    // serde would read a struct from an array too; the API takes objects only.
    if !value.is_object() {
        return Err(ApiError::invalid("body", "expected a JSON object"));
    }
    let value = serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let message = e.into_inner().to_string();
        // serde_path_to_error's path ends at an unknown field but stops short of a missing one.
        let field = match named_field(&message) {
            Some(f) if path == "." => f.to_owned(),
            Some(f) if !path.ends_with(f) => format!("{path}.{f}"),
            _ => path,
        };
        ApiError::invalid(field, strip_position(&message))
    })?;
    Ok(value)
}

/// The years doorsync takes times in. The rules add leads, lags and a day to instants, in any
/// zone (offsets up to 26 hours): near the end of jiff's range (9999-12-30) that would overflow,
/// so the last year served is 9998; and no one books in year 0.
pub const YEARS: std::ops::RangeInclusive<i16> = 1900..=9998;
/// What is wrong with a time that cannot be read or is out of [`YEARS`], in the README's words:
/// never the parser's own message, which speaks of its internals.
pub const INSTANT_WORDS: &str = "must be an RFC 3339 instant with an offset, such as 2026-06-01T10:00:00Z, in the years 1900 to 9998";
pub const DATE_WORDS: &str = "must be a date YYYY-MM-DD in the years 1900 to 9998";

/// An RFC 3339 instant in [`YEARS`] (its year in UTC).
pub fn read_instant(s: &str) -> Option<jiff::Timestamp> {
    let t: jiff::Timestamp = s.parse().ok()?;
    YEARS
        .contains(&jiff::tz::TimeZone::UTC.to_datetime(t).year())
        .then_some(t)
}

/// A `YYYY-MM-DD` date in [`YEARS`].
pub fn read_date(s: &str) -> Option<jiff::civil::Date> {
    let d: jiff::civil::Date = s.parse().ok()?;
    YEARS.contains(&d.year()).then_some(d)
}

fn text_as<'de, D: serde::Deserializer<'de>, T>(
    d: D,
    read: fn(&str) -> Option<T>,
    words: &'static str,
) -> Result<T, D::Error> {
    use serde::Deserialize;
    use serde::de::Error;
    let s = String::deserialize(d).map_err(|_| D::Error::custom(words))?;
    read(&s).ok_or_else(|| D::Error::custom(words))
}

fn optional_text_as<'de, D: serde::Deserializer<'de>, T>(
    d: D,
    read: fn(&str) -> Option<T>,
    words: &'static str,
) -> Result<Option<T>, D::Error> {
    use serde::Deserialize;
    use serde::de::Error;
    let s = Option::<String>::deserialize(d).map_err(|_| D::Error::custom(words))?;
    s.map(|s| read(&s).ok_or_else(|| D::Error::custom(words)))
        .transpose()
}

/// serde `deserialize_with` for an instant field: [`read_instant`], refused in [`INSTANT_WORDS`].
pub fn instant<'de, D: serde::Deserializer<'de>>(d: D) -> Result<jiff::Timestamp, D::Error> {
    text_as(d, read_instant, INSTANT_WORDS)
}

/// As [`instant`], for an optional field (absent or `null`: none); give it `#[serde(default)]`.
pub fn optional_instant<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<jiff::Timestamp>, D::Error> {
    optional_text_as(d, read_instant, INSTANT_WORDS)
}

/// serde `deserialize_with` for a date field: [`read_date`], refused in [`DATE_WORDS`].
pub fn date<'de, D: serde::Deserializer<'de>>(d: D) -> Result<jiff::civil::Date, D::Error> {
    text_as(d, read_date, DATE_WORDS)
}

/// As [`date`], for an optional field; give it `#[serde(default)]`.
pub fn optional_date<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<jiff::civil::Date>, D::Error> {
    optional_text_as(d, read_date, DATE_WORDS)
}

/// `application/json` or a `+json` type, with parameters (`; charset=utf-8`) allowed.
fn is_json(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || essence
            .strip_prefix("application/")
            .is_some_and(|sub| sub.len() > 5 && sub.ends_with("+json"))
}

/// A query parameter or free text: control characters (NUL among them) are refused, since
/// PostgreSQL cannot store NUL in text and no legitimate value carries one.
pub fn no_control(field: impl Into<String>, value: &str) -> Result<(), ApiError> {
    if value.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "invalid_query",
            field,
            "control characters are not allowed",
        ));
    }
    Ok(())
}

/// serde names the field in the message, not the path, when a field is missing or unknown.
fn named_field(message: &str) -> Option<&str> {
    let rest = message
        .strip_prefix("unknown field `")
        .or_else(|| message.strip_prefix("missing field `"))?;
    rest.split('`').next()
}

fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct T {
        a: u32,
        b: Vec<u32>,
    }

    fn parse(s: &str) -> Result<T, ApiError> {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
        json(&h, Ok(Bytes::from(s.to_owned())))
    }

    #[test]
    fn times_are_read_in_the_years_served_only() {
        for ok in [
            "1900-01-01T00:00:00Z",
            "9998-12-31T23:59:59.999Z",
            "2026-06-01T10:00:00+02:00",
        ] {
            assert!(read_instant(ok).is_some(), "{ok}");
        }
        // The last instant jiff has is 9999-12-30T22:00:00Z; each bad one reads as none.
        for bad in [
            "9999-12-31T23:59:59Z",
            "9999-01-01T00:00:00Z",
            "9998-12-31T23:00:00-12:00",
            "1899-12-31T23:59:59Z",
            "2026-06-01T10:00:00",
            "",
        ] {
            assert!(read_instant(bad).is_none(), "{bad}");
        }
        assert!(read_date("9998-12-31").is_some());
        for bad in ["9999-01-01", "10000-01-01", "1899-12-31", "2026-02-30"] {
            assert!(read_date(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn only_json_media_types_are_read() {
        for ok in [
            "application/json",
            "Application/JSON; charset=utf-8",
            "application/merge-patch+json",
        ] {
            assert!(is_json(ok), "{ok}");
        }
        for bad in [
            "application/jsonfoo",
            "text/plain",
            "application/+json",
            "text/json",
            "",
        ] {
            assert!(!is_json(bad), "{bad}");
        }
        let e = json::<T>(&HeaderMap::new(), Ok(Bytes::from_static(b"{}"))).unwrap_err();
        assert_eq!(e.status.as_u16(), 415);
    }

    #[test]
    fn each_failure_names_its_field() {
        assert_eq!(parse(r#"{"a": 1, "b": [1]}"#).map(|t| t.a), Ok(1));
        let e = parse(r#"{"a": "x", "b": []}"#).unwrap_err();
        assert_eq!((e.status.as_u16(), e.field.as_deref()), (422, Some("a")));
        let e = parse(r#"{"a": 1, "b": [1, "x"]}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("b[1]"));
        let e = parse(r#"{"a": 1, "b": [], "c": 2}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("c"));
        let e = parse(r#"{"b": []}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("a"));
        for bad in ["{", "", "{\"a\": 1,}", "{\"a\":1,\"b\":[]} x"] {
            let e = parse(bad).unwrap_err();
            assert_eq!(
                (e.status.as_u16(), e.code),
                (400, "malformed_json"),
                "{bad}"
            );
        }
    }
}
