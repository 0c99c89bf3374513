//! The payload of an awareness message: `varUint(n)` followed by n entries of
//! `varUint(clientID)`, `varUint(clock)` and `varString(JSON state)`, where the state `null`
//! means that client left.

use crate::lib0::{write_var_string, write_var_uint, Reader};
use crate::DecodeError;

/// The JSON text that marks a client as gone.
pub const REMOVED_STATE: &str = "null";

/// One client's entry in an awareness update. The state is kept as the JSON text it arrived as:
/// the server relays presence, it never interprets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AwarenessEntry<'a> {
    /// The Yjs client id the state belongs to.
    pub client: u64,
    /// Increases with every change of that client's state.
    pub clock: u64,
    /// The state as JSON text; `"null"` when the client left.
    pub state: &'a str,
}

impl AwarenessEntry<'_> {
    /// True when this entry says the client left.
    pub fn is_removal(&self) -> bool {
        self.state == REMOVED_STATE
    }
}

/// Decodes every entry of an awareness update.
pub fn decode_update(bytes: &[u8]) -> Result<Vec<AwarenessEntry<'_>>, DecodeError> {
    let mut r = Reader::new(bytes);
    let count = r.read_var_uint()?;
    // Every entry takes at least three bytes, so a count beyond that cannot be honest; checking
    // first keeps a hostile count from reserving memory.
    if count > (r.remaining() / 3) as u64 {
        return Err(DecodeError::LengthOverrun {
            declared: count,
            remaining: r.remaining(),
        });
    }
    let mut out = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let client = r.read_var_uint()?;
        let clock = r.read_var_uint()?;
        let state = r.read_var_string()?;
        out.push(AwarenessEntry {
            client,
            clock,
            state,
        });
    }
    Ok(out)
}

/// Encodes an awareness update from entries.
pub fn encode_update<'a>(entries: impl IntoIterator<Item = AwarenessEntry<'a>>) -> Vec<u8> {
    let entries: Vec<_> = entries.into_iter().collect();
    let mut out = Vec::new();
    write_var_uint(&mut out, entries.len() as u64);
    for e in entries {
        write_var_uint(&mut out, e.client);
        write_var_uint(&mut out, e.clock);
        write_var_string(&mut out, e.state);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_removal() {
        let entries = [
            AwarenessEntry {
                client: 7,
                clock: 3,
                state: r#"{"user":{"name":"Ada"}}"#,
            },
            AwarenessEntry {
                client: 9,
                clock: 1,
                state: REMOVED_STATE,
            },
        ];
        let bytes = encode_update(entries);
        let back = decode_update(&bytes).expect("valid update");
        assert_eq!(back, entries);
        assert!(back[1].is_removal());
    }

    #[test]
    fn hostile_count_is_refused() {
        assert!(matches!(
            decode_update(&[0xff, 0xff, 0x03, 0x01]),
            Err(DecodeError::LengthOverrun { .. })
        ));
    }
}
