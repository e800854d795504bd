//! The soak's verdict, from two records only: the writes doorsync acknowledged (with the instant
//! of each acknowledgement) and brivo-sim's membership history. Nothing doorsync stores or
//! reports is trusted here, so a write doorsync lost or a removal it never made shows up.
//!
//! Times are seconds since the soak began. Time during a Brivo outage does not count: nobody
//! can change memberships then, so a change owed during one is owed `tolerance` after it ends.

use std::collections::BTreeMap;

/// `[from, until)`, in seconds.
pub type Span = (f64, f64);

/// A customer's access to one provider group.
pub type Key = (String, u64);

/// A booking as one acknowledged write left it: who, which group, and the window its access
/// covers (lead and lag included).
#[derive(Debug, Clone, PartialEq)]
pub struct Held {
    pub customer: String,
    pub group: u64,
    pub from: f64,
    pub until: f64,
}

/// The acknowledged states of one booking in order; `None` once cancelled or deleted.
pub type Versions = Vec<(f64, Option<Held>)>;

/// What each customer was entitled to, group by group: a version governs from its
/// acknowledgement until the next one's.
pub fn entitled(bookings: &BTreeMap<String, Versions>) -> BTreeMap<Key, Vec<Span>> {
    let mut out: BTreeMap<Key, Vec<Span>> = BTreeMap::new();
    for versions in bookings.values() {
        for (i, (acked, state)) in versions.iter().enumerate() {
            let Some(h) = state else { continue };
            let next = versions.get(i + 1).map_or(f64::INFINITY, |v| v.0);
            let span = (h.from.max(*acked), h.until.min(next));
            if span.0 < span.1 {
                out.entry((h.customer.clone(), h.group))
                    .or_default()
                    .push(span);
            }
        }
    }
    out.into_iter().map(|(k, v)| (k, merge(v))).collect()
}

/// One change in brivo-sim's membership history.
pub struct Change {
    pub at: f64,
    pub customer: String,
    pub group: u64,
    pub added: bool,
}

/// Who held which group when, up to `end`.
pub fn memberships(history: &[Change], end: f64) -> BTreeMap<Key, Vec<Span>> {
    let mut open: BTreeMap<Key, f64> = BTreeMap::new();
    let mut out: BTreeMap<Key, Vec<Span>> = BTreeMap::new();
    for c in history {
        let key = (c.customer.clone(), c.group);
        if c.added {
            open.entry(key).or_insert(c.at);
        } else if let Some(from) = open.remove(&key) {
            out.entry(key).or_default().push((from, c.at));
        }
    }
    for (key, from) in open {
        out.entry(key).or_default().push((from, end));
    }
    out.into_iter().map(|(k, v)| (k, merge(v))).collect()
}

/// Maps an instant to the time that counts: outages are cut out.
pub struct Warp {
    outages: Vec<Span>,
}

impl Warp {
    pub fn new(outages: &[Span]) -> Warp {
        Warp {
            outages: merge(outages.to_vec()),
        }
    }

    pub fn at(&self, t: f64) -> f64 {
        let lost: f64 = self
            .outages
            .iter()
            .map(|&(a, b)| (b.min(t) - a).max(0.0))
            .sum();
        t - lost
    }

    /// The instant a counted time stands for (the end of an outage for one inside it).
    pub fn back(&self, w: f64) -> f64 {
        let mut t = w;
        for &(a, b) in &self.outages {
            if t < a {
                break;
            }
            t += b - a;
        }
        t
    }

    fn spans(&self, v: &[Span]) -> Vec<Span> {
        merge(v.iter().map(|&(a, b)| (self.at(a), self.at(b))).collect())
    }
}

/// The soak's figures, in counted seconds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Figures {
    /// Held outside every entitlement widened by the tolerance.
    pub outside: f64,
    /// Entitled (from `tolerance` after an entitlement begins) and not held.
    pub unserved: f64,
    /// The longest stretch held outside any entitlement, with no tolerance: the latest removal.
    pub worst_outside: f64,
    /// The longest stretch entitled and not held, with no tolerance: the latest grant.
    pub worst_unserved: f64,
    pub entitled: f64,
    pub held: f64,
    /// The stretches beyond the tolerance, worst first (at most 20), in seconds since the start.
    pub violations: Vec<Violation>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Violation {
    pub customer: String,
    pub group: u64,
    /// "outside" or "unserved"
    pub kind: &'static str,
    pub from: f64,
    pub until: f64,
}

/// Compares what was held with what was owed over `[0, end)`.
pub fn judge(
    held: &BTreeMap<Key, Vec<Span>>,
    entitled: &BTreeMap<Key, Vec<Span>>,
    outages: &[Span],
    end: f64,
    tolerance: f64,
) -> Figures {
    let warp = Warp::new(outages);
    let end = warp.at(end);
    let mut keys: Vec<&Key> = held.keys().chain(entitled.keys()).collect();
    keys.sort();
    keys.dedup();
    let mut f = Figures::default();
    for key in keys {
        let clip = |v: Vec<Span>| -> Vec<Span> {
            v.into_iter()
                .map(|(a, b)| (a.max(0.0), b.min(end)))
                .filter(|(a, b)| a < b)
                .collect()
        };
        let h = clip(warp.spans(held.get(key).map_or(&[][..], |v| v)));
        let e = clip(warp.spans(entitled.get(key).map_or(&[][..], |v| v)));
        f.held += length(&h);
        f.entitled += length(&e);
        let widened = merge(
            e.iter()
                .map(|&(a, b)| (a - tolerance, b + tolerance))
                .collect(),
        );
        // Access is owed `tolerance` after it begins, and until it ends: a removal is never
        // early.
        let narrowed: Vec<Span> = e
            .iter()
            .map(|&(a, b)| (a + tolerance, b))
            .filter(|(a, b)| a < b)
            .collect();
        for (kind, pieces) in [
            ("outside", subtract(&h, &widened)),
            ("unserved", subtract(&narrowed, &h)),
        ] {
            let total = length(&pieces);
            if kind == "outside" {
                f.outside += total;
            } else {
                f.unserved += total;
            }
            f.violations
                .extend(pieces.into_iter().map(|(from, until)| Violation {
                    customer: key.0.clone(),
                    group: key.1,
                    kind,
                    from: warp.back(from),
                    until: warp.back(until),
                }));
        }
        f.worst_outside = f.worst_outside.max(longest(&subtract(&h, &e)));
        f.worst_unserved = f.worst_unserved.max(longest(&subtract(&e, &h)));
    }
    f.violations
        .sort_by(|a, b| (b.until - b.from).total_cmp(&(a.until - a.from)));
    f.violations.truncate(20);
    f
}

fn merge(mut v: Vec<Span>) -> Vec<Span> {
    v.retain(|(a, b)| a < b);
    v.sort_by(|x, y| x.0.total_cmp(&y.0));
    let mut out: Vec<Span> = Vec::with_capacity(v.len());
    for (a, b) in v {
        match out.last_mut() {
            Some(last) if a <= last.1 => last.1 = last.1.max(b),
            _ => out.push((a, b)),
        }
    }
    out
}

/// `a` minus `b`; both merged.
fn subtract(a: &[Span], b: &[Span]) -> Vec<Span> {
    let mut out = vec![];
    for &(mut from, until) in a {
        for &(c0, c1) in b {
            if c1 <= from || c0 >= until {
                continue;
            }
            if c0 > from {
                out.push((from, c0));
            }
            from = from.max(c1);
        }
        if from < until {
            out.push((from, until));
        }
    }
    out
}

fn length(v: &[Span]) -> f64 {
    v.iter().map(|(a, b)| b - a).sum()
}

fn longest(v: &[Span]) -> f64 {
    v.iter().map(|(a, b)| b - a).fold(0.0, f64::max)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(customer: &str, group: u64, from: f64, until: f64) -> Option<Held> {
        Some(Held {
            customer: customer.into(),
            group,
            from,
            until,
        })
    }

    fn change(at: f64, added: bool) -> Change {
        Change {
            at,
            customer: "c".into(),
            group: 1,
            added,
        }
    }

    #[test]
    fn a_version_governs_from_its_acknowledgement_until_the_next() {
        let mut b = BTreeMap::new();
        // Booked 10..20, moved at 15 to 30..40, cancelled at 35.
        b.insert(
            "b".to_string(),
            vec![
                (1.0, held("c", 1, 10.0, 20.0)),
                (15.0, held("c", 1, 30.0, 40.0)),
                (35.0, None),
            ],
        );
        let e = entitled(&b);
        assert_eq!(e[&("c".to_string(), 1)], vec![(10.0, 15.0), (30.0, 35.0)]);
    }

    #[test]
    fn membership_within_the_tolerance_passes_and_beyond_it_counts() {
        let mut b = BTreeMap::new();
        b.insert("b".to_string(), vec![(0.0, held("c", 1, 10.0, 20.0))]);
        let e = entitled(&b);
        let on_time = memberships(&[change(10.5, true), change(21.0, false)], 60.0);
        let f = judge(&on_time, &e, &[], 60.0, 2.0);
        assert_eq!((f.outside, f.unserved), (0.0, 0.0));
        assert_eq!((f.worst_outside, f.worst_unserved), (1.0, 0.5));
        // Removed 8 s late and never given: both count beyond the tolerance.
        let late = memberships(&[change(10.0, true), change(28.0, false)], 60.0);
        let f = judge(&late, &e, &[], 60.0, 2.0);
        assert_eq!(f.outside, 6.0);
        assert_eq!(f.violations[0].kind, "outside");
        let never = memberships(&[], 60.0);
        let f = judge(&never, &e, &[], 60.0, 2.0);
        assert_eq!(f.unserved, 8.0);
        // Removed 3 s early.
        let early = memberships(&[change(10.0, true), change(17.0, false)], 60.0);
        assert_eq!(judge(&early, &e, &[], 60.0, 2.0).unserved, 3.0);
        // Held to the end of the soak.
        let kept = memberships(&[change(10.0, true)], 60.0);
        assert_eq!(judge(&kept, &e, &[], 60.0, 2.0).outside, 38.0);
    }

    #[test]
    fn time_in_an_outage_does_not_count() {
        let mut b = BTreeMap::new();
        b.insert("b".to_string(), vec![(0.0, held("c", 1, 10.0, 20.0))]);
        let e = entitled(&b);
        // The booking ends in an outage from 18 to 40; the removal comes 1 s after it ends.
        let h = memberships(&[change(10.0, true), change(41.0, false)], 60.0);
        let f = judge(&h, &e, &[(18.0, 40.0)], 60.0, 2.0);
        assert_eq!(f.outside, 0.0);
        assert_eq!(f.worst_outside, 1.0);
        let warp = Warp::new(&[(18.0, 40.0)]);
        assert_eq!((warp.at(50.0), warp.back(28.0)), (28.0, 50.0));
        assert_eq!(warp.back(10.0), 10.0);
    }
}
