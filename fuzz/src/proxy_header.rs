//! The PROXY protocol header (v1 text, v2 binary) from arbitrary bytes: it
//! is read byte-exact within its size bound, a truncated read means the
//! bytes ran out, and any address read writes back to a header (v1 and v2)
//! that reads as the same address.

use std::net::SocketAddr;

use futures_util::FutureExt;
use hashsplit::proxy_protocol::{HeaderError, read_header};

/// The longest header: 16 bytes of v2 preamble and a 512-byte block.
const MAX_HEADER: usize = 16 + 512;

/// Reads one header from the front of `data`.
pub fn run(data: &[u8]) {
    let (read, consumed) = read_from(data);
    assert!(consumed <= MAX_HEADER, "read {consumed} bytes of header");
    match read {
        Ok(Some(source)) => {
            let v1 = v1_header(source);
            assert_eq!(read_from(&v1), (Ok(Some(source)), v1.len()), "{v1:?}");
            let v2 = v2_header(source);
            assert_eq!(read_from(&v2), (Ok(Some(source)), v2.len()), "{v2:?}");
        }
        Ok(None) => {}
        Err(HeaderError::Truncated) => {
            assert_eq!(consumed, data.len(), "truncated with bytes left")
        }
        Err(HeaderError::Missing | HeaderError::Malformed(_)) => {}
    }
}

/// Reads a header from memory; returns it and how many bytes it took.
fn read_from(data: &[u8]) -> (Result<Option<SocketAddr>, HeaderError>, usize) {
    let mut rest = data;
    let read = read_header(&mut rest)
        .now_or_never()
        .expect("reading from memory never waits");
    (read, data.len() - rest.len())
}

fn v1_header(source: SocketAddr) -> Vec<u8> {
    let family = if source.is_ipv4() { "TCP4" } else { "TCP6" };
    let ip = source.ip();
    let port = source.port();
    format!("PROXY {family} {ip} {ip} {port} 3333\r\n").into_bytes()
}

fn v2_header(source: SocketAddr) -> Vec<u8> {
    let mut header = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    header.push(0x21); // version 2, PROXY
    let addresses = match source {
        SocketAddr::V4(v4) => {
            header.push(0x11); // TCP over IPv4
            [&v4.ip().octets()[..], &v4.ip().octets()[..]].concat()
        }
        SocketAddr::V6(v6) => {
            header.push(0x21); // TCP over IPv6
            [&v6.ip().octets()[..], &v6.ip().octets()[..]].concat()
        }
    };
    let length = u16::try_from(addresses.len() + 4).expect("at most 36 bytes");
    header.extend_from_slice(&length.to_be_bytes());
    header.extend_from_slice(&addresses);
    header.extend_from_slice(&source.port().to_be_bytes());
    header.extend_from_slice(&3333u16.to_be_bytes());
    header
}
