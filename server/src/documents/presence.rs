//! The awareness (presence) table of one document: who is here, with which state, and which
//! connection speaks for each Yjs client id. Sans-IO: it takes decoded entries and says what to
//! relay; the document owner does the sending.

use debrief_proto::awareness::{encode_update, AwarenessEntry, REMOVED_STATE};

use tokio::time::Instant;

use crate::documents::compact;
use crate::documents::peer::ConnId;
use crate::limits::PRESENCE_QUERY_INTERVAL;

#[derive(Debug)]
struct Client {
    id: u64,
    clock: u64,
    state: Box<str>,
    /// The connection that speaks for it.
    conn: ConnId,
}

/// Current awareness states of one document. A document has a handful of clients, so they are
/// kept in a small vector and found by a scan.
#[derive(Debug, Default)]
pub struct Presence {
    clients: Vec<Client>,
}

impl Presence {
    /// Applies entries received from `conn`, following the y-protocols rule: a newer clock wins,
    /// and an equal clock wins only to remove a state. Returns how many entries changed the table.
    pub fn apply(&mut self, conn: ConnId, entries: &[AwarenessEntry<'_>]) -> usize {
        let mut changed = 0;
        for e in entries {
            let index = self.clients.iter().position(|c| c.id == e.client);
            let newer = match index {
                None => true,
                Some(i) => {
                    let clock = self.clients[i].clock;
                    e.clock > clock || (e.clock == clock && e.is_removal())
                }
            };
            if !newer {
                continue;
            }
            changed += 1;
            match (index, e.is_removal()) {
                (Some(i), true) => {
                    compact::swap_remove(&mut self.clients, i);
                }
                (None, true) => {}
                (Some(i), false) => {
                    let client = &mut self.clients[i];
                    client.clock = e.clock;
                    client.state = e.state.into();
                    client.conn = conn;
                }
                (None, false) => compact::push(
                    &mut self.clients,
                    Client {
                        id: e.client,
                        clock: e.clock,
                        state: e.state.into(),
                        conn,
                    },
                ),
            }
        }
        changed
    }

    /// Removes every client `conn` spoke for and returns the awareness update announcing that
    /// they left (`None` when it spoke for nobody).
    pub fn remove_conn(&mut self, conn: ConnId) -> Option<Vec<u8>> {
        let mut gone = Vec::new();
        self.clients.retain(|c| {
            if c.conn == conn {
                gone.push((c.id, c.clock + 1));
                false
            } else {
                true
            }
        });
        compact::release(&mut self.clients);
        if gone.is_empty() {
            return None;
        }
        Some(encode_update(gone.iter().map(|(client, clock)| {
            AwarenessEntry {
                client: *client,
                clock: *clock,
                state: REMOVED_STATE,
            }
        })))
    }

    /// The full table as one awareness update, or `None` when nobody is present.
    pub fn snapshot(&self) -> Option<Vec<u8>> {
        if self.clients.is_empty() {
            return None;
        }
        Some(encode_update(self.clients.iter().map(|c| AwarenessEntry {
            client: c.id,
            clock: c.clock,
            state: &c.state,
        })))
    }

    /// Number of clients present.
    pub fn len(&self) -> usize {
        self.clients.len()
    }

    /// True when nobody is present.
    pub fn is_empty(&self) -> bool {
        self.clients.is_empty()
    }
}

/// Decides which presence queries of one connection to one document are answered: the first of
/// every [`PRESENCE_QUERY_INTERVAL`] (see there for why the others are dropped). Kept by the
/// connection, so that a flood of queries is dropped before it reaches the document's owner.
#[derive(Debug, Default, Clone, Copy)]
pub struct QueryGate {
    answered: Option<Instant>,
}

impl QueryGate {
    /// Whether a query arriving at `now` is answered; if so, the interval starts again.
    pub fn admit(&mut self, now: Instant) -> bool {
        let open = self
            .answered
            .is_none_or(|at| now.saturating_duration_since(at) >= PRESENCE_QUERY_INTERVAL);
        if open {
            self.answered = Some(now);
        }
        open
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use debrief_proto::awareness::decode_update;

    fn entry(client: u64, clock: u64, state: &str) -> AwarenessEntry<'_> {
        AwarenessEntry {
            client,
            clock,
            state,
        }
    }

    #[test]
    fn one_presence_query_per_interval_is_answered() {
        let start = Instant::now();
        let mut gate = QueryGate::default();
        assert!(gate.admit(start), "the first query, as on connect");
        assert!(!gate.admit(start));
        assert!(!gate.admit(start + PRESENCE_QUERY_INTERVAL / 2));
        assert!(gate.admit(start + PRESENCE_QUERY_INTERVAL));
        assert!(!gate.admit(start + PRESENCE_QUERY_INTERVAL));
    }

    #[test]
    fn clocks_and_disconnect() {
        let mut p = Presence::default();
        let a = ConnId(1);
        assert_eq!(p.apply(a, &[entry(10, 1, r#"{"n":1}"#)]), 1);
        assert_eq!(
            p.apply(a, &[entry(10, 1, r#"{"n":2}"#)]),
            0,
            "same clock is stale"
        );
        assert_eq!(p.apply(a, &[entry(10, 2, r#"{"n":3}"#)]), 1);
        assert_eq!(p.len(), 1);
        let gone = p.remove_conn(a).expect("a spoke for client 10");
        let entries = decode_update(&gone).expect("valid update");
        assert_eq!(entries, vec![entry(10, 3, REMOVED_STATE)]);
        assert!(p.is_empty());
        assert!(p.remove_conn(a).is_none());
    }

    #[test]
    fn explicit_removal_at_same_clock() {
        let mut p = Presence::default();
        p.apply(ConnId(1), &[entry(5, 4, "{}")]);
        assert_eq!(p.apply(ConnId(1), &[entry(5, 4, REMOVED_STATE)]), 1);
        assert!(p.snapshot().is_none());
        assert!(p.remove_conn(ConnId(1)).is_none());
    }

    #[test]
    fn a_client_that_moves_to_another_connection_leaves_with_it() {
        let mut p = Presence::default();
        p.apply(ConnId(1), &[entry(7, 1, "{}"), entry(8, 1, "{}")]);
        p.apply(ConnId(2), &[entry(7, 2, r#"{"moved":true}"#)]);
        let gone = p.remove_conn(ConnId(1)).expect("client 8 left");
        let entries = decode_update(&gone).expect("valid update");
        assert_eq!(entries, vec![entry(8, 2, REMOVED_STATE)]);
        let snapshot = p.snapshot().expect("client 7 is here");
        let entries = decode_update(&snapshot).expect("valid update");
        assert_eq!(entries, vec![entry(7, 2, r#"{"moved":true}"#)]);
        let gone = p.remove_conn(ConnId(2)).expect("client 7 left");
        let entries = decode_update(&gone).expect("valid update");
        assert_eq!(entries, vec![entry(7, 3, REMOVED_STATE)]);
        assert!(p.is_empty());
    }
}
