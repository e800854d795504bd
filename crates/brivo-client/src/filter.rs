//! Brivo's list filters, built so that no value can break their syntax.
//!
//! The syntax is `field__op:v1,v2;field2__op:v`: `:` ends the operator, `,` separates values and
//! `;` separates conditions. A customer called "Smith, Jones; Ltd" must not turn into three
//! values and a stray condition, so text values have `%`, `,`, `;` and `:` percent-encoded
//! before they are joined. The joined filter is then encoded once more as an ordinary query
//! parameter by the HTTP layer (which also takes care of `&`, `+`, `#`, spaces and non-ASCII).
//! Plain text, numbers and instants need neither escape and reach the server exactly as the
//! documentation shows them (`occurred__gt:2019-09-16T00:00:00Z`).

use std::fmt;

/// A comparison operator of the filter syntax.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Equal; on text fields such as names Brivo treats it as "contains".
    Eq,
    Ne,
    Gt,
    Lt,
    /// Exact match (custom fields).
    Exact,
}

impl Op {
    fn as_str(self) -> &'static str {
        match self {
            Op::Eq => "eq",
            Op::Ne => "ne",
            Op::Gt => "gt",
            Op::Lt => "lt",
            Op::Exact => "exact",
        }
    }
}

/// One value of a condition. Text is escaped; numbers, booleans and instants are written as is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterValue(String);

impl From<&str> for FilterValue {
    fn from(text: &str) -> Self {
        FilterValue(escape_value(text))
    }
}

impl From<String> for FilterValue {
    fn from(text: String) -> Self {
        FilterValue::from(text.as_str())
    }
}

impl From<&String> for FilterValue {
    fn from(text: &String) -> Self {
        FilterValue::from(text.as_str())
    }
}

macro_rules! plain_value {
    ($($t:ty),*) => {$(
        impl From<$t> for FilterValue {
            fn from(value: $t) -> Self {
                FilterValue(value.to_string())
            }
        }
    )*};
}
plain_value!(u32, u64, i32, i64, bool);

impl From<jiff::Timestamp> for FilterValue {
    fn from(at: jiff::Timestamp) -> Self {
        // RFC 3339 in UTC ("…Z"); its colons are safe because only the first `:` of a condition
        // ends the operator.
        FilterValue(at.to_string())
    }
}

/// A filter for a list call, e.g.
/// `Filter::new().eq("name", ["Day Pass"]).ne("id", [1u64, 2])`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    conditions: Vec<String>,
}

impl Filter {
    pub fn new() -> Self {
        Filter::default()
    }

    /// Adds `field__op:values` (values joined by `,`).
    pub fn condition<V: Into<FilterValue>>(
        mut self,
        field: &str,
        op: Op,
        values: impl IntoIterator<Item = V>,
    ) -> Self {
        let values: Vec<String> = values.into_iter().map(|v| v.into().0).collect();
        self.conditions.push(format!(
            "{}__{}:{}",
            escape_value(field),
            op.as_str(),
            values.join(",")
        ));
        self
    }

    /// Any of `values` (on names: contains any of them).
    pub fn eq<V: Into<FilterValue>>(
        self,
        field: &str,
        values: impl IntoIterator<Item = V>,
    ) -> Self {
        self.condition(field, Op::Eq, values)
    }

    /// None of `values`.
    pub fn ne<V: Into<FilterValue>>(
        self,
        field: &str,
        values: impl IntoIterator<Item = V>,
    ) -> Self {
        self.condition(field, Op::Ne, values)
    }

    /// Greater than `value` (e.g. `occurred` after an instant).
    pub fn gt(self, field: &str, value: impl Into<FilterValue>) -> Self {
        self.condition(field, Op::Gt, [value])
    }

    /// Less than `value`.
    pub fn lt(self, field: &str, value: impl Into<FilterValue>) -> Self {
        self.condition(field, Op::Lt, [value])
    }

    /// Exactly `value` (custom fields, `cf_{id}`).
    pub fn exact(self, field: &str, value: impl Into<FilterValue>) -> Self {
        self.condition(field, Op::Exact, [value])
    }

    pub fn is_empty(&self) -> bool {
        self.conditions.is_empty()
    }

    /// Joins another filter's conditions onto this one.
    pub fn and(mut self, other: Filter) -> Self {
        self.conditions.extend(other.conditions);
        self
    }
}

/// The value of the `filter` query parameter, before query encoding.
impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.conditions.join(";"))
    }
}

/// Percent-encodes the characters that carry meaning in the filter syntax, and `%` itself so
/// that the server's decoding of a value is unambiguous.
fn escape_value(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '%' => out.push_str("%25"),
            ',' => out.push_str("%2C"),
            ';' => out.push_str("%3B"),
            ':' => out.push_str("%3A"),
            c => out.push(c),
        }
    }
    out
}

/// Encodes `text` as one URL path segment: everything but RFC 3986's unreserved characters is
/// percent-encoded, so an `externalId` like `a/b?c` stays one segment. Returns `None` for the
/// empty string and for `.` and `..`, which URL parsers treat as directory steps even encoded.
pub(crate) fn path_segment(text: &str) -> Option<String> {
    if text.is_empty() || text == "." || text == ".." {
        return None;
    }
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_examples() {
        let f = Filter::new()
            .eq("id", [11u64, 22, 33])
            .eq("name", ["Brivo"]);
        assert_eq!(f.to_string(), "id__eq:11,22,33;name__eq:Brivo");
        let at: jiff::Timestamp = "2019-09-16T00:00:00Z".parse().unwrap();
        let f = Filter::new().gt("occurred", at);
        assert_eq!(f.to_string(), "occurred__gt:2019-09-16T00:00:00Z");
        let f = Filter::new().eq("status", ["pending"]);
        assert_eq!(f.to_string(), "status__eq:pending");
        assert!(Filter::new().is_empty());
    }

    #[test]
    fn separators_inside_values_are_escaped() {
        let f = Filter::new()
            .eq("name", ["Smith, Jones; Ltd", "a:b", "100%"])
            .ne("id", [5u64]);
        assert_eq!(
            f.to_string(),
            "name__eq:Smith%2C Jones%3B Ltd,a%3Ab,100%25;id__ne:5"
        );
        // Spaces, `&` and `+` are left to query encoding, which the HTTP layer does.
        let f = Filter::new().eq("name", ["Day Pass & more+"]);
        assert_eq!(f.to_string(), "name__eq:Day Pass & more+");
    }

    #[test]
    fn every_value_splits_back_out() {
        let values = ["x,y", "p;q", "k:v", "%2C", "", "plain"];
        let f = Filter::new().eq("name", values);
        let text = f.to_string();
        let (head, rest) = text.split_once(':').unwrap();
        assert_eq!(head, "name__eq");
        let parts: Vec<_> = rest.split(',').collect();
        assert_eq!(parts.len(), values.len());
        assert!(!rest.contains(';'));
    }

    #[test]
    fn path_segments() {
        assert_eq!(path_segment("42").as_deref(), Some("42"));
        assert_eq!(path_segment("visitor:7").as_deref(), Some("visitor%3A7"));
        assert_eq!(
            path_segment("a/b?c#d e").as_deref(),
            Some("a%2Fb%3Fc%23d%20e")
        );
        assert_eq!(path_segment("é").as_deref(), Some("%C3%A9"));
        assert_eq!(path_segment(".."), None);
        assert_eq!(path_segment(""), None);
        assert_eq!(path_segment("a.b").as_deref(), Some("a.b"));
    }
}
