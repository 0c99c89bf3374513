//! What travels on a link sub-stream that carries one HTTP request to the node serving reviews
//! (`docs/cluster.md`, "Reviews on one node at a time"): a node that does not serve reviews
//! passes a request of the review API on, and hands the answer back to its client.
//!
//! The sub-stream is opened with the name [`HTTP_STREAM`], which no document can have (document
//! names are `A–Z a–z 0–9 . _ : -`). It carries exactly two messages, each possibly in parts
//! ([`crate::forward::split`], [`crate::forward::Reassembly`]):
//! - entry → serving node, [`MSG_HTTP_REQUEST`]: `varString(client address)`,
//!   `varString(method)`, `varString(path and query)`, `varUint(header count)`, then per
//!   header `varString(name)`, `varUint8Array(value)`, and last `varUint8Array(body)`;
//! - serving node → entry, [`MSG_HTTP_RESPONSE`]: `varUint(status)`, the headers as above, and
//!   the body.
//!
//! Both message types are below the parts' types, so a whole message is never taken for a part.

use crate::lib0::{write_var_string, write_var_uint, write_var_uint8_array, Reader};
use crate::DecodeError;

/// The name of a sub-stream that carries one HTTP request.
pub const HTTP_STREAM: &str = "#http";

/// Entry → serving node: the request.
pub const MSG_HTTP_REQUEST: u64 = 110;
/// Serving node → entry: the response.
pub const MSG_HTTP_RESPONSE: u64 = 111;

/// A request as it crosses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRequest<'a> {
    /// The address the client connected from (the serving node limits and trusts by it).
    pub client: &'a str,
    /// The method.
    pub method: &'a str,
    /// The path and query.
    pub target: &'a str,
    /// The headers, in order.
    pub headers: Vec<(&'a str, &'a [u8])>,
    /// The body.
    pub body: &'a [u8],
}

/// A response as it crosses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse<'a> {
    /// The status code.
    pub status: u16,
    /// The headers, in order.
    pub headers: Vec<(&'a str, &'a [u8])>,
    /// The body.
    pub body: &'a [u8],
}

fn write_headers(out: &mut Vec<u8>, headers: &[(&str, &[u8])]) {
    write_var_uint(out, headers.len() as u64);
    for (name, value) in headers {
        write_var_string(out, name);
        write_var_uint8_array(out, value);
    }
}

fn read_headers<'a>(r: &mut Reader<'a>) -> Result<Vec<(&'a str, &'a [u8])>, DecodeError> {
    let count = r.read_var_uint()?;
    // Each header takes at least two bytes: a count past what is left is a lie.
    if count > r.remaining() as u64 / 2 {
        return Err(DecodeError::LengthOverrun {
            declared: count,
            remaining: r.remaining(),
        });
    }
    let mut headers = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let name = r.read_var_string()?;
        let value = r.read_var_uint8_array()?;
        headers.push((name, value));
    }
    Ok(headers)
}

fn finish<T>(r: &Reader<'_>, decoded: T) -> Result<T, DecodeError> {
    match r.remaining() {
        0 => Ok(decoded),
        left => Err(DecodeError::TrailingBytes(left)),
    }
}

/// The [`MSG_HTTP_REQUEST`] message of `request`.
pub fn encode_request(request: &HttpRequest<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(request.body.len() + 256);
    write_var_uint(&mut out, MSG_HTTP_REQUEST);
    write_var_string(&mut out, request.client);
    write_var_string(&mut out, request.method);
    write_var_string(&mut out, request.target);
    write_headers(&mut out, &request.headers);
    write_var_uint8_array(&mut out, request.body);
    out
}

/// Decodes a [`MSG_HTTP_REQUEST`] message.
pub fn decode_request(payload: &[u8]) -> Result<HttpRequest<'_>, DecodeError> {
    let mut r = Reader::new(payload);
    match r.read_var_uint()? {
        MSG_HTTP_REQUEST => {}
        other => return Err(DecodeError::UnknownMessageType(other)),
    }
    let client = r.read_var_string()?;
    let method = r.read_var_string()?;
    let target = r.read_var_string()?;
    let headers = read_headers(&mut r)?;
    let body = r.read_var_uint8_array()?;
    finish(
        &r,
        HttpRequest {
            client,
            method,
            target,
            headers,
            body,
        },
    )
}

/// The [`MSG_HTTP_RESPONSE`] message of `response`.
pub fn encode_response(response: &HttpResponse<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(response.body.len() + 256);
    write_var_uint(&mut out, MSG_HTTP_RESPONSE);
    write_var_uint(&mut out, u64::from(response.status));
    write_headers(&mut out, &response.headers);
    write_var_uint8_array(&mut out, response.body);
    out
}

/// Decodes a [`MSG_HTTP_RESPONSE`] message.
pub fn decode_response(payload: &[u8]) -> Result<HttpResponse<'_>, DecodeError> {
    let mut r = Reader::new(payload);
    match r.read_var_uint()? {
        MSG_HTTP_RESPONSE => {}
        other => return Err(DecodeError::UnknownMessageType(other)),
    }
    let status = r.read_var_uint()?;
    let status = u16::try_from(status).map_err(|_| DecodeError::UnknownMessageType(status))?;
    let headers = read_headers(&mut r)?;
    let body = r.read_var_uint8_array()?;
    finish(
        &r,
        HttpResponse {
            status,
            headers,
            body,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_responses_round_trip() {
        let request = HttpRequest {
            client: "192.0.2.7:51234",
            method: "POST",
            target: "/api/reviews/abc/concerns?x=1",
            headers: vec![
                ("content-type", b"application/json"),
                ("authorization", b"Bearer dbs_x"),
            ],
            body: br#"{"body":"a concern"}"#,
        };
        assert_eq!(decode_request(&encode_request(&request)), Ok(request));
        let response = HttpResponse {
            status: 202,
            headers: vec![("content-type", b"application/json")],
            body: b"{}",
        };
        assert_eq!(decode_response(&encode_response(&response)), Ok(response));
    }

    #[test]
    fn malformed_messages_are_refused() {
        let response = encode_response(&HttpResponse {
            status: 200,
            headers: vec![],
            body: b"",
        });
        assert_eq!(
            decode_request(&response),
            Err(DecodeError::UnknownMessageType(MSG_HTTP_RESPONSE))
        );
        let mut long = response.clone();
        long.push(0);
        assert_eq!(decode_response(&long), Err(DecodeError::TrailingBytes(1)));
        // A header count no payload could hold.
        assert!(matches!(
            decode_response(&[111, 200, 1, 0xff, 0xff, 0x03]),
            Err(DecodeError::LengthOverrun { .. })
        ));
        // Not a part's type: a whole message is never taken for a part.
        let mut parts = crate::forward::Reassembly::new(1024);
        assert_eq!(parts.feed(response.clone()), Ok(Some(response)));
    }
}
