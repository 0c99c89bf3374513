//! What waits for durability in one open document: every frame that carries content (a relay,
//! an acknowledgement, a presence change behind the text it points at, the answer to server code)
//! is held behind the flush that covers everything applied before it, and given back only once
//! that flush has completed ("relay after flush": nothing a client has seen can be lost to a
//! crash). Flushes complete in the order they were requested, and so are their frames released.
//!
//! Pure bookkeeping for [`crate::documents::core`]: it neither sends nor flushes anything.

use std::collections::VecDeque;

use bytes::Bytes;
use tokio::sync::oneshot;

use crate::documents::command::JobError;
use crate::documents::peer::ConnId;

/// A frame whose release waits for a flush.
#[derive(Debug)]
pub enum Deferred {
    /// To every peer except the one that caused it (if any).
    Broadcast {
        /// The peer that caused it, which has it already.
        except: Option<ConnId>,
        /// The message.
        frame: Bytes,
    },
    /// To one peer.
    To {
        /// The peer.
        conn: ConnId,
        /// The message.
        frame: Bytes,
    },
    /// To one peer, a frame already in its dialect (made once for many, see
    /// [`crate::documents::peer::Framed`]).
    Framed {
        /// The peer.
        conn: ConnId,
        /// The frame.
        frame: Bytes,
    },
    /// A notice that its peer's dialect can only say by closing it.
    Close {
        /// The peer.
        conn: ConnId,
        /// The close code.
        code: u16,
        /// The close reason.
        reason: String,
    },
    /// Tells server code that its change is durable.
    Done(oneshot::Sender<Result<(), JobError>>),
}

/// The frames held for flushes, oldest flush first.
#[derive(Debug, Default)]
pub struct Holdback {
    /// Content was applied since the last flush request.
    dirty: bool,
    /// A flush was asked for and is not requested yet.
    asked: bool,
    /// Frames waiting for a flush not requested yet.
    unrequested: Vec<Deferred>,
    /// The frames each requested flush will release, oldest first.
    in_flight: VecDeque<Vec<Deferred>>,
}

impl Holdback {
    /// Content was applied: what is held from now on waits for the next flush.
    pub fn applied(&mut self) {
        self.dirty = true;
    }

    /// Holds `frame` behind the flush that covers everything applied so far, or gives it back
    /// when nothing applied waits for a flush (it may leave now, in order).
    pub fn hold(&mut self, frame: Deferred) -> Option<Deferred> {
        if self.dirty {
            self.unrequested.push(frame);
        } else if let Some(frames) = self.in_flight.back_mut() {
            frames.push(frame);
        } else {
            return Some(frame);
        }
        None
    }

    /// Whether a flush is needed and not asked for yet; asks for it. The flush may be done at
    /// once when `Some(true)`: nothing of this document waits for the flusher.
    pub fn ask_flush(&mut self) -> Option<bool> {
        if !self.dirty || self.asked {
            return None;
        }
        self.asked = true;
        Some(self.in_flight.is_empty())
    }

    /// The asked-for flush was done on the spot: the frames it covered.
    pub fn flushed_at_once(&mut self) -> Vec<Deferred> {
        self.dirty = false;
        self.asked = false;
        std::mem::take(&mut self.unrequested)
    }

    /// The asked-for flush was requested; [`Holdback::completed`] gives its frames back.
    pub fn requested(&mut self) {
        self.dirty = false;
        self.asked = false;
        let frames = std::mem::take(&mut self.unrequested);
        self.in_flight.push_back(frames);
    }

    /// The oldest requested flush completed: the frames it covered.
    pub fn completed(&mut self) -> Vec<Deferred> {
        let frames = self.in_flight.pop_front().unwrap_or_default();
        if self.in_flight.is_empty() {
            // Give the capacity back: most documents are idle most of the time.
            self.in_flight = VecDeque::new();
        }
        frames
    }

    /// Requested flushes not completed yet.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Frames held.
    pub fn held(&self) -> usize {
        self.unrequested.len() + self.in_flight.iter().map(Vec::len).sum::<usize>()
    }

    /// Nothing waits for a flush.
    pub fn quiet(&self) -> bool {
        self.in_flight.is_empty() && !self.dirty
    }

    /// Drops everything held (storage failed: none of it may leave).
    pub fn clear(&mut self) {
        *self = Holdback::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn to(n: u8) -> Deferred {
        Deferred::To {
            conn: ConnId(1),
            frame: Bytes::from(vec![n]),
        }
    }

    fn frames(held: Vec<Deferred>) -> Vec<u8> {
        held.into_iter()
            .map(|d| match d {
                Deferred::To { frame, .. } => frame[0],
                other => panic!("unexpected {other:?}"),
            })
            .collect()
    }

    #[test]
    fn frames_leave_at_once_only_when_nothing_waits() {
        let mut h = Holdback::default();
        assert!(h.hold(to(0)).is_some(), "nothing applied: it may leave");
        assert_eq!(h.ask_flush(), None);
        h.applied();
        assert!(h.hold(to(1)).is_none());
        assert_eq!(h.ask_flush(), Some(true));
        assert_eq!(h.ask_flush(), None, "asked once");
        h.requested();
        // Nothing new applied, but a flush is in flight: later frames wait behind it.
        assert!(h.hold(to(2)).is_none());
        assert!(!h.quiet());
        assert_eq!(frames(h.completed()), [1, 2]);
        assert!(h.quiet());
        assert!(h.hold(to(3)).is_some());
    }

    #[test]
    fn flushes_release_in_request_order() {
        let mut h = Holdback::default();
        h.applied();
        h.hold(to(1));
        assert_eq!(h.ask_flush(), Some(true));
        h.requested();
        h.applied();
        h.hold(to(2));
        assert_eq!(h.ask_flush(), Some(false), "another flush is in flight");
        h.requested();
        assert_eq!((h.in_flight(), h.held()), (2, 2));
        assert_eq!(frames(h.completed()), [1]);
        assert_eq!(frames(h.completed()), [2]);
        assert_eq!(h.held(), 0);
    }

    #[test]
    fn a_flush_done_at_once_and_a_failure() {
        let mut h = Holdback::default();
        h.applied();
        h.hold(to(1));
        h.ask_flush();
        assert_eq!(frames(h.flushed_at_once()), [1]);
        h.applied();
        h.hold(to(2));
        h.clear();
        assert!(h.quiet());
        assert_eq!(h.held(), 0);
    }
}
