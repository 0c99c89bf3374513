//! The awareness (presence) table of one document: who is here, with which state, and which
//! connection speaks for each Yjs client id, and what changed since it was last relayed. Sans-IO:
//! it takes decoded entries and says what to relay; the document owner decides when, and sends.

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

/// Current awareness states of one document, and the changes not relayed yet. A team's document
/// has a handful of clients and an all-hands one a thousand, so they are kept in a vector and
/// found by a scan (a thousand ids: about a microsecond).
#[derive(Debug, Default)]
pub struct Presence {
    clients: Vec<Client>,
    /// Clients whose state changed since the last [`Presence::take_changes`]: only their latest
    /// state is relayed, so superseded states are dropped.
    changed: Vec<u64>,
    /// Clients that left since then, with the clock of their removal.
    gone: Vec<(u64, u64)>,
    /// Clients that left and are not back, with the clock of their removal, oldest first (at
    /// most [`MAX_DEPARTED`]): a state of theirs at an older clock that arrives later is stale,
    /// as y-protocols' awareness keeps a removed client's clock. Stock y-websocket clients send
    /// back every state they are told of, so without this a client that left could come back
    /// through another client's echo, and its removal never reach anyone.
    departed: Vec<(u64, u64)>,
}

/// Most departed clients whose removal clock a document keeps.
pub const MAX_DEPARTED: usize = 4096;

impl Presence {
    /// Applies entries received from `conn`, following the y-protocols rule: a newer clock wins,
    /// and an equal clock wins only to remove a state. Returns how many entries changed the table.
    pub fn apply(&mut self, conn: ConnId, entries: &[AwarenessEntry<'_>]) -> usize {
        let mut changed = 0;
        for e in entries {
            let index = self.clients.iter().position(|c| c.id == e.client);
            let newer = match index {
                None => self
                    .departed
                    .iter()
                    .find(|(c, _)| *c == e.client)
                    .is_none_or(|(_, clock)| {
                        e.clock > *clock || (e.clock == *clock && e.is_removal())
                    }),
                Some(i) => {
                    let clock = self.clients[i].clock;
                    e.clock > clock || (e.clock == clock && e.is_removal())
                }
            };
            if !newer {
                continue;
            }
            changed += 1;
            if e.is_removal() {
                self.left(e.client, e.clock);
            } else if !self.changed.contains(&e.client) {
                compact::push(&mut self.changed, e.client);
            }
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
                (None, false) => {
                    if let Some(i) = self.departed.iter().position(|(c, _)| *c == e.client) {
                        self.departed.remove(i);
                    }
                    compact::push(
                        &mut self.clients,
                        Client {
                            id: e.client,
                            clock: e.clock,
                            state: e.state.into(),
                            conn,
                        },
                    )
                }
            }
        }
        changed
    }

    /// Removes every client `conn` spoke for; `true` when there was one (their departure is a
    /// change to relay).
    pub fn remove_conn(&mut self, conn: ConnId) -> bool {
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
        for (client, clock) in &gone {
            self.left(*client, *clock);
        }
        !gone.is_empty()
    }

    /// Notes that `client` left with a removal at `clock`.
    fn left(&mut self, client: u64, clock: u64) {
        match self.gone.iter_mut().find(|(c, _)| *c == client) {
            Some(entry) => entry.1 = entry.1.max(clock),
            None => compact::push(&mut self.gone, (client, clock)),
        }
        match self.departed.iter().position(|(c, _)| *c == client) {
            Some(i) => {
                let (_, before) = self.departed.remove(i);
                self.departed.push((client, before.max(clock)));
            }
            None => {
                if self.departed.len() >= MAX_DEPARTED {
                    self.departed.remove(0);
                }
                self.departed.push((client, clock));
            }
        }
    }

    /// The changes since the last call as one awareness update: each changed client's current
    /// state, and a removal for each client that left and is not back (`None` when nothing
    /// changed).
    pub fn take_changes(&mut self) -> Option<Vec<u8>> {
        let changed = std::mem::take(&mut self.changed);
        let gone = std::mem::take(&mut self.gone);
        let current = changed.iter().filter_map(|id| {
            self.clients
                .iter()
                .find(|c| c.id == *id)
                .map(|c| AwarenessEntry {
                    client: c.id,
                    clock: c.clock,
                    state: &c.state,
                })
        });
        let left = gone
            .iter()
            .filter(|(id, _)| !self.clients.iter().any(|c| c.id == *id))
            .map(|(client, clock)| AwarenessEntry {
                client: *client,
                clock: *clock,
                state: REMOVED_STATE,
            });
        let entries: Vec<AwarenessEntry<'_>> = current.chain(left).collect();
        if entries.is_empty() {
            return None;
        }
        Some(encode_update(entries))
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

    fn changes(p: &mut Presence) -> Vec<(u64, u64, String)> {
        match p.take_changes() {
            None => Vec::new(),
            Some(update) => decode_update(&update)
                .expect("valid update")
                .into_iter()
                .map(|e| (e.client, e.clock, e.state.to_owned()))
                .collect(),
        }
    }

    fn removed(client: u64, clock: u64) -> (u64, u64, String) {
        (client, clock, REMOVED_STATE.to_owned())
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
        assert_eq!(changes(&mut p), vec![(10, 1, r#"{"n":1}"#.to_owned())]);
        assert_eq!(p.apply(a, &[entry(10, 2, r#"{"n":3}"#)]), 1);
        assert_eq!(p.len(), 1);
        assert!(p.remove_conn(a), "a spoke for client 10");
        assert_eq!(changes(&mut p), vec![removed(10, 3)]);
        assert!(p.is_empty());
        assert!(!p.remove_conn(a));
        assert_eq!(changes(&mut p), vec![]);
    }

    #[test]
    fn only_the_latest_state_of_a_client_is_relayed() {
        let mut p = Presence::default();
        for clock in 1..=5 {
            p.apply(
                ConnId(1),
                &[entry(3, clock, &format!(r#"{{"c":{clock}}}"#))],
            );
        }
        p.apply(ConnId(2), &[entry(4, 1, "{}")]);
        assert_eq!(
            changes(&mut p),
            vec![(3, 5, r#"{"c":5}"#.to_owned()), (4, 1, "{}".to_owned())]
        );
        assert_eq!(changes(&mut p), vec![], "each change is relayed once");
    }

    #[test]
    fn a_client_that_leaves_and_comes_back_is_relayed_as_present() {
        let mut p = Presence::default();
        p.apply(ConnId(1), &[entry(3, 1, "{}")]);
        changes(&mut p);
        assert!(p.remove_conn(ConnId(1)));
        p.apply(ConnId(2), &[entry(3, 3, r#"{"back":1}"#)]);
        assert_eq!(changes(&mut p), vec![(3, 3, r#"{"back":1}"#.to_owned())]);
        p.apply(ConnId(2), &[entry(3, 4, "{}")]);
        assert!(p.remove_conn(ConnId(2)));
        assert_eq!(
            changes(&mut p),
            vec![removed(3, 5)],
            "joined and left within one tick"
        );
    }

    /// A state of a client that left, echoed back later by another client at its old clock (as
    /// stock y-websocket clients do with every state they are told of), does not bring it back:
    /// its removal is relayed. A newer state does.
    #[test]
    fn an_echo_of_a_departed_client_does_not_bring_it_back() {
        let mut p = Presence::default();
        p.apply(ConnId(1), &[entry(1001, 4, r#"{"n":"Ada"}"#)]);
        p.apply(ConnId(2), &[entry(2002, 1, r#"{"n":"Bob"}"#)]);
        changes(&mut p);
        assert!(p.remove_conn(ConnId(1)));
        assert_eq!(
            p.apply(ConnId(2), &[entry(1001, 4, r#"{"n":"Ada"}"#)]),
            0,
            "a stale echo"
        );
        assert_eq!(changes(&mut p), vec![removed(1001, 5)]);
        assert_eq!(p.len(), 1);
        assert_eq!(p.apply(ConnId(3), &[entry(1001, 6, r#"{"n":"Ada"}"#)]), 1);
        assert_eq!(
            changes(&mut p),
            vec![(1001, 6, r#"{"n":"Ada"}"#.to_owned())]
        );
        assert!(p.remove_conn(ConnId(3)), "it speaks for Ada again");
    }

    #[test]
    fn explicit_removal_at_same_clock() {
        let mut p = Presence::default();
        p.apply(ConnId(1), &[entry(5, 4, "{}")]);
        assert_eq!(p.apply(ConnId(1), &[entry(5, 4, REMOVED_STATE)]), 1);
        assert!(p.snapshot().is_none());
        assert!(!p.remove_conn(ConnId(1)));
        assert_eq!(changes(&mut p), vec![removed(5, 4)]);
    }

    #[test]
    fn a_client_that_moves_to_another_connection_leaves_with_it() {
        let mut p = Presence::default();
        p.apply(ConnId(1), &[entry(7, 1, "{}"), entry(8, 1, "{}")]);
        p.apply(ConnId(2), &[entry(7, 2, r#"{"moved":true}"#)]);
        changes(&mut p);
        assert!(p.remove_conn(ConnId(1)), "client 8 left");
        assert_eq!(changes(&mut p), vec![removed(8, 2)]);
        let snapshot = p.snapshot().expect("client 7 is here");
        let entries = decode_update(&snapshot).expect("valid update");
        assert_eq!(entries, vec![entry(7, 2, r#"{"moved":true}"#)]);
        assert!(p.remove_conn(ConnId(2)), "client 7 left");
        assert_eq!(changes(&mut p), vec![removed(7, 3)]);
        assert!(p.is_empty());
    }
}
