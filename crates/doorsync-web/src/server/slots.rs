//! Who holds the server's connections, and whom a new one displaces when there is no room.
//!
//! A connection is displaced only while it waits for a request (half-sent, or idle between two
//! requests), never in the middle of one, and never before it has been read once (a client's
//! request is usually in the socket's buffer by the time it is accepted, so reading it once is
//! what tells a client that asks from one that holds). Room is made at the expense of the
//! newcomer's own address when it is at its bound; at the cap, of the address holding the most,
//! else of the newcomer's own, else of whichever waited longest. A client that floods the server
//! with half-open connections churns its own, while anyone else, even from the same address,
//! still gets in and is answered.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, oneshot};

/// One client, as far as the server can tell: an IPv4 address, or an IPv6 /64 prefix (one IPv6
/// host is usually given a whole /64, so a bound per address would not bound it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Client(IpAddr);

impl Client {
    pub fn of(addr: IpAddr) -> Client {
        match addr {
            IpAddr::V4(_) => Client(addr),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Client(IpAddr::V4(v4)),
                None => Client(IpAddr::V6(Ipv6Addr::from_bits(
                    v6.to_bits() & !(u128::MAX >> 64),
                ))),
            },
        }
    }
}

impl fmt::Display for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            IpAddr::V4(ip) => write!(f, "{ip}"),
            IpAddr::V6(ip) => write!(f, "{ip}/64"),
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Accepted, not yet read: it may hold a whole request.
    Opening,
    /// Waiting for a request since then.
    Waiting(Instant),
    /// In the middle of a request.
    Busy,
    /// Told to close; it still holds its descriptor until it has.
    Leaving,
}

struct Entry {
    id: u64,
    phase: Phase,
    leave: Option<oneshot::Sender<()>>,
}

#[derive(Default)]
struct Table {
    next_id: u64,
    open: usize,
    clients: HashMap<Client, Vec<Entry>>,
}

impl Table {
    fn held(&self, client: Client) -> usize {
        self.clients.get(&client).map_or(0, Vec::len)
    }

    /// The connection of `client` that has waited longest for a request, with when it began.
    fn longest_waiting(&self, client: Client) -> Option<(u64, Instant)> {
        self.clients
            .get(&client)?
            .iter()
            .filter_map(|e| match e.phase {
                Phase::Waiting(since) => Some((e.id, since)),
                _ => None,
            })
            .min_by_key(|&(_, since)| since)
    }

    /// Among clients holding more than `more_than`, the longest-waiting connection of the one
    /// holding the most (of those that have one waiting).
    fn longest_waiting_of_heaviest(&self, more_than: usize) -> Option<(Client, u64)> {
        self.clients
            .iter()
            .filter(|(_, held)| held.len() > more_than)
            .filter_map(|(&c, held)| {
                let (id, since) = self.longest_waiting(c)?;
                Some((held.len(), std::cmp::Reverse(since), c, id))
            })
            .max()
            .map(|(_, _, c, id)| (c, id))
    }

    /// The connection that has waited longest for a request, whoever holds it.
    fn longest_waiting_anywhere(&self) -> Option<(Client, u64)> {
        self.clients
            .keys()
            .filter_map(|&c| self.longest_waiting(c).map(|(id, since)| (since, c, id)))
            .min()
            .map(|(_, c, id)| (c, id))
    }

    fn remove(&mut self, client: Client, id: u64) {
        let Some(held) = self.clients.get_mut(&client) else {
            return;
        };
        let Some(at) = held.iter().position(|e| e.id == id) else {
            return;
        };
        held.swap_remove(at);
        if held.is_empty() {
            self.clients.remove(&client);
        }
        self.open -= 1;
    }

    fn entry(&mut self, client: Client, id: u64) -> Option<&mut Entry> {
        self.clients
            .get_mut(&client)?
            .iter_mut()
            .find(|e| e.id == id)
    }

    /// Tells a waiting connection to close. It keeps its place until its task has dropped it (or,
    /// if a request slipped in meanwhile, answered that request first).
    fn displace(&mut self, client: Client, id: u64) {
        if let Some(e) = self.entry(client, id) {
            e.phase = Phase::Leaving;
            if let Some(leave) = e.leave.take() {
                let _ = leave.send(());
            }
        }
    }
}

/// The connection table and its two bounds.
pub struct Slots {
    max: usize,
    per_client: usize,
    table: Mutex<Table>,
    /// Woken each time a connection closes.
    freed: Notify,
}

pub enum Admission {
    Admitted {
        ticket: Ticket,
        /// Fires when a newer connection needs this one's place.
        leave: oneshot::Receiver<()>,
        /// The client whose waiting connection was closed to make room, if one was.
        displaced: Option<Client>,
    },
    Refused,
}

/// One look at the table on behalf of a new connection.
enum Step {
    Enter(Admission),
    /// A connection was told to close for it (or had been): wait until one has.
    Wait,
    Refused,
}

impl Slots {
    pub fn new(max: usize, per_client: usize) -> Arc<Slots> {
        Arc::new(Slots {
            max: max.max(1),
            per_client: per_client.max(1),
            table: Mutex::default(),
            freed: Notify::new(),
        })
    }

    fn table(&self) -> MutexGuard<'_, Table> {
        // A panic while holding the lock leaves the table consistent: every change is one step.
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A place for a new connection from `client`: at once if there is room, else once a waiting
    /// connection has closed to make it, within `patience`; refused if none can be closed. The
    /// connections open, closing ones included, never exceed the cap, so neither do descriptors.
    pub async fn admit(self: &Arc<Self>, client: Client, patience: Duration) -> Admission {
        let deadline = tokio::time::Instant::now() + patience;
        let mut displaced = None;
        loop {
            // Made before looking, so that a close in between is not missed.
            let freed = self.freed.notified();
            match self.step(client, &mut displaced) {
                Step::Enter(admitted) => return admitted,
                Step::Refused => return Admission::Refused,
                Step::Wait => {
                    if tokio::time::timeout_at(deadline, freed).await.is_err() {
                        return Admission::Refused;
                    }
                }
            }
        }
    }

    fn step(self: &Arc<Self>, client: Client, displaced: &mut Option<Client>) -> Step {
        let mut t = self.table();
        let held = t.held(client);
        if held < self.per_client && t.open < self.max {
            let id = t.next_id;
            t.next_id += 1;
            t.open += 1;
            let (tx, leave) = oneshot::channel();
            t.clients.entry(client).or_default().push(Entry {
                id,
                phase: Phase::Opening,
                leave: Some(tx),
            });
            return Step::Enter(Admission::Admitted {
                ticket: Ticket {
                    slots: self.clone(),
                    client,
                    id,
                    busy: Default::default(),
                },
                leave,
                displaced: *displaced,
            });
        }
        if displaced.is_some() {
            return Step::Wait;
        }
        let victim = if held >= self.per_client {
            t.longest_waiting(client).map(|(id, _)| (client, id))
        } else {
            // At the cap: from a client that would still hold more than the newcomer, else from
            // the newcomer's own, else whichever has waited longest (a flood from many addresses
            // holding one each).
            t.longest_waiting_of_heaviest(held + 1)
                .or_else(|| t.longest_waiting(client).map(|(id, _)| (client, id)))
                .or_else(|| t.longest_waiting_anywhere())
        };
        let Some((c, id)) = victim else {
            return Step::Refused;
        };
        t.displace(c, id);
        *displaced = Some(c);
        Step::Wait
    }

    /// Out of descriptors nonetheless (the reserve was too small): closes the longest-waiting
    /// connection of the client holding the most, so that a later accept can succeed.
    pub fn shed_one(&self) -> Option<Client> {
        let mut t = self.table();
        let (c, id) = t.longest_waiting_of_heaviest(0)?;
        t.displace(c, id);
        Some(c)
    }

    /// The client holding the most connections, and how many; for the log.
    pub fn busiest(&self) -> Option<(Client, usize)> {
        self.table()
            .clients
            .iter()
            .map(|(&c, held)| (c, held.len()))
            .max_by_key(|&(_, n)| n)
    }

    pub fn open(&self) -> usize {
        self.table().open
    }

    fn set_phase(&self, client: Client, id: u64, phase: impl FnOnce(Phase) -> Phase) {
        if let Some(e) = self.table().entry(client, id)
            && !matches!(e.phase, Phase::Leaving)
        {
            e.phase = phase(e.phase);
        }
    }
}

/// A connection's place in the table, given up when dropped.
pub struct Ticket {
    slots: Arc<Slots>,
    client: Client,
    id: u64,
    busy: std::sync::atomic::AtomicU32,
}

impl Ticket {
    /// The connection was read once and is not in a request: from now on it may be displaced.
    pub fn read_once(&self, now: Instant) {
        self.slots.set_phase(self.client, self.id, |p| match p {
            Phase::Opening => Phase::Waiting(now),
            p => p,
        });
    }

    pub fn request_started(self: &Arc<Self>) -> Request {
        use std::sync::atomic::Ordering;
        self.busy.fetch_add(1, Ordering::SeqCst);
        self.slots.set_phase(self.client, self.id, |_| Phase::Busy);
        Request(self.clone())
    }

    pub fn busy(&self) -> bool {
        self.busy.load(std::sync::atomic::Ordering::SeqCst) > 0
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.slots.table().remove(self.client, self.id);
        self.slots.freed.notify_one();
    }
}

/// A request in progress on a connection: dropped once its response is written (or abandoned).
pub struct Request(Arc<Ticket>);

impl Drop for Request {
    fn drop(&mut self) {
        use std::sync::atomic::Ordering;
        let t = &self.0;
        let busy = t.busy.fetch_sub(1, Ordering::SeqCst) - 1;
        let now = Instant::now();
        t.slots.set_phase(t.client, t.id, |_| {
            if busy == 0 {
                Phase::Waiting(now)
            } else {
                Phase::Busy
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(last: u8) -> Client {
        Client::of(IpAddr::from([10, 0, 0, last]))
    }

    struct Held {
        ticket: Option<Arc<Ticket>>,
        leave: oneshot::Receiver<()>,
    }

    impl Held {
        /// Whether it was told to leave; if so it closes, as its connection's task would.
        fn displaced(&mut self) -> bool {
            let told = self.leave.try_recv().is_ok();
            if told {
                self.ticket = None;
            }
            told
        }

        fn ticket(&self) -> &Arc<Ticket> {
            self.ticket.as_ref().unwrap()
        }
    }

    enum Got {
        In(Held),
        /// Told this client's connection to close, and waits.
        Waits(Client),
        Refused,
    }

    fn step(slots: &Arc<Slots>, c: Client) -> Got {
        let mut displaced = None;
        match slots.step(c, &mut displaced) {
            Step::Enter(Admission::Admitted { ticket, leave, .. }) => Got::In(Held {
                ticket: Some(Arc::new(ticket)),
                leave,
            }),
            Step::Wait => Got::Waits(displaced.unwrap()),
            Step::Enter(Admission::Refused) | Step::Refused => Got::Refused,
        }
    }

    fn enter(slots: &Arc<Slots>, c: Client) -> Held {
        match step(slots, c) {
            Got::In(h) => h,
            _ => panic!("no room for {c}"),
        }
    }

    /// Half-open connections from `c`, read once and waiting, each a millisecond after the last.
    fn flood(slots: &Arc<Slots>, c: Client, n: usize, start: Instant) -> Vec<Held> {
        (0..n)
            .map(|i| {
                let h = enter(slots, c);
                h.ticket()
                    .read_once(start + Duration::from_millis(i as u64));
                h
            })
            .collect()
    }

    fn told(held: &mut [Held]) -> usize {
        held.iter_mut()
            .map(|h| h.displaced())
            .filter(|&d| d)
            .count()
    }

    #[test]
    fn a_flooding_address_displaces_its_own_oldest_waiting_connection() {
        let slots = Slots::new(100, 4);
        let t0 = Instant::now();
        let mut held = flood(&slots, client(1), 4, t0);
        assert!(matches!(step(&slots, client(1)), Got::Waits(c) if c == client(1)));
        assert!(held[0].displaced());
        assert_eq!(told(&mut held[1..]), 0);
        let mut next = enter(&slots, client(1));
        assert_eq!(slots.open(), 4);
        // A connection not yet read, or in a request, is never the one displaced.
        let requests: Vec<_> = held[1..]
            .iter()
            .map(|h| h.ticket().request_started())
            .collect();
        assert!(matches!(step(&slots, client(1)), Got::Refused));
        next.ticket().read_once(t0);
        drop(requests);
        assert!(matches!(step(&slots, client(1)), Got::Waits(_)));
        assert!(next.displaced(), "the one waiting longest goes first");
        assert_eq!(told(&mut held[1..]), 0);
        let _newest = enter(&slots, client(1));
    }

    #[test]
    fn at_the_cap_room_is_made_at_the_expense_of_the_heaviest_address() {
        let slots = Slots::new(10, 6);
        let t0 = Instant::now();
        let mut heavy = flood(&slots, client(1), 6, t0);
        let mut light = flood(&slots, client(2), 4, t0);
        // A new address gets in; the heaviest one pays for it.
        assert!(matches!(step(&slots, client(3)), Got::Waits(c) if c == client(1)));
        assert_eq!((told(&mut heavy), told(&mut light)), (1, 0));
        let mut third = enter(&slots, client(3));
        // 4 would become 5, against 5: the newcomer's own address pays.
        assert!(matches!(step(&slots, client(2)), Got::Waits(c) if c == client(2)));
        assert_eq!((told(&mut heavy), told(&mut light)), (0, 1));
        let again = enter(&slots, client(2));
        assert!(!third.displaced());
        assert_eq!(slots.open(), 10);
        // Nothing waiting anywhere: refused.
        let _requests: Vec<_> = heavy
            .iter()
            .chain(&light)
            .chain([&third, &again])
            .filter_map(|h| h.ticket.as_ref())
            .map(|t| t.request_started())
            .collect();
        assert!(matches!(step(&slots, client(4)), Got::Refused));
    }

    #[test]
    fn at_the_cap_with_one_connection_per_address_the_longest_waiting_gives_way() {
        let slots = Slots::new(3, 2);
        let t0 = Instant::now();
        let mut first = flood(&slots, client(1), 1, t0 + Duration::from_millis(5));
        let mut second = flood(&slots, client(2), 1, t0);
        let mut third = flood(&slots, client(3), 1, t0 + Duration::from_millis(9));
        assert!(matches!(step(&slots, client(4)), Got::Waits(c) if c == client(2)));
        assert_eq!(
            (told(&mut first), told(&mut second), told(&mut third)),
            (0, 1, 0)
        );
        let _fourth = enter(&slots, client(4));
    }

    #[test]
    fn a_closing_connection_keeps_its_place_until_it_has_closed() {
        let slots = Slots::new(2, 2);
        let t0 = Instant::now();
        let mut a = flood(&slots, client(1), 2, t0);
        assert!(matches!(step(&slots, client(1)), Got::Waits(_)));
        assert_eq!(slots.open(), 2, "the one told to leave is still open");
        assert!(a[0].ticket.is_some());
        assert!(a[0].displaced());
        assert_eq!(slots.open(), 1);
        let _b = enter(&slots, client(1));
        assert_eq!(slots.open(), 2);
        drop(a);
        assert_eq!(slots.open(), 1);
    }

    #[tokio::test]
    async fn admission_waits_for_the_displaced_connection_to_close() {
        let slots = Slots::new(1, 1);
        let mut first = flood(&slots, client(1), 1, Instant::now()).pop().unwrap();
        let closer = tokio::spawn(async move {
            (&mut first.leave).await.unwrap();
            drop(first.ticket.take());
        });
        let got = slots.admit(client(1), Duration::from_secs(10)).await;
        assert!(matches!(got, Admission::Admitted { displaced: Some(c), .. } if c == client(1)));
        closer.await.unwrap();
        // Nothing that can close: refused once patience runs out.
        let slots = Slots::new(1, 1);
        let _opening = enter(&slots, client(1));
        let got = slots.admit(client(2), Duration::from_millis(1)).await;
        assert!(matches!(got, Admission::Refused));
    }

    #[test]
    fn ipv6_clients_are_told_apart_by_their_64_prefix() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(Client::of(a), Client::of(b));
        assert_ne!(Client::of(a), Client::of(c));
        assert_eq!(Client::of(a).to_string(), "2001:db8:1:2::/64");
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(Client::of(mapped).to_string(), "192.0.2.7");
    }
}
