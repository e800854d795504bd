//! Who doorsync reconciles: a customer, or a visitor for the length of their visit.

use crate::ids::Id;
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Subject {
    Customer(Id),
    Visitor(Id),
}

impl Subject {
    /// The key of the subject's schedule row; also the `externalId` of a visitor's provider user.
    pub fn key(&self) -> String {
        self.to_string()
    }

    pub fn parse_key(key: &str) -> Option<Self> {
        let (kind, id) = key.split_once(':')?;
        let id = Id::parse(id).ok()?;
        match kind {
            "customer" => Some(Subject::Customer(id)),
            "visitor" => Some(Subject::Visitor(id)),
            _ => None,
        }
    }
}

/// What a visitor's `externalId` starts with; a customer id that starts with it (or with
/// [`CUSTOMER_PREFIX`]) is prefixed, so no customer and visitor can share an `externalId`.
const VISITOR_PREFIX: &str = "visitor:";
const CUSTOMER_PREFIX: &str = "customer:";

impl Subject {
    /// The provider user's `externalId`: a customer's own id (so users made by other tools
    /// with the customer's id are found), a visitor's id after `visitor:`. A customer id that
    /// itself starts with `visitor:` or `customer:` gets `customer:` in front, which keeps the
    /// mapping one-to-one.
    pub fn external_id(&self) -> String {
        match self {
            Subject::Visitor(id) => format!("{VISITOR_PREFIX}{id}"),
            Subject::Customer(id) => {
                let s = id.as_str();
                if s.starts_with(VISITOR_PREFIX) || s.starts_with(CUSTOMER_PREFIX) {
                    format!("{CUSTOMER_PREFIX}{s}")
                } else {
                    s.to_owned()
                }
            }
        }
    }

    /// The `externalId` doorsync gave users before the mapping was made one-to-one.
    pub fn legacy_external_id(&self) -> String {
        match self {
            Subject::Visitor(id) => format!("{VISITOR_PREFIX}{id}"),
            Subject::Customer(id) => id.to_string(),
        }
    }

    /// The subject an `externalId` names, the inverse of [`Subject::external_id`].
    pub fn from_external_id(external_id: &str) -> Option<Subject> {
        if let Some(v) = external_id.strip_prefix(VISITOR_PREFIX) {
            return Id::parse(v).ok().map(Subject::Visitor);
        }
        let id = external_id
            .strip_prefix(CUSTOMER_PREFIX)
            .unwrap_or(external_id);
        Id::parse(id).ok().map(Subject::Customer)
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subject::Customer(id) => write!(f, "customer:{id}"),
            Subject::Visitor(id) => write!(f, "visitor:{id}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_customer_named_like_a_visitor_gets_an_external_id_of_its_own() {
        let id = |s: &str| Id::parse(s).unwrap();
        let subjects = [
            Subject::Customer(id("v1")),
            Subject::Visitor(id("v1")),
            Subject::Customer(id("visitor:v1")),
            Subject::Customer(id("customer:v1")),
            Subject::Customer(id("customer:visitor:v1")),
            Subject::Visitor(id("visitor:v1")),
            Subject::Visitor(id("customer:v1")),
        ];
        let ext: std::collections::BTreeSet<String> =
            subjects.iter().map(Subject::external_id).collect();
        assert_eq!(ext.len(), subjects.len(), "{ext:?}");
        for s in &subjects {
            assert_eq!(
                Subject::from_external_id(&s.external_id()).as_ref(),
                Some(s)
            );
        }
        // Plain ids keep the externalId users were given before.
        assert_eq!(Subject::Customer(id("c-1")).external_id(), "c-1");
        assert_eq!(
            Subject::Customer(id("visitor:v1")).legacy_external_id(),
            Subject::Visitor(id("v1")).external_id()
        );
    }

    #[test]
    fn keys_round_trip_even_with_colons_in_ids() {
        for s in [
            Subject::Customer(Id::parse("a:b").unwrap()),
            Subject::Visitor(Id::parse("v-1").unwrap()),
        ] {
            assert_eq!(Subject::parse_key(&s.key()), Some(s));
        }
        assert_eq!(Subject::parse_key("team:x"), None);
        assert_eq!(Subject::parse_key("customer:"), None);
    }
}
