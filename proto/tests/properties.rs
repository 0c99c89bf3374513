//! Property tests of the codec: round trips of arbitrary messages, frames and awareness updates,
//! and a fuzz harness for the decoders (arbitrary bytes and mutated valid frames never panic).
//!
//! The fuzz cases run briefly in the test command (2,000 by default). Run them long with:
//! `DEBRIEF_FUZZ_CASES=1000000 cargo test --release -p debrief-proto --test properties fuzz_`

use debrief_proto::awareness::{decode_update, encode_update, AwarenessEntry};
use debrief_proto::lib0::{write_var_uint, Reader, MAX_SAFE_INTEGER};
use debrief_proto::ywire::{decode_frame, AuthMessage, Message, SyncMessage};
use proptest::prelude::*;

/// An owned description of a message, so proptest can generate and shrink it.
#[derive(Debug, Clone)]
enum Owned {
    Step1(Vec<u8>),
    Step2(Vec<u8>),
    Update(Vec<u8>),
    Awareness(Vec<u8>),
    Denied(String),
    Query,
}

impl Owned {
    fn borrow(&self) -> Message<'_> {
        match self {
            Owned::Step1(p) => Message::Sync(SyncMessage::Step1(p)),
            Owned::Step2(p) => Message::Sync(SyncMessage::Step2(p)),
            Owned::Update(p) => Message::Sync(SyncMessage::Update(p)),
            Owned::Awareness(p) => Message::Awareness(p),
            Owned::Denied(r) => Message::Auth(AuthMessage::PermissionDenied(r)),
            Owned::Query => Message::QueryAwareness,
        }
    }
}

fn message() -> impl Strategy<Value = Owned> {
    let payload = proptest::collection::vec(any::<u8>(), 0..300);
    prop_oneof![
        payload.clone().prop_map(Owned::Step1),
        payload.clone().prop_map(Owned::Step2),
        payload.clone().prop_map(Owned::Update),
        payload.prop_map(Owned::Awareness),
        any::<String>().prop_map(Owned::Denied),
        Just(Owned::Query),
    ]
}

fn frame_of(messages: &[Owned]) -> Vec<u8> {
    let mut frame = Vec::new();
    for m in messages {
        m.borrow().encode_into(&mut frame);
    }
    frame
}

fn fuzz_cases() -> u32 {
    std::env::var("DEBRIEF_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000)
}

proptest! {
    #[test]
    fn frames_round_trip(messages in proptest::collection::vec(message(), 1..6)) {
        let frame = frame_of(&messages);
        let decoded = decode_frame(&frame).expect("valid frame decodes");
        let expected: Vec<Message<'_>> = messages.iter().map(Owned::borrow).collect();
        prop_assert_eq!(decoded, expected);
    }

    #[test]
    fn var_uint_round_trips(n in 0..=MAX_SAFE_INTEGER) {
        let mut out = Vec::new();
        write_var_uint(&mut out, n);
        let mut r = Reader::new(&out);
        prop_assert_eq!(r.read_var_uint().expect("decodes"), n);
        prop_assert!(r.is_empty());
    }

    #[test]
    fn awareness_round_trips(entries in proptest::collection::vec(
        (0..=MAX_SAFE_INTEGER, 0..=MAX_SAFE_INTEGER, any::<String>()), 0..8)) {
        let entries: Vec<AwarenessEntry<'_>> = entries
            .iter()
            .map(|(client, clock, state)| AwarenessEntry { client: *client, clock: *clock, state })
            .collect();
        let bytes = encode_update(entries.iter().copied());
        prop_assert_eq!(decode_update(&bytes).expect("decodes"), entries);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(fuzz_cases()))]

    #[test]
    fn fuzz_arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode_frame(&bytes);
        let _ = decode_update(&bytes);
        let mut r = Reader::new(&bytes);
        while r.read_var_string().is_ok() {}
    }

    #[test]
    fn fuzz_mutated_frames_never_panic(
        messages in proptest::collection::vec(message(), 1..4),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), 0u8..4, any::<u8>()), 1..6),
    ) {
        let mut frame = frame_of(&messages);
        for (at, kind, byte) in edits {
            if frame.is_empty() {
                frame.push(byte);
                continue;
            }
            let i = at.index(frame.len());
            match kind {
                0 => frame[i] ^= 1 << (byte % 8),
                1 => frame.truncate(i),
                2 => frame.insert(i, byte),
                _ => frame[i] = byte,
            }
        }
        match decode_frame(&frame) {
            // Whatever decodes must re-encode to the same bytes: nothing is silently dropped.
            Ok(decoded) => {
                let mut again = Vec::new();
                for m in &decoded {
                    m.encode_into(&mut again);
                }
                prop_assert_eq!(again.len() <= frame.len(), true);
            }
            Err(e) => prop_assert!(!e.code().is_empty()),
        }
    }
}
