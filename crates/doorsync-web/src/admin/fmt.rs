//! Times as an operator reads them: in the location's zone, with the zone named.

use doorsync_core::Zone;
use doorsync_store::{Kind, Record, Store, StoreError};
use jiff::Timestamp;
use jiff::tz::TimeZone;

pub(crate) struct Zoned {
    tz: TimeZone,
    name: String,
}

impl Zoned {
    pub fn of(zone: &Zone) -> Zoned {
        Zoned {
            tz: zone.tz(),
            name: zone.as_str().to_owned(),
        }
    }

    /// The space's zone: its first location's (a space rarely spans zones), else UTC.
    pub async fn of_space(store: &dyn Store) -> Result<Zoned, StoreError> {
        Ok(match store.list(Kind::Location, None, 1).await?.first() {
            Some(Record::Location(l)) => Zoned::of(&l.timezone),
            _ => Zoned {
                tz: TimeZone::UTC,
                name: "UTC".into(),
            },
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `Fri 4 Dec 2026 14:05`
    pub fn when(&self, t: Timestamp) -> String {
        t.to_zoned_datetime(self.tz.clone())
            .strftime("%a %-d %b %Y %H:%M")
            .to_string()
    }

    pub fn opt(&self, t: Option<Timestamp>) -> String {
        t.map_or_else(|| "—".to_owned(), |t| self.when(t))
    }

    /// `4 Dec 2026`
    pub fn date(&self, t: Timestamp) -> String {
        t.to_zoned_datetime(self.tz.clone())
            .strftime("%-d %b %Y")
            .to_string()
    }

    /// An `<input type="datetime-local">` value read in this zone.
    pub fn parse_input(&self, s: &str) -> Option<Timestamp> {
        let civil: jiff::civil::DateTime = s.parse().ok()?;
        civil
            .to_zoned_datetime(self.tz.clone())
            .ok()
            .map(|z| z.timestamp())
    }
}

/// `3 min ago`, `in 2 h`: how far `t` is from `now`.
pub(crate) fn relative(now: Timestamp, t: Timestamp) -> String {
    let secs = t.as_second() - now.as_second();
    let n = secs.unsigned_abs();
    if n == 0 {
        return "just now".into();
    }
    let amount = match n {
        0..=59 => format!("{n} s"),
        60..=5_999 => format!("{} min", n / 60),
        6_000..=172_799 => format!("{} h", n / 3600),
        _ => format!("{} days", n / 86_400),
    };
    if secs < 0 {
        format!("{amount} ago")
    } else {
        format!("in {amount}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_in_the_zone() {
        let z = Zoned::of(&Zone::parse("Europe/Paris").unwrap());
        let t: Timestamp = "2026-12-04T13:05:00Z".parse().unwrap();
        assert_eq!(z.when(t), "Fri 4 Dec 2026 14:05");
        assert_eq!(z.parse_input("2026-12-04T14:05"), Some(t));
        assert_eq!(
            relative(
                t,
                t.checked_add(jiff::SignedDuration::from_mins(5)).unwrap()
            ),
            "in 5 min"
        );
    }
}
