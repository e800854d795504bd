//! Who takes the key's next call slot when several are waiting: the most urgent call first,
//! then the one that has waited longest.
//!
//! Without it every waiter reserved a slot as it arrived, so a removal found up to one slot per
//! waiting caller booked ahead of it. Here only the head of the queue reserves (and sleeps until
//! its slot); the others wait in order of urgency, so a removal waits at most for the slot
//! already booked.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

/// How urgent a call is, most urgent first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Urgency {
    /// Takes access away (a removal from a group, a suspension), or is needed by every call (a
    /// token).
    Revokes,
    /// Gives access: the look-up, creation and group add of someone entitled now.
    Grants,
    /// Invitations, profile updates, listings and audits: nothing waits on them but themselves.
    Background,
}

impl Urgency {
    /// The urgency of a call by its endpoint (`"METHOD /path/{id}"`).
    pub(crate) fn of(endpoint: &str) -> Urgency {
        use crate::{auth, groups, users};
        match endpoint {
            groups::REMOVE_MEMBER | users::PUT_SUSPENDED | users::DELETE | auth::TOKEN_ENDPOINT => {
                Urgency::Revokes
            }
            groups::ADD_MEMBER
            | users::BY_EXTERNAL_ID
            | users::CREATE
            | users::GET
            | groups::USER_GROUPS
            | groups::UPDATE_USER_GROUPS
            | users::GET_SUSPENDED => Urgency::Grants,
            _ => Urgency::Background,
        }
    }
}

#[derive(Debug, Default)]
struct State {
    /// Someone holds the turn (is reserving or waiting for its slot).
    busy: bool,
    seq: u64,
    waiting: BTreeMap<(Urgency, u64), oneshot::Sender<Turn>>,
}

/// The callers waiting for the key's slots, in order of urgency.
#[derive(Debug, Default)]
pub(crate) struct Queue {
    state: Mutex<State>,
}

/// The right to reserve the next slot; dropping it hands the turn to the next caller.
#[derive(Debug)]
pub(crate) struct Turn {
    queue: Arc<Queue>,
}

impl Queue {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits for this caller's turn.
    pub(crate) async fn turn(self: &Arc<Self>, urgency: Urgency) -> Turn {
        let rx = {
            let mut s = self.lock();
            if !s.busy {
                s.busy = true;
                return Turn {
                    queue: self.clone(),
                };
            }
            s.seq += 1;
            let (tx, rx) = oneshot::channel();
            let key = (urgency, s.seq);
            s.waiting.insert(key, tx);
            rx
        };
        // A caller that gives up (its reconcile cancelled) drops `rx`; a turn already sent to
        // it is dropped with the channel and passes on.
        match rx.await {
            Ok(turn) => turn,
            // Unreachable while the queue lives (senders are only dropped after a send), but a
            // caller must never wait forever.
            Err(_) => Turn {
                queue: self.clone(),
            },
        }
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        let mut s = self.queue.lock();
        while let Some((_, tx)) = s.waiting.pop_first() {
            let next = Turn {
                queue: self.queue.clone(),
            };
            match tx.send(next) {
                Ok(()) => return,
                // That caller is gone: its turn must not run this drop again under the lock.
                Err(unsent) => std::mem::forget(unsent),
            }
        }
        s.busy = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn the_most_urgent_waiter_goes_next_whatever_its_arrival() {
        let q = Arc::new(Queue::default());
        let first = q.turn(Urgency::Background).await;
        let order = Arc::new(Mutex::new(vec![]));
        let mut tasks = vec![];
        for (name, u) in [
            ("invite-1", Urgency::Background),
            ("add", Urgency::Grants),
            ("invite-2", Urgency::Background),
            ("remove", Urgency::Revokes),
        ] {
            let (q, order) = (q.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                let _turn = q.turn(u).await;
                order.lock().unwrap().push(name);
            }));
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        drop(first);
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(
            *order.lock().unwrap(),
            ["remove", "add", "invite-1", "invite-2"]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiter_that_gives_up_passes_its_turn_on() {
        let q = Arc::new(Queue::default());
        let first = q.turn(Urgency::Grants).await;
        let gone = {
            let q = q.clone();
            tokio::spawn(async move { q.turn(Urgency::Revokes).await })
        };
        tokio::time::sleep(Duration::from_millis(1)).await;
        gone.abort();
        let _ = gone.await;
        let next = {
            let q = q.clone();
            tokio::spawn(async move { drop(q.turn(Urgency::Background).await) })
        };
        tokio::time::sleep(Duration::from_millis(1)).await;
        drop(first);
        tokio::time::timeout(Duration::from_secs(1), next)
            .await
            .expect("the turn was lost")
            .unwrap();
        // Nobody holds it now: a newcomer gets it at once.
        drop(q.turn(Urgency::Background).await);
    }
}
