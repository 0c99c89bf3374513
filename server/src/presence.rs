//! The awareness (presence) table of one document: who is here, with which state, and which
//! connection speaks for each Yjs client id. Sans-IO: it takes decoded entries and says what to
//! relay; the document owner does the sending.

use std::collections::{HashMap, HashSet};

use debrief_proto::awareness::{encode_update, AwarenessEntry, REMOVED_STATE};

use crate::ConnId;

#[derive(Debug)]
struct ClientState {
    clock: u64,
    state: String,
    conn: ConnId,
}

/// Current awareness states of one document.
#[derive(Debug, Default)]
pub struct Presence {
    clients: HashMap<u64, ClientState>,
    by_conn: HashMap<ConnId, HashSet<u64>>,
}

impl Presence {
    /// Applies entries received from `conn`, following the y-protocols rule: a newer clock wins,
    /// and an equal clock wins only to remove a state. Returns how many entries changed the table.
    pub fn apply(&mut self, conn: ConnId, entries: &[AwarenessEntry<'_>]) -> usize {
        let mut changed = 0;
        for e in entries {
            let current = self.clients.get(&e.client).map(|c| c.clock);
            let newer = match current {
                None => true,
                Some(clock) => e.clock > clock || (e.clock == clock && e.is_removal()),
            };
            if !newer {
                continue;
            }
            changed += 1;
            if e.is_removal() {
                if let Some(old) = self.clients.remove(&e.client) {
                    self.forget(old.conn, e.client);
                }
            } else {
                if let Some(old) = self.clients.get(&e.client) {
                    if old.conn != conn {
                        let prev = old.conn;
                        self.forget(prev, e.client);
                    }
                }
                self.clients.insert(
                    e.client,
                    ClientState {
                        clock: e.clock,
                        state: e.state.to_owned(),
                        conn,
                    },
                );
                self.by_conn.entry(conn).or_default().insert(e.client);
            }
        }
        changed
    }

    /// Removes every client `conn` spoke for and returns the awareness update announcing that
    /// they left (`None` when it spoke for nobody).
    pub fn remove_conn(&mut self, conn: ConnId) -> Option<Vec<u8>> {
        let ids = self.by_conn.remove(&conn)?;
        let mut gone = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(state) = self.clients.remove(&id) {
                gone.push((id, state.clock + 1));
            }
        }
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
        Some(encode_update(self.clients.iter().map(|(id, c)| {
            AwarenessEntry {
                client: *id,
                clock: c.clock,
                state: &c.state,
            }
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

    fn forget(&mut self, conn: ConnId, client: u64) {
        if let Some(set) = self.by_conn.get_mut(&conn) {
            set.remove(&client);
            if set.is_empty() {
                self.by_conn.remove(&conn);
            }
        }
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
}
