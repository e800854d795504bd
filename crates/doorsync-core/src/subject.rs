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
