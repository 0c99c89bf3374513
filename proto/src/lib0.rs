//! lib0 primitives (varUint, varString, varUint8Array): the encoding every Yjs message is built
//! from. Writers append to a `Vec<u8>`; [`Reader`] walks a borrowed slice and never panics.

use crate::DecodeError;

/// lib0 integers are JavaScript numbers: anything above 2^53 − 1 cannot come from a stock client.
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// A varUint of up to 53 bits needs at most 8 bytes (7 bits each); a ninth byte is malformed.
const MAX_VARUINT_BYTES: usize = 8;

/// Appends `value` as a lib0 varUint (7 bits per byte, least significant group first).
pub fn write_var_uint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Appends a length-prefixed byte array.
pub fn write_var_uint8_array(out: &mut Vec<u8>, bytes: &[u8]) {
    write_var_uint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// Appends a length-prefixed UTF-8 string.
pub fn write_var_string(out: &mut Vec<u8>, s: &str) {
    write_var_uint8_array(out, s.as_bytes());
}

/// Appends `value` as a lib0 signed varInt: the first byte holds a continuation bit, the sign bit
/// and 6 bits of magnitude; later bytes hold 7 bits each, least significant group first.
pub fn write_var_int(out: &mut Vec<u8>, value: i64) {
    let negative = value < 0;
    let mut magnitude = value.unsigned_abs();
    let more = if magnitude > 0x3f { 0x80 } else { 0 };
    let sign = if negative { 0x40 } else { 0 };
    out.push(more | sign | (magnitude as u8 & 0x3f));
    magnitude >>= 6;
    while magnitude > 0 {
        let more = if magnitude > 0x7f { 0x80 } else { 0 };
        out.push(more | (magnitude as u8 & 0x7f));
        magnitude >>= 7;
    }
}

/// Number of bytes [`write_var_uint`] produces for `value`.
pub fn var_uint_len(mut value: u64) -> usize {
    let mut n = 1;
    while value >= 0x80 {
        value >>= 7;
        n += 1;
    }
    n
}

/// A cursor over a borrowed byte slice. Every read either returns a value or a [`DecodeError`];
/// after an error the reader's position is unspecified and it should be dropped.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// Starts reading at the beginning of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// True once every byte was consumed.
    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    /// The current offset from the start of the buffer.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Reads a lib0 varUint of at most 53 bits.
    pub fn read_var_uint(&mut self) -> Result<u64, DecodeError> {
        let mut value: u64 = 0;
        for i in 0..MAX_VARUINT_BYTES {
            let byte = *self.buf.get(self.pos).ok_or(DecodeError::Truncated)?;
            self.pos += 1;
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return if value > MAX_SAFE_INTEGER {
                    Err(DecodeError::VarUintOverflow)
                } else {
                    Ok(value)
                };
            }
        }
        // Eight continuation bytes: the value has more than 56 bits, or the input is garbage.
        Err(DecodeError::VarUintOverflow)
    }

    /// Reads exactly `len` bytes.
    pub fn read_bytes(&mut self, len: u64) -> Result<&'a [u8], DecodeError> {
        let remaining = self.remaining();
        match usize::try_from(len) {
            Ok(n) if n <= remaining => {
                let out = &self.buf[self.pos..self.pos + n];
                self.pos += n;
                Ok(out)
            }
            _ => Err(DecodeError::LengthOverrun {
                declared: len,
                remaining,
            }),
        }
    }

    /// Reads a lib0 signed varInt (see [`write_var_int`]), limited like varUint to 53 bits of
    /// magnitude.
    pub fn read_var_int(&mut self) -> Result<i64, DecodeError> {
        let first = *self.buf.get(self.pos).ok_or(DecodeError::Truncated)?;
        self.pos += 1;
        let negative = first & 0x40 != 0;
        let mut magnitude = u64::from(first & 0x3f);
        let mut more = first & 0x80 != 0;
        let mut shift = 6;
        while more {
            let byte = *self.buf.get(self.pos).ok_or(DecodeError::Truncated)?;
            self.pos += 1;
            if shift > 53 {
                return Err(DecodeError::VarUintOverflow);
            }
            magnitude |= u64::from(byte & 0x7f) << shift;
            more = byte & 0x80 != 0;
            shift += 7;
        }
        if magnitude > MAX_SAFE_INTEGER {
            return Err(DecodeError::VarUintOverflow);
        }
        let value = magnitude as i64;
        Ok(if negative { -value } else { value })
    }

    /// Reads a length-prefixed byte array.
    pub fn read_var_uint8_array(&mut self) -> Result<&'a [u8], DecodeError> {
        let len = self.read_var_uint()?;
        self.read_bytes(len)
    }

    /// Reads a length-prefixed UTF-8 string.
    pub fn read_var_string(&mut self) -> Result<&'a str, DecodeError> {
        let bytes = self.read_var_uint8_array()?;
        std::str::from_utf8(bytes).map_err(|_| DecodeError::InvalidUtf8)
    }

    /// Everything not read yet, consuming it.
    pub fn read_rest(&mut self) -> &'a [u8] {
        let out = &self.buf[self.pos..];
        self.pos = self.buf.len();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn var_uint_examples() {
        let mut out = Vec::new();
        write_var_uint(&mut out, 300);
        assert_eq!(out, [0xac, 0x02]);
        assert_eq!(Reader::new(&out).read_var_uint(), Ok(300));
        assert_eq!(var_uint_len(300), 2);
    }

    #[test]
    fn var_int_examples() {
        for (value, bytes) in [
            (0i64, vec![0x00]),
            (1, vec![0x01]),
            (-1, vec![0x41]),
            (63, vec![0x3f]),
            (64, vec![0x80, 0x01]),
            (-300, vec![0xec, 0x04]),
        ] {
            let mut out = Vec::new();
            write_var_int(&mut out, value);
            assert_eq!(out, bytes, "{value}");
            assert_eq!(Reader::new(&out).read_var_int(), Ok(value));
        }
        assert_eq!(
            Reader::new(&[0x80]).read_var_int(),
            Err(DecodeError::Truncated)
        );
        assert_eq!(
            Reader::new(&[0xff; 10]).read_var_int(),
            Err(DecodeError::VarUintOverflow)
        );
    }

    #[test]
    fn var_uint_errors_are_distinct() {
        assert_eq!(
            Reader::new(&[0x80]).read_var_uint(),
            Err(DecodeError::Truncated)
        );
        assert_eq!(
            Reader::new(&[0xff; 9]).read_var_uint(),
            Err(DecodeError::VarUintOverflow)
        );
        // 2^53 exactly: eight bytes, but above the safe range.
        let mut out = Vec::new();
        write_var_uint(&mut out, 1 << 53);
        assert_eq!(
            Reader::new(&out).read_var_uint(),
            Err(DecodeError::VarUintOverflow)
        );
        assert_eq!(
            Reader::new(&[0x05, 1, 2]).read_var_uint8_array(),
            Err(DecodeError::LengthOverrun {
                declared: 5,
                remaining: 2
            })
        );
        assert_eq!(
            Reader::new(&[0x02, 0xc3, 0x28]).read_var_string(),
            Err(DecodeError::InvalidUtf8)
        );
    }
}
