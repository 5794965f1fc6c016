//! PROXY protocol v2 (haproxy's `proxy-protocol.txt`, section 2.2) from trusted load balancers.
//!
//! A connection whose TCP peer is in the trust list (`--proxy-from`, `proxy_protocol_from`) must
//! begin with a binary v2 header; its source address then stands for the client everywhere
//! (per-address connection caps, registration limits, logs). A `LOCAL` header (the balancer's
//! own health check) keeps the peer's address. A trusted peer that sends no valid header within
//! the handshake timeout is closed. A connection from any other peer is never read for a
//! header, so nobody outside the list can claim an address.
//!
//! The header is read exactly (16 bytes, then the length they announce, at most
//! [`MAX_HEADER_BODY`]), so the TLS bytes after it stay in the socket; the `ppp` crate parses it.

use std::net::{IpAddr, SocketAddr};

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// The v2 signature: `\r\n\r\n\0\r\nQUIT\n`.
const SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// Most bytes of addresses and TLVs accepted after the 16-byte fixed part: two IPv6 addresses
/// and ports (36) leave room for the TLVs balancers add (ALPN, authority, unique id, SSL info).
/// A longer announced length closes the connection before reading it.
pub const MAX_HEADER_BODY: usize = 512;

/// An address or network (`10.0.0.0/8`, `2001:db8::/32`, `192.0.2.7`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Whether `ip` is in it. An IPv4-mapped IPv6 address (`::ffff:10.0.0.1`, as a dual-stack
    /// socket reports IPv4 peers) counts as its IPv4 address.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.net, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl std::str::FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Cidr, String> {
        let bad = || {
            format!(
                "{s:?} is not an address or network (e.g. 10.0.0.5, 10.0.0.0/8 or 2001:db8::/32)"
            )
        };
        let (addr, prefix) = match s.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (s, None),
        };
        let net: IpAddr = addr.trim().parse().map_err(|_| bad())?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.trim().parse::<u8>().map_err(|_| bad())?,
            None => max,
        };
        if prefix > max {
            return Err(bad());
        }
        Ok(Cidr {
            net: net.to_canonical(),
            prefix,
        })
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.net, self.prefix)
    }
}

/// The peers whose connections begin with a PROXY protocol v2 header. Empty: none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Trusted(Vec<Cidr>);

impl Trusted {
    /// Trusts these addresses and networks.
    pub fn new(list: Vec<Cidr>) -> Trusted {
        Trusted(list)
    }

    /// Whether a connection from `peer` must begin with a header.
    pub fn trusts(&self, peer: IpAddr) -> bool {
        self.0.iter().any(|c| c.contains(peer))
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Display for Trusted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let list: Vec<String> = self.0.iter().map(Cidr::to_string).collect();
        f.write_str(&list.join(", "))
    }
}

/// Why a trusted peer's connection was closed before TLS.
#[derive(Debug, thiserror::Error)]
pub enum HeaderError {
    /// The connection ended or failed before the header was complete.
    #[error("the connection ended before a complete PROXY header ({0})")]
    Io(#[from] std::io::Error),
    /// The first bytes are not a v2 header's signature (a v1 text header, or none at all).
    #[error("no PROXY protocol v2 header")]
    NoSignature,
    /// It announces more than [`MAX_HEADER_BODY`] bytes.
    #[error("a PROXY header of {0} bytes (at most {MAX_HEADER_BODY} accepted)")]
    TooLong(usize),
    /// `ppp` refused it (version, command, family, lengths).
    #[error("an invalid PROXY header: {0}")]
    Invalid(String),
}

/// Reads the PROXY v2 header at the start of `tcp` (from a trusted `peer`) and answers the
/// client's address: the header's source for `PROXY` over IPv4 or IPv6, `peer` for `LOCAL` or
/// an unspecified or UNIX family. Reads exactly the header, nothing after it. No timeout here:
/// the caller bounds it.
///
/// # Errors
/// [`HeaderError`]: the caller closes the connection.
pub async fn read_header(tcp: &mut TcpStream, peer: SocketAddr) -> Result<SocketAddr, HeaderError> {
    let mut head = [0u8; 16];
    // The signature first: anything else (a TLS ClientHello, a v1 header) is refused after its
    // first 12 bytes, without waiting for more.
    tcp.read_exact(&mut head[..12]).await?;
    if head[..12] != SIGNATURE {
        return Err(HeaderError::NoSignature);
    }
    tcp.read_exact(&mut head[12..]).await?;
    let len = usize::from(u16::from_be_bytes([head[14], head[15]]));
    if len > MAX_HEADER_BODY {
        return Err(HeaderError::TooLong(len));
    }
    let mut whole = Vec::with_capacity(16 + len);
    whole.extend_from_slice(&head);
    whole.resize(16 + len, 0);
    tcp.read_exact(&mut whole[16..]).await?;
    client_address(&whole, peer)
}

/// The client's address from a complete header (see [`read_header`]).
///
/// # Errors
/// [`HeaderError::Invalid`] if `ppp` refuses it.
pub fn client_address(header: &[u8], peer: SocketAddr) -> Result<SocketAddr, HeaderError> {
    use ppp::v2::{Addresses, Command, Header};
    let parsed = Header::try_from(header).map_err(|e| HeaderError::Invalid(e.to_string()))?;
    if parsed.command == Command::Local {
        return Ok(peer);
    }
    Ok(match parsed.addresses {
        Addresses::IPv4(a) => SocketAddr::from((a.source_address, a.source_port)),
        Addresses::IPv6(a) => SocketAddr::from((a.source_address, a.source_port)),
        // "The receiver must ignore the address information" (UNSPEC); a UNIX socket's path
        // is no address to limit by.
        Addresses::Unspecified | Addresses::Unix(_) => peer,
    })
}

/// A PROXY v2 header (`PROXY`, TCP) from `source` to `destination`, as a load balancer sends
/// it: for tests and tools.
///
/// # Errors
/// If the two addresses are not of one family.
pub fn header_v2(source: SocketAddr, destination: SocketAddr) -> std::io::Result<Vec<u8>> {
    use ppp::v2::{Builder, Command, Protocol, Version};
    if source.is_ipv4() != destination.is_ipv4() {
        return Err(std::io::Error::other(
            "the addresses are of different families",
        ));
    }
    Builder::with_addresses(
        Version::Two | Command::Proxy,
        Protocol::Stream,
        (source, destination),
    )
    .build()
}

/// A `LOCAL` v2 header (a balancer's own connection, e.g. a health check): for tests and tools.
///
/// # Errors
/// Never in practice (as `ppp`'s builder).
pub fn header_v2_local() -> std::io::Result<Vec<u8>> {
    use ppp::v2::{Addresses, Builder, Command, Protocol, Version};
    Builder::with_addresses(
        Version::Two | Command::Local,
        Protocol::Unspecified,
        Addresses::Unspecified,
    )
    .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_contain_what_they_should_and_nothing_else() {
        let ten: Cidr = "10.0.0.0/8".parse().unwrap();
        assert!(ten.contains("10.200.3.4".parse().unwrap()));
        assert!(ten.contains("::ffff:10.1.2.3".parse().unwrap()));
        assert!(!ten.contains("11.0.0.1".parse().unwrap()));
        assert!(!ten.contains("::1".parse().unwrap()));
        let one: Cidr = "127.0.0.1".parse().unwrap();
        assert!(one.contains("127.0.0.1".parse().unwrap()));
        assert!(!one.contains("127.0.0.2".parse().unwrap()));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("203.0.113.7".parse().unwrap()));
        let v6: Cidr = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains("2001:db8:1::5".parse().unwrap()));
        assert!(!v6.contains("2001:db9::5".parse().unwrap()));
        for bad in ["10.0.0.0/33", "example.org", "10.0.0.0/x", "::/129", ""] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn the_header_gives_the_source_and_local_keeps_the_peer() {
        let peer: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let client: SocketAddr = "203.0.113.7:40000".parse().unwrap();
        let header = header_v2(client, "192.0.2.1:7667".parse().unwrap()).unwrap();
        assert_eq!(client_address(&header, peer).unwrap(), client);
        let v6: SocketAddr = "[2001:db8::7]:1234".parse().unwrap();
        let header = header_v2(v6, "[2001:db8::1]:7667".parse().unwrap()).unwrap();
        assert_eq!(client_address(&header, peer).unwrap(), v6);
        assert_eq!(
            client_address(&header_v2_local().unwrap(), peer).unwrap(),
            peer
        );
        let mut broken = header_v2(client, "192.0.2.1:7667".parse().unwrap()).unwrap();
        broken[12] = 0x11; // version 1 in the binary form: not v2
        assert!(client_address(&broken, peer).is_err());
        assert!(client_address(&broken[..14], peer).is_err());
    }
}
