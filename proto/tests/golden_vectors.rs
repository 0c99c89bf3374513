//! Our codec against vectors produced by the real `lib0`, `yjs` and `y-protocols` in Node
//! (`tests/js/golden.mjs` writes `proto/tests/golden/*.json`): every vector must decode to what the
//! JavaScript side meant and re-encode to the same bytes, byte for byte.

use debrief_proto::awareness::decode_update;
use debrief_proto::lib0::{write_var_string, write_var_uint, write_var_uint8_array, Reader};
use debrief_proto::ywire::{decode_frame, AuthMessage, Message, SyncMessage};
use serde_json::Value;

fn load(name: &str) -> Vec<Value> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    let text = std::fs::read_to_string(&path).expect("golden file");
    serde_json::from_str(&text).expect("golden JSON")
}

fn bytes(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().expect("hex string")).expect("valid hex")
}

#[test]
fn lib0_primitives_match_byte_for_byte() {
    let vectors = load("lib0.json");
    assert!(vectors.len() >= 20);
    for v in &vectors {
        let expected = bytes(&v["hex"]);
        let mut out = Vec::new();
        let mut r = Reader::new(&expected);
        match v["kind"].as_str().expect("kind") {
            "varUint" => {
                let n = v["value"].as_u64().expect("number");
                write_var_uint(&mut out, n);
                assert_eq!(r.read_var_uint().expect("decodes"), n);
            }
            "varString" => {
                let s = v["value"].as_str().expect("string");
                write_var_string(&mut out, s);
                assert_eq!(r.read_var_string().expect("decodes"), s);
            }
            "varUint8Array" => {
                let b = bytes(&v["value"]);
                write_var_uint8_array(&mut out, &b);
                assert_eq!(r.read_var_uint8_array().expect("decodes"), &b[..]);
            }
            other => panic!("unknown kind {other}"),
        }
        assert_eq!(out, expected, "encoding of {v}");
        assert!(r.is_empty(), "decoding consumed all of {v}");
    }
}

/// Checks one decoded message against the JavaScript side's description of it.
fn assert_matches(name: &str, got: &Message<'_>, want: &Value) {
    let payload = || bytes(&want["payload"]);
    match (want["kind"].as_str().expect("kind"), got) {
        ("sync_step1", Message::Sync(SyncMessage::Step1(p)))
        | ("sync_step2", Message::Sync(SyncMessage::Step2(p)))
        | ("sync_update", Message::Sync(SyncMessage::Update(p))) => {
            assert_eq!(*p, &payload()[..], "{name}")
        }
        ("awareness", Message::Awareness(u)) => {
            let entries = decode_update(u).expect("awareness payload decodes");
            let expected = want["entries"].as_array().expect("entries");
            assert_eq!(entries.len(), expected.len(), "{name}");
            for (e, x) in entries.iter().zip(expected) {
                assert_eq!(e.client, x["client"].as_u64().expect("client"), "{name}");
                assert_eq!(e.clock, x["clock"].as_u64().expect("clock"), "{name}");
                assert_eq!(e.state, x["state"].as_str().expect("state"), "{name}");
            }
        }
        ("auth_denied", Message::Auth(AuthMessage::PermissionDenied(reason))) => {
            assert_eq!(*reason, want["reason"].as_str().expect("reason"), "{name}")
        }
        ("query_awareness", Message::QueryAwareness) => {}
        (kind, got) => panic!("{name}: expected {kind}, decoded {got:?}"),
    }
}

#[test]
fn y_protocols_frames_match_byte_for_byte() {
    let vectors = load("messages.json");
    assert!(vectors.len() >= 20);
    let mut multi = 0;
    for v in &vectors {
        let name = v["name"].as_str().expect("name");
        let frame = bytes(&v["frame"]);
        let want = v["messages"].as_array().expect("messages");
        let got = decode_frame(&frame).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(got.len(), want.len(), "{name}");
        for (g, w) in got.iter().zip(want) {
            assert_matches(name, g, w);
        }
        let mut again = Vec::new();
        for m in &got {
            m.encode_into(&mut again);
        }
        assert_eq!(again, frame, "{name}: re-encoding differs");
        multi += usize::from(got.len() > 1);
    }
    assert!(multi >= 2, "frames with several messages are covered");
}
