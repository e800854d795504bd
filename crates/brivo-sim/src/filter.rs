//! Brivo's list filter syntax (reference §5):
//! `filter=<field>__<op>:<v1>[,<v2>…][;<field2>__<op>:<v>…]`, ops `eq ne gt lt exact`.
//! A malformed expression is a 400 "Invalid filter format"; a well-formed one naming a field or
//! operator the endpoint does not know is a 400 "Invalid criteria provided".

use std::collections::HashMap;

use crate::api::ApiError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Gt,
    Lt,
    Exact,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clause {
    pub field: String,
    pub op: Op,
    pub values: Vec<String>,
}

pub fn parse(text: &str) -> Result<Vec<Clause>, ApiError> {
    let mut clauses = Vec::new();
    // A trailing ';' is tolerated because filter builders commonly emit one.
    let text = text.strip_suffix(';').unwrap_or(text);
    for part in text.split(';') {
        let (lhs, rhs) = part.split_once(':').ok_or_else(ApiError::invalid_filter)?;
        let (field, op) = lhs.rsplit_once("__").ok_or_else(ApiError::invalid_filter)?;
        let valid_field = !field.is_empty()
            && field
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.');
        if !valid_field {
            return Err(ApiError::invalid_filter());
        }
        let op = match op {
            "eq" => Op::Eq,
            "ne" => Op::Ne,
            "gt" => Op::Gt,
            "lt" => Op::Lt,
            "exact" => Op::Exact,
            _ => return Err(ApiError::invalid_filter()),
        };
        // Clients escape `,` `;` `:` and `%` inside a value as %XX; decode after splitting.
        let values: Vec<String> = rhs.split(',').map(percent_decode).collect();
        if values.iter().any(String::is_empty) {
            return Err(ApiError::invalid_filter());
        }
        clauses.push(Clause {
            field: field.to_string(),
            op,
            values,
        });
    }
    Ok(clauses)
}

/// Decodes `%XX` escapes; anything else (a lone `%`, bad hex) stays as it is.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads `filter` from the query and checks each clause against the fields and operators an
/// endpoint supports.
/// Field names are matched as written: DOCS25R lists them in lower case (`firstname`, `user_status`).
pub fn from_query(
    params: &HashMap<String, String>,
    allowed: &[(&str, &[Op])],
) -> Result<Vec<Clause>, ApiError> {
    let Some(text) = params.get("filter") else {
        return Ok(Vec::new());
    };
    let clauses = parse(text)?;
    for c in &clauses {
        let ok = allowed
            .iter()
            .any(|(field, ops)| c.field == *field && ops.contains(&c.op));
        if !ok {
            return Err(ApiError::invalid_criteria());
        }
    }
    Ok(clauses)
}

/// Brivo's `eq` on names means "contains" (case-insensitive here); `ne` is its negation.
pub fn matches_contains(c: &Clause, value: &str) -> bool {
    let value = value.to_lowercase();
    let any = c.values.iter().any(|v| value.contains(&v.to_lowercase()));
    match c.op {
        Op::Ne => !any,
        _ => any,
    }
}

/// `eq` / `ne` against a set of ids; a value that is not a number is a criteria error.
pub fn matches_id(c: &Clause, id: u64) -> Result<bool, ApiError> {
    let mut any = false;
    for v in &c.values {
        let wanted: u64 = v.parse().map_err(|_| ApiError::invalid_criteria())?;
        any |= wanted == id;
    }
    Ok(match c.op {
        Op::Ne => !any,
        _ => any,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_example() {
        let c = parse("id__eq:11,22,33;name__eq:Brivo").unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].field, "id");
        assert_eq!(c[0].values, ["11", "22", "33"]);
        assert_eq!(c[1].op, Op::Eq);
    }

    #[test]
    fn escaped_separators_stay_inside_their_value() {
        let c = parse("lastname__eq:Smith%2C Jones%3B%25,Lee").unwrap();
        assert_eq!(c[0].values, ["Smith, Jones;%", "Lee"]);
        assert_eq!(
            parse("name__eq:100%").unwrap()[0].values,
            ["100%"],
            "a lone % stays"
        );
    }

    #[test]
    fn keeps_colons_in_values() {
        let c = parse("occurred__gt:2019-09-16T00:00:00Z").unwrap();
        assert_eq!(c[0].values, ["2019-09-16T00:00:00Z"]);
    }

    #[test]
    fn rejects_bad_syntax() {
        for bad in [
            "name",
            "name:x",
            "name__eq",
            "__eq:x",
            "name__like:x",
            "name__eq:",
            "a__eq:1;;b__eq:2",
            "name__eq:a,,b",
        ] {
            assert!(parse(bad).is_err(), "{bad} should be rejected");
        }
    }
}
