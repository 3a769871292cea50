//! The PROXY protocol header (v1 text and v2 binary) that HAProxy and other
//! TCP load balancers put before a connection's bytes, so the proxy sees
//! each miner's own address for its per-IP limit and its logs.
//!
//! Only the header is read, byte-exact, so the Stratum lines behind it are
//! left in the socket for the session. A `LOCAL` (v2) or `UNKNOWN` (v1)
//! header, sent by the balancer's own health checks, names no address: the
//! connection's peer stands.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use tokio::io::{AsyncRead, AsyncReadExt};

/// The 12 bytes every v2 header starts with.
const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// The longest v1 header, `\r\n` included.
const V1_MAX: usize = 107;
/// The longest v2 address block accepted (addresses plus TLVs).
const V2_MAX: usize = 512;

/// Why a header could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HeaderError {
    /// The connection does not start with a PROXY header.
    #[error("the connection does not start with a PROXY protocol header")]
    Missing,
    /// A header that does not follow the protocol.
    #[error("malformed PROXY protocol header: {0}")]
    Malformed(&'static str),
    /// The connection ended or failed within the header.
    #[error("connection lost within the PROXY protocol header")]
    Truncated,
}

/// Reads one header from `stream`; returns the source address it names,
/// or `None` for a header that names none (health checks).
pub async fn read_header<R: AsyncRead + Unpin>(
    stream: &mut R,
) -> Result<Option<SocketAddr>, HeaderError> {
    let mut start = [0u8; 8];
    read_exact(stream, &mut start).await?;
    if &start[..6] == b"PROXY " {
        let mut line = start.to_vec();
        while !line.ends_with(b"\r\n") {
            if line.len() >= V1_MAX {
                return Err(HeaderError::Malformed("v1 header longer than 107 bytes"));
            }
            let mut byte = [0u8; 1];
            read_exact(stream, &mut byte).await?;
            line.push(byte[0]);
        }
        return parse_v1(&line[..line.len() - 2]);
    }
    if start != V2_SIGNATURE[..8] {
        return Err(HeaderError::Missing);
    }
    let mut rest = [0u8; 8];
    read_exact(stream, &mut rest).await?;
    if rest[..4] != V2_SIGNATURE[8..] {
        return Err(HeaderError::Missing);
    }
    let (version_command, family) = (rest[4], rest[5]);
    let length = usize::from(u16::from_be_bytes([rest[6], rest[7]]));
    if length > V2_MAX {
        return Err(HeaderError::Malformed("v2 address block too long"));
    }
    let mut block = vec![0u8; length];
    read_exact(stream, &mut block).await?;
    parse_v2(version_command, family, &block)
}

async fn read_exact<R: AsyncRead + Unpin>(
    stream: &mut R,
    buf: &mut [u8],
) -> Result<(), HeaderError> {
    stream
        .read_exact(buf)
        .await
        .map(|_| ())
        .map_err(|_| HeaderError::Truncated)
}

/// Parses `PROXY TCP4 src dst sport dport` (without the `\r\n`).
fn parse_v1(line: &[u8]) -> Result<Option<SocketAddr>, HeaderError> {
    let line =
        std::str::from_utf8(line).map_err(|_| HeaderError::Malformed("v1 header is not text"))?;
    let fields: Vec<&str> = line.split(' ').collect();
    match fields.as_slice() {
        ["PROXY", "UNKNOWN", ..] => Ok(None),
        [
            "PROXY",
            family @ ("TCP4" | "TCP6"),
            source,
            _destination,
            port,
            _port,
        ] => {
            let ip: IpAddr = source
                .parse()
                .map_err(|_| HeaderError::Malformed("v1 source address"))?;
            if ip.is_ipv4() != (*family == "TCP4") {
                return Err(HeaderError::Malformed("v1 address of the other family"));
            }
            let port: u16 = port
                .parse()
                .map_err(|_| HeaderError::Malformed("v1 source port"))?;
            Ok(Some(SocketAddr::new(ip, port)))
        }
        _ => Err(HeaderError::Malformed("v1 header fields")),
    }
}

/// Parses a v2 header's command, family and address block.
fn parse_v2(
    version_command: u8,
    family: u8,
    block: &[u8],
) -> Result<Option<SocketAddr>, HeaderError> {
    if version_command >> 4 != 2 {
        return Err(HeaderError::Malformed("v2 version"));
    }
    match version_command & 0x0f {
        0 => return Ok(None), // LOCAL
        1 => {}               // PROXY
        _ => return Err(HeaderError::Malformed("v2 command")),
    }
    match family {
        // TCP or UDP over IPv4: source, destination, source port, destination port.
        0x11 | 0x12 => {
            let address = block
                .get(..12)
                .ok_or(HeaderError::Malformed("v2 IPv4 block too short"))?;
            let ip = Ipv4Addr::new(address[0], address[1], address[2], address[3]);
            let port = u16::from_be_bytes([address[8], address[9]]);
            Ok(Some(SocketAddr::new(IpAddr::V4(ip), port)))
        }
        0x21 | 0x22 => {
            let address = block
                .get(..36)
                .ok_or(HeaderError::Malformed("v2 IPv6 block too short"))?;
            let mut octets = [0u8; 16];
            octets.copy_from_slice(&address[..16]);
            let port = u16::from_be_bytes([address[32], address[33]]);
            Ok(Some(SocketAddr::new(
                IpAddr::V6(Ipv6Addr::from(octets)),
                port,
            )))
        }
        // Unix sockets or unspecified: no address to use.
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn read(bytes: &[u8]) -> (Result<Option<SocketAddr>, HeaderError>, Vec<u8>) {
        let mut stream = bytes;
        let header = read_header(&mut stream).await;
        (header, stream.to_vec())
    }

    fn v2(command: u8, family: u8, block: &[u8]) -> Vec<u8> {
        let mut bytes = V2_SIGNATURE.to_vec();
        bytes.extend([0x20 | command, family]);
        bytes.extend((block.len() as u16).to_be_bytes());
        bytes.extend(block);
        bytes
    }

    #[tokio::test]
    async fn v1_names_the_source_and_leaves_the_stratum_bytes() {
        let (header, rest) =
            read(b"PROXY TCP4 203.0.113.7 192.0.2.1 40001 3333\r\n{\"id\":1}\n").await;
        assert_eq!(header, Ok(Some("203.0.113.7:40001".parse().unwrap())));
        assert_eq!(rest, b"{\"id\":1}\n");
        let (header, _) = read(b"PROXY TCP6 2001:db8::7 2001:db8::1 40001 3333\r\n").await;
        assert_eq!(header, Ok(Some("[2001:db8::7]:40001".parse().unwrap())));
        let (header, rest) = read(b"PROXY UNKNOWN\r\nx").await;
        assert_eq!(header, Ok(None));
        assert_eq!(rest, b"x");
    }

    #[tokio::test]
    async fn v2_names_the_source_and_leaves_the_stratum_bytes() {
        let mut block = vec![198, 51, 100, 9, 192, 0, 2, 1];
        block.extend(50_000u16.to_be_bytes());
        block.extend(3333u16.to_be_bytes());
        block.extend([0x04, 0x00, 0x01, 0xff]); // a TLV, skipped
        let mut bytes = v2(1, 0x11, &block);
        bytes.extend(b"{\"id\":1}\n");
        let (header, rest) = read(&bytes).await;
        assert_eq!(header, Ok(Some("198.51.100.9:50000".parse().unwrap())));
        assert_eq!(rest, b"{\"id\":1}\n");

        let mut block = vec![0u8; 36];
        block[0] = 0x20;
        block[1] = 0x01;
        block[15] = 0x09;
        block[32..34].copy_from_slice(&4242u16.to_be_bytes());
        let (header, _) = read(&v2(1, 0x21, &block)).await;
        assert_eq!(header, Ok(Some("[2001::9]:4242".parse().unwrap())));
        let (header, _) = read(&v2(0, 0x00, &[])).await;
        assert_eq!(header, Ok(None), "LOCAL: a health check");
    }

    #[tokio::test]
    async fn anything_else_is_an_error_never_a_panic() {
        let cases: [(&[u8], HeaderError); 7] = [
            (
                b"{\"id\":1,\"method\":\"mining.subscribe\"}\n",
                HeaderError::Missing,
            ),
            (
                b"PROXY TCP4 1.2.3.4\r\n",
                HeaderError::Malformed("v1 header fields"),
            ),
            (
                b"PROXY TCP4 2001:db8::1 1.2.3.4 1 2\r\n",
                HeaderError::Malformed("v1 address of the other family"),
            ),
            (
                b"PROXY TCP4 1.2.3.4 1.2.3.5 99999 2\r\n",
                HeaderError::Malformed("v1 source port"),
            ),
            (b"PROXY TCP4 1.2.3.4 1.2.", HeaderError::Truncated),
            (b"PROXY xxx", HeaderError::Truncated),
            (b"short", HeaderError::Truncated),
        ];
        for (bytes, expected) in cases {
            assert_eq!(
                read(bytes).await.0,
                Err(expected),
                "{:?}",
                String::from_utf8_lossy(bytes)
            );
        }
        let endless = [b"PROXY ".as_slice(), &[b'x'; 200]].concat();
        assert_eq!(
            read(&endless).await.0,
            Err(HeaderError::Malformed("v1 header longer than 107 bytes"))
        );
        assert_eq!(
            read(&v2(1, 0x11, &[1, 2, 3])).await.0,
            Err(HeaderError::Malformed("v2 IPv4 block too short"))
        );
        let mut bad_version = v2(1, 0x11, &[0; 12]);
        bad_version[12] = 0x11;
        assert_eq!(
            read(&bad_version).await.0,
            Err(HeaderError::Malformed("v2 version"))
        );
        let mut huge = V2_SIGNATURE.to_vec();
        huge.extend([0x21, 0x11, 0xff, 0xff]);
        assert_eq!(
            read(&huge).await.0,
            Err(HeaderError::Malformed("v2 address block too long"))
        );
    }
}
