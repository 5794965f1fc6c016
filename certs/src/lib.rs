//! Certificates for Multi-Messenger.
//!
//! `mm-certs` and the server's first start both call [`generate`]: a self-signed CA (`ca.pem`,
//! `ca.key`) and a server certificate signed by it (`server.pem` holds the server certificate
//! followed by the CA, `server.key`). Clients trust the CA, either by file (`mm --ca ca.pem`) or by
//! accepting its SHA-256 [`fingerprint`] once. The CA may vouch only for the server's own names
//! and LAN names and addresses ([`CaScope`], RFC 5280 name constraints), so that importing it
//! into a browser does not let its key vouch for any other website. Every file is written owner-only (0600, in 0700
//! directories: see [`PRIVATE_FILE_MODE`]) and replaced atomically, so a crash never leaves a
//! half-written key.

pub mod cli;

use std::fs;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CidrSubnet, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, GeneralSubtree, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    NameConstraints, SanType,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

/// File name of the CA certificate (give this to clients).
pub const CA_CERT: &str = "ca.pem";
/// File name of the CA private key (keep it secret; it can be moved offline).
pub const CA_KEY: &str = "ca.key";
/// File name of the server certificate chain (server certificate, then the CA).
pub const SERVER_CERT: &str = "server.pem";
/// File name of the server private key.
pub const SERVER_KEY: &str = "server.key";

/// The files of a TLS directory.
pub const TLS_FILES: [&str; 4] = [CA_CERT, CA_KEY, SERVER_CERT, SERVER_KEY];
/// A new `server.key` waiting to be put in place (see [`finish_pending`]).
pub const SERVER_KEY_PENDING: &str = "server.key.new";
/// A new `server.pem` waiting to be put in place (see [`finish_pending`]).
pub const SERVER_CERT_PENDING: &str = "server.pem.new";

/// The names every server certificate covers, so that local use works with no options.
pub const DEFAULT_DNS_NAMES: [&str; 1] = ["localhost"];
/// The addresses every server certificate covers.
pub const DEFAULT_IPS: [IpAddr; 2] = [
    IpAddr::V4(Ipv4Addr::LOCALHOST),
    IpAddr::V6(Ipv6Addr::LOCALHOST),
];

/// DNS suffixes that are not public names, which every generated CA may vouch for besides the
/// server's own names, so that a LAN server can be renamed (`myhost.local`, `chat.lan`,
/// `box.home.arpa`, `svc.internal`) without a new CA: `local` (mDNS, RFC 6762), `home.arpa`
/// (RFC 8375), `internal` (reserved for private use by ICANN in 2024) and `lan` (not delegated,
/// common on home routers). A name constraint covers the name and every name under it (RFC 5280
/// section 4.2.1.10).
pub const LAN_DNS_SUFFIXES: [&str; 4] = ["local", "lan", "home.arpa", "internal"];

/// Address ranges, as (network, prefix length in bits), that every generated CA may vouch for
/// besides the server's own addresses, so that a DHCP change does not need a new CA: loopback
/// (127.0.0.0/8, ::1/128), private (10/8, 172.16/12, 192.168/16; fc00::/7), shared carrier-grade
/// NAT and Tailscale-style overlays (100.64/10) and link-local (169.254/16, fe80::/10). None of
/// them is reachable from the public internet.
pub const LAN_IP_RANGES: [(IpAddr, u8); 9] = [
    (IpAddr::V4(Ipv4Addr::new(127, 0, 0, 0)), 8),
    (IpAddr::V4(Ipv4Addr::new(10, 0, 0, 0)), 8),
    (IpAddr::V4(Ipv4Addr::new(172, 16, 0, 0)), 12),
    (IpAddr::V4(Ipv4Addr::new(192, 168, 0, 0)), 16),
    (IpAddr::V4(Ipv4Addr::new(169, 254, 0, 0)), 16),
    (IpAddr::V4(Ipv4Addr::new(100, 64, 0, 0)), 10),
    (IpAddr::V6(Ipv6Addr::LOCALHOST), 128),
    (IpAddr::V6(Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0)), 7),
    (IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0)), 10),
];

/// How long a generated CA is valid: ten years. Clients pin it (by file or fingerprint), so it
/// should outlive many server certificates; replacing it means every client trusts anew.
pub const CA_VALIDITY: time::Duration = time::Duration::days(10 * 365);
/// How long a generated server certificate is valid, from its `notBefore` (a day back, for
/// clocks a little behind) to its `notAfter`: 397 days, under the 398 that browsers accept from
/// any CA (they refuse over 825 even from a user-installed one) and that scanners flag. The
/// server renews its own from `ca.key` before it runs out ([`RENEW_BEFORE`]).
pub const SERVER_VALIDITY: time::Duration = time::Duration::days(397);
/// A server certificate with less than this left is renewed (`mm-server` checks at start and
/// daily).
pub const RENEW_BEFORE: time::Duration = time::Duration::days(30);
/// How far back a new certificate's `notBefore` is set: clocks a little behind still accept it.
const BACKDATE: time::Duration = time::Duration::days(1);

/// Errors of this crate.
///
/// Each message says its cause once: the cause is part of the text and is not also given as
/// the error's `source()`, which `{:#}` (anyhow, the programs' last line) would print again
/// ("...: Is a directory: Is a directory").
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CertError {
    /// Reading or writing a file failed.
    #[error("{path}: {}", mm_common::text::os_words(.error))]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        error: std::io::Error,
    },
    /// Generation would overwrite files and `force` was not given.
    #[error("refusing to overwrite existing {}; `mm-certs --new-ca` replaces them (a new CA: every client must trust it anew)", list(.0))]
    Exists(Vec<PathBuf>),
    /// The directory holds some of the files but not all.
    #[error("{dir} holds {} but not {}; restore the missing files or remove the others to start over", list(.present), list(.missing))]
    Incomplete {
        /// The directory.
        dir: PathBuf,
        /// Files that are there.
        present: Vec<PathBuf>,
        /// Files that are not.
        missing: Vec<PathBuf>,
    },
    /// A PEM file holds no usable certificate or key.
    #[error("{path}: {detail}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// A DNS name was rejected.
    #[error("invalid DNS name {0:?}")]
    InvalidName(String),
    /// The CA may not vouch for some of the names a server certificate was to cover (its name
    /// constraints, [`CaScope`]): clients would refuse such a certificate, so none was issued
    /// and nothing was written.
    #[error("the CA in {} may not vouch for {} (it may only vouch for {scope}), so no certificate was issued and nothing was written; to cover them make a new CA with `mm-certs --new-ca` (alias --force), listing every name and address with --name and --ip: every client, and every browser or system that trusts the old CA, must then trust the new one", ca.display(), .names.join(", "))]
    OutsideCa {
        /// The CA certificate.
        ca: PathBuf,
        /// The names and addresses it may not vouch for.
        names: Vec<String>,
        /// What it may vouch for ([`CaScope`]'s words).
        scope: String,
    },
    /// rcgen failed.
    #[error("certificate generation failed: {0}")]
    Generate(rcgen::Error),
    /// A new server key was put in place but its certificate could not be: the commit is half
    /// done, and [`finish_pending`] completes it.
    #[error("{}: the new server key is in place but its certificate is not ({cause}); it waits in {SERVER_CERT_PENDING}, and the next start of mm-server (or run of mm-certs) puts it in place", dir.display())]
    Unfinished {
        /// The directory.
        dir: PathBuf,
        /// What failed.
        cause: String,
    },
}

impl From<rcgen::Error> for CertError {
    fn from(e: rcgen::Error) -> CertError {
        CertError::Generate(e)
    }
}

fn list(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> CertError + '_ {
    move |error| CertError::Io {
        path: path.to_path_buf(),
        error,
    }
}

/// The TLS directory `mm-server` uses when given none, and where `mm-certs` writes by default:
/// `$MM_SERVER_DATA/tls`, else `<data dir>/multi-messenger/server/tls` (on Linux
/// `~/.local/share/multi-messenger/server/tls`).
pub fn default_tls_dir() -> Option<PathBuf> {
    default_server_data_dir().map(|d| d.join("tls"))
}

/// The server's data directory: `$MM_SERVER_DATA`, else `<data dir>/multi-messenger/server`.
pub fn default_server_data_dir() -> Option<PathBuf> {
    match std::env::var_os("MM_SERVER_DATA") {
        Some(dir) if !dir.is_empty() => Some(PathBuf::from(dir)),
        _ => dirs::data_dir().map(|d| d.join("multi-messenger").join("server")),
    }
}

/// The SHA-256 fingerprint of a DER certificate, as colon-separated uppercase hex pairs (the form
/// `openssl x509 -noout -fingerprint -sha256` prints).
pub fn fingerprint(der: &[u8]) -> String {
    let digest = Sha256::digest(der);
    let mut out = String::with_capacity(digest.len() * 3);
    for (i, byte) in digest.iter().enumerate() {
        if i > 0 {
            out.push(':');
        }
        out.push_str(&format!("{byte:02X}"));
    }
    out
}

/// What to put in a server certificate besides the defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Names {
    /// Extra DNS names (e.g. `chat.example.org`, `myhost.local`).
    pub dns: Vec<String>,
    /// Extra IP addresses (e.g. the server's LAN address).
    pub ips: Vec<IpAddr>,
}

/// One name or range in a CA's name constraints (RFC 5280 section 4.2.1.10) of a kind that
/// constrains server certificates. Other kinds (e-mail, URI, directory name) do not limit the
/// DNS names and addresses a server certificate covers, and are not kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subtree {
    /// A DNS name and every name under it: `lan` covers `lan` and `chat.lan` (a leading dot,
    /// `.lan`, covers only the names under it). Empty covers every name.
    Dns(String),
    /// The addresses `a` of `network`'s family with `a & mask == network & mask`.
    Ip {
        /// The network address.
        network: IpAddr,
        /// The mask, of the same family (contiguous in what this crate writes).
        mask: IpAddr,
    },
}

impl Subtree {
    /// The range `network/prefix` (`prefix` in bits, at most 32 for IPv4 and 128 for IPv6;
    /// larger is taken as the maximum).
    pub fn ip_range(network: IpAddr, prefix: u8) -> Subtree {
        let mask = match network {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::from(
                u32::MAX
                    .checked_shl(32 - u32::from(prefix.min(32)))
                    .unwrap_or(0),
            )),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::from(
                u128::MAX
                    .checked_shl(128 - u32::from(prefix.min(128)))
                    .unwrap_or(0),
            )),
        };
        Subtree::Ip { network, mask }
    }

    /// Whether the DNS name `name` falls in this subtree (ASCII case-insensitive; a trailing
    /// dot is ignored). A wildcard name (`*.chat.lan`) is treated as a name under its suffix.
    fn covers_dns(&self, name: &str) -> bool {
        let Subtree::Dns(base) = self else {
            return false;
        };
        let (name, base) = (normalize_dns(name), normalize_dns(base));
        if base.is_empty() {
            return true;
        }
        if base.starts_with('.') {
            return name.ends_with(&base);
        }
        name == base || name.ends_with(&format!(".{base}"))
    }

    /// Whether the address `ip` falls in this range (never across address families).
    fn covers_ip(&self, ip: IpAddr) -> bool {
        let Subtree::Ip { network, mask } = self else {
            return false;
        };
        match (ip, network, mask) {
            (IpAddr::V4(ip), IpAddr::V4(net), IpAddr::V4(mask)) => {
                u32::from(ip) & u32::from(*mask) == u32::from(*net) & u32::from(*mask)
            }
            (IpAddr::V6(ip), IpAddr::V6(net), IpAddr::V6(mask)) => {
                u128::from(ip) & u128::from(*mask) == u128::from(*net) & u128::from(*mask)
            }
            _ => false,
        }
    }
}

impl std::fmt::Display for Subtree {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Subtree::Dns(name) => write!(f, "{name}"),
            Subtree::Ip { network, mask } => {
                let (ones, bits) = match mask {
                    IpAddr::V4(m) => (u32::from(*m).leading_ones(), u32::from(*m).count_ones()),
                    IpAddr::V6(m) => (u128::from(*m).leading_ones(), u128::from(*m).count_ones()),
                };
                if ones == bits {
                    write!(f, "{network}/{ones}")
                } else {
                    write!(f, "{network} mask {mask}")
                }
            }
        }
    }
}

/// Lowercase, without a trailing dot.
fn normalize_dns(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

/// What a CA may vouch for, from its name constraints extension (RFC 5280 section 4.2.1.10),
/// as far as server certificates go: the DNS and IP subtrees it permits and excludes.
///
/// Per RFC 5280 a kind of name with no permitted subtree is not constrained at all: a CA that
/// permits only DNS subtrees may still vouch for any address. [`CaScope::is_limited`] says
/// whether both kinds are limited, which is what every CA this crate makes does
/// ([`CaScope::for_names`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CaScope {
    /// Names and ranges it may vouch for (per kind: if there is none of a kind, any).
    pub permitted: Vec<Subtree>,
    /// Names and ranges it may never vouch for.
    pub excluded: Vec<Subtree>,
}

impl CaScope {
    /// The scope of a CA made for a server certificate covering the defaults and `names`:
    ///
    /// - DNS: [`DEFAULT_DNS_NAMES`] (`localhost`), each name of `names.dns` (a wildcard
    ///   `*.x` as `x`), and the non-public suffixes [`LAN_DNS_SUFFIXES`]; a name already under
    ///   another is left out. Nothing else public.
    /// - IP: the loopback, private and link-local ranges [`LAN_IP_RANGES`], and each address of
    ///   [`DEFAULT_IPS`] and `names.ips` outside them as a single address (/32, /128).
    ///
    /// Both kinds are always present, so that neither is unconstrained (RFC 5280 section
    /// 4.2.1.10). The residual risk, by design: a stolen `ca.key` can still vouch for any
    /// name under those suffixes and any address in those ranges, i.e. impersonate other
    /// devices on a LAN to whoever trusts this CA; never a public website.
    pub fn for_names(names: &Names) -> CaScope {
        let mut dns: Vec<String> = Vec::new();
        let wanted = DEFAULT_DNS_NAMES
            .iter()
            .map(|s| (*s).to_owned())
            .chain(names.dns.iter().filter_map(|name| {
                let name = normalize_dns(name);
                // `*.chat.example.org` as `chat.example.org`. Never a bare top-level label
                // (`*.org` would permit all of `.org`), nor a `*` a verifier may not parse as
                // a constraint: such names are left out (their certificates are refused).
                let base = match name.strip_prefix("*.") {
                    Some(base) if base.contains('.') => base.to_owned(),
                    Some(_) => return None,
                    None => name,
                };
                (!base.contains('*')).then_some(base)
            }))
            .chain(LAN_DNS_SUFFIXES.iter().map(|s| (*s).to_owned()));
        for name in wanted {
            if !name.is_empty() && !dns.contains(&name) {
                dns.push(name);
            }
        }
        // A name under another one in the list adds nothing.
        let all = dns.clone();
        dns.retain(|name| {
            !all.iter()
                .any(|other| other != name && Subtree::Dns(other.clone()).covers_dns(name))
        });
        let mut permitted: Vec<Subtree> = dns.into_iter().map(Subtree::Dns).collect();
        let ranges: Vec<Subtree> = LAN_IP_RANGES
            .iter()
            .map(|(network, prefix)| Subtree::ip_range(*network, *prefix))
            .collect();
        let mut singles: Vec<IpAddr> = Vec::new();
        for ip in DEFAULT_IPS.iter().chain(names.ips.iter()) {
            if !ranges.iter().any(|r| r.covers_ip(*ip)) && !singles.contains(ip) {
                singles.push(*ip);
            }
        }
        permitted.extend(ranges);
        permitted.extend(singles.into_iter().map(|ip| {
            let bits = if ip.is_ipv4() { 32 } else { 128 };
            Subtree::ip_range(ip, bits)
        }));
        CaScope {
            permitted,
            excluded: Vec::new(),
        }
    }

    /// The scope of the CA certificate `der`: `None` if it has no name constraints extension
    /// (a CA made before this crate wrote one: it may vouch for any name).
    ///
    /// # Errors
    /// [`CertError::Pem`] naming `path` (where `der` came from) if it does not parse.
    pub fn of_ca(der: &[u8], path: &Path) -> Result<Option<CaScope>, CertError> {
        use x509_parser::extensions::GeneralName;
        let bad = |detail: String| CertError::Pem {
            path: path.to_path_buf(),
            detail,
        };
        let (_, cert) = x509_parser::parse_x509_certificate(der)
            .map_err(|e| bad(format!("unreadable certificate: {e}")))?;
        let Some(constraints) = cert
            .name_constraints()
            .map_err(|e| bad(format!("unreadable name constraints: {e}")))?
        else {
            return Ok(None);
        };
        let subtrees = |list: &Option<Vec<x509_parser::extensions::GeneralSubtree<'_>>>| {
            let mut out = Vec::new();
            for subtree in list.iter().flatten() {
                match &subtree.base {
                    GeneralName::DNSName(name) => out.push(Subtree::Dns((*name).to_owned())),
                    GeneralName::IPAddress(bytes) => {
                        if let Ok(b) = <[u8; 8]>::try_from(*bytes) {
                            out.push(Subtree::Ip {
                                network: IpAddr::from([b[0], b[1], b[2], b[3]]),
                                mask: IpAddr::from([b[4], b[5], b[6], b[7]]),
                            });
                        } else if let Ok(b) = <[u8; 32]>::try_from(*bytes) {
                            let (net, mask) = b.split_at(16);
                            if let (Ok(net), Ok(mask)) =
                                (<[u8; 16]>::try_from(net), <[u8; 16]>::try_from(mask))
                            {
                                out.push(Subtree::Ip {
                                    network: IpAddr::from(net),
                                    mask: IpAddr::from(mask),
                                });
                            }
                        }
                    }
                    _ => {}
                }
            }
            out
        };
        Ok(Some(CaScope {
            permitted: subtrees(&constraints.value.permitted_subtrees),
            excluded: subtrees(&constraints.value.excluded_subtrees),
        }))
    }

    /// Whether it limits both DNS names and addresses (has a permitted subtree of each kind).
    /// A CA that does not may vouch for any website (of the kind not limited) to whoever
    /// trusts it.
    pub fn is_limited(&self) -> bool {
        self.permitted.iter().any(|s| matches!(s, Subtree::Dns(_)))
            && self
                .permitted
                .iter()
                .any(|s| matches!(s, Subtree::Ip { .. }))
    }

    /// Whether the CA may vouch for the DNS name `name`.
    pub fn permits_dns(&self, name: &str) -> bool {
        let mut permitted = self
            .permitted
            .iter()
            .filter(|s| matches!(s, Subtree::Dns(_)))
            .peekable();
        let allowed = permitted.peek().is_none() || permitted.any(|s| s.covers_dns(name));
        allowed && !self.excluded.iter().any(|s| s.covers_dns(name))
    }

    /// Whether the CA may vouch for the address `ip`.
    pub fn permits_ip(&self, ip: IpAddr) -> bool {
        let mut permitted = self
            .permitted
            .iter()
            .filter(|s| matches!(s, Subtree::Ip { .. }))
            .peekable();
        let allowed = permitted.peek().is_none() || permitted.any(|s| s.covers_ip(ip));
        allowed && !self.excluded.iter().any(|s| s.covers_ip(ip))
    }

    /// The names and addresses among `dns` and `ips` it may not vouch for, as text.
    pub fn outside(&self, dns: &[String], ips: &[IpAddr]) -> Vec<String> {
        dns.iter()
            .filter(|name| !self.permits_dns(name))
            .cloned()
            .chain(
                ips.iter()
                    .filter(|ip| !self.permits_ip(**ip))
                    .map(IpAddr::to_string),
            )
            .collect()
    }

    /// As rcgen's name constraints, for a CA certificate.
    fn to_rcgen(&self) -> NameConstraints {
        let convert = |subtrees: &[Subtree]| {
            subtrees
                .iter()
                .map(|s| match s {
                    Subtree::Dns(name) => GeneralSubtree::DnsName(name.clone()),
                    Subtree::Ip { network, mask } => {
                        GeneralSubtree::IpAddress(match (network, mask) {
                            (IpAddr::V4(n), IpAddr::V4(m)) => {
                                CidrSubnet::V4(n.octets(), m.octets())
                            }
                            (IpAddr::V6(n), IpAddr::V6(m)) => {
                                CidrSubnet::V6(n.octets(), m.octets())
                            }
                            // Mixed families are never built here; as a single address of the
                            // network's family they stay narrow.
                            (IpAddr::V4(n), _) => CidrSubnet::V4(n.octets(), [0xff; 4]),
                            (IpAddr::V6(n), _) => CidrSubnet::V6(n.octets(), [0xff; 16]),
                        })
                    }
                })
                .collect()
        };
        NameConstraints {
            permitted_subtrees: convert(&self.permitted),
            excluded_subtrees: convert(&self.excluded),
        }
    }
}

impl std::fmt::Display for CaScope {
    /// `DNS names localhost, lan, ... (and the names under them); addresses 127.0.0.0/8, ...`
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let join = |dns: bool, list: &[Subtree]| {
            list.iter()
                .filter(|s| matches!(s, Subtree::Dns(_)) == dns)
                .map(Subtree::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        let (dns, ips) = (join(true, &self.permitted), join(false, &self.permitted));
        write!(
            f,
            "DNS names {} (and the names under them); addresses {}",
            if dns.is_empty() { "of any kind" } else { &dns },
            if ips.is_empty() { "of any kind" } else { &ips },
        )?;
        if !self.excluded.is_empty() {
            write!(f, "; never {}", join(true, &self.excluded))?;
            let ips = join(false, &self.excluded);
            if !ips.is_empty() {
                write!(f, ", {ips}")?;
            }
        }
        Ok(())
    }
}

/// Whether the CA certificate in `path` limits the names it may vouch for
/// ([`CaScope::is_limited`]): `false` for a CA made before this crate wrote name constraints.
///
/// # Errors
/// I/O errors and [`CertError::Pem`] if `path` holds no readable certificate.
pub fn ca_is_limited(path: &Path) -> Result<bool, CertError> {
    let der = load_certs(path)?.remove(0);
    Ok(CaScope::of_ca(&der, path)?.is_some_and(|scope| scope.is_limited()))
}

/// What to say about a CA that does not limit the names it may vouch for
/// ([`ca_is_limited`] is `false`): the risk and how to replace it. One paragraph, no newline
/// at the end.
pub const UNLIMITED_CA_WARNING: &str = "this CA has no name constraints: imported into a \
     browser or an operating system, it lets its key (ca.key) vouch for ANY website, not just \
     this server. Make a new, constrained CA with `mm-certs --new-ca` (alias --force; add \
     --name/--ip for every name and address clients use); every client must then trust the new \
     CA (mm --ca, or mm trust add with its fingerprint), and browsers and systems that imported \
     the old one should remove it";

/// The result of [`generate`].
#[derive(Debug, Clone)]
pub struct Generated {
    /// Path of `ca.pem`.
    pub ca_cert: PathBuf,
    /// Path of `server.pem`.
    pub server_cert: PathBuf,
    /// SHA-256 fingerprint of the CA certificate.
    pub ca_fingerprint: String,
    /// Every DNS name and IP address the server certificate covers.
    pub covers: Vec<String>,
}

/// When a certificate is issued and for how long: [`Issue::now`] for real use; tests give
/// another time or a short validity instead of waiting.
#[derive(Debug, Clone, Copy)]
pub struct Issue {
    /// The time of issue.
    pub now: time::OffsetDateTime,
    /// The server certificate's validity, `notBefore` to `notAfter`.
    pub server_validity: time::Duration,
}

impl Issue {
    /// Now, with [`SERVER_VALIDITY`].
    pub fn now() -> Issue {
        Issue {
            now: time::OffsetDateTime::now_utc(),
            server_validity: SERVER_VALIDITY,
        }
    }
}

/// Generates a CA and a server certificate into `dir` (created with mode 0700 if missing).
///
/// The CA carries a critical name constraints extension (RFC 5280 section 4.2.1.10) with
/// [`CaScope::for_names`]`(names)`: it may vouch only for the server's names, `localhost`,
/// names under the non-public suffixes [`LAN_DNS_SUFFIXES`], the server's addresses and the
/// loopback, private and link-local ranges [`LAN_IP_RANGES`]. Users import `ca.pem` into
/// browsers and operating systems as a root; a stolen `ca.key` (it stays on the server, for
/// renewal) can then impersonate no public website to them, only LAN names and addresses in
/// that scope (the residual risk, see SECURITY.md). Renaming a LAN server within it needs no
/// new CA; a new public name or address does (`mm-certs --new-ca`).
///
/// Without `force`, refuses if any of the four files exists.
///
/// # Errors
/// [`CertError::Exists`] without `force` when files exist; I/O and generation errors.
pub fn generate(dir: &Path, names: &Names, force: bool) -> Result<Generated, CertError> {
    generate_at(dir, names, force, Issue::now())
}

/// [`generate`], issued at `issue.now` with `issue.server_validity`.
///
/// # Errors
/// As [`generate`].
pub fn generate_at(
    dir: &Path,
    names: &Names,
    force: bool,
    issue: Issue,
) -> Result<Generated, CertError> {
    if !force {
        let existing: Vec<PathBuf> = TLS_FILES
            .iter()
            .map(|f| dir.join(f))
            .filter(|p| p.exists())
            .collect();
        if !existing.is_empty() {
            return Err(CertError::Exists(existing));
        }
    }
    // Checked before anything is written.
    let server = server_params(names, issue)?;
    create_private_dir(dir).map_err(io_err(dir))?;

    let now = issue.now;
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::default();
    ca_params.distinguished_name = DistinguishedName::new();
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "Multi-Messenger CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    ca_params.not_before = now - BACKDATE;
    ca_params.not_after = now + CA_VALIDITY;
    // What the CA may vouch for: see `CaScope::for_names`.
    // Server authentication only: with this extended key usage on the CA, verifiers that chain
    // usages (OpenSSL, Windows, macOS) refuse anything else it might sign (S/MIME, code
    // signing) even where the system trusts the imported root for every purpose.
    ca_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let mut constraints = CaScope::for_names(names).to_rcgen();
    // And no e-mail address at all (RFC 5280 4.2.1.10: the reserved `.invalid`, RFC 2606,
    // matches no real mailbox), for verifiers that do not chain usages.
    constraints
        .permitted_subtrees
        .push(GeneralSubtree::Rfc822Name(".invalid".into()));
    ca_params.name_constraints = Some(constraints);
    let ca_cert = ca_params.self_signed(&ca_key)?;

    // Each key before its certificate: if we crash between files, the next run sees an
    // incomplete set and says so, rather than serving a certificate whose key is missing.
    write_secret(&dir.join(CA_KEY), ca_key.serialize_pem().as_bytes())?;
    write_secret(&dir.join(CA_CERT), ca_cert.pem().as_bytes())?;
    let issuer = Issuer::new(ca_params, &ca_key);
    issue_server(dir, server, &issuer, &ca_cert.pem(), ca_cert.der())
}

/// Issues a new server certificate and key signed by the CA already in `dir` (`ca.pem` and
/// `ca.key`) and replaces `server.pem` and `server.key` with them. The CA is untouched, so
/// clients that trust it (by file or fingerprint) trust the new certificate too; a running
/// `mm-server` presents it to new connections after SIGHUP.
///
/// The new key and certificate replace the old ones as a pair: see [`finish_pending`] for
/// the rule. A failure before the commit leaves the old pair; a crash during it leaves a
/// half-done commit that [`finish_pending`] completes (`mm-server` and `mm-certs` call it
/// first thing). A server that reloads (SIGHUP) in the instant between the two renames finds
/// a key that does not match and keeps presenting its previous certificate.
///
/// The new certificate is checked against the CA before anything is written: a `ca.key` that
/// does not belong to `ca.pem` is refused, and so are names the CA may not vouch for (its name
/// constraints, [`CaScope`]: a new public name or address needs a new CA); the files stay as
/// they were.
///
/// # Errors
/// I/O errors, [`CertError::Pem`] if `ca.pem` or `ca.key` holds no usable certificate or key
/// or they do not belong together, [`CertError::OutsideCa`] naming the names and addresses
/// the CA may not vouch for, [`CertError::Generate`] if they do not parse as a CA and its key.
pub fn renew_server(dir: &Path, names: &Names) -> Result<Generated, CertError> {
    renew_server_at(dir, names, Issue::now())
}

/// [`renew_server`], issued at `issue.now` with `issue.server_validity`.
///
/// # Errors
/// As [`renew_server`].
pub fn renew_server_at(dir: &Path, names: &Names, issue: Issue) -> Result<Generated, CertError> {
    let ca_path = dir.join(CA_CERT);
    let ca_pem = fs::read_to_string(&ca_path).map_err(io_err(&ca_path))?;
    let ca_der = load_certs(&ca_path)?.remove(0);
    let key_path = dir.join(CA_KEY);
    let key_pem =
        zeroize::Zeroizing::new(fs::read_to_string(&key_path).map_err(io_err(&key_path))?);
    let ca_key = KeyPair::from_pem(&key_pem).map_err(|e| CertError::Pem {
        path: key_path.clone(),
        detail: format!("no usable CA key: {e}"),
    })?;
    let server = server_params(names, issue)?;
    // A certificate for a name the CA may not vouch for would be refused by every client:
    // refused here, before anything is written. (A CA without name constraints, made by an
    // earlier version, may vouch for anything.)
    if let Some(scope) = CaScope::of_ca(&ca_der, &ca_path)? {
        let (dns, ips) = all_names(names);
        let outside = scope.outside(&dns, &ips);
        if !outside.is_empty() {
            return Err(CertError::OutsideCa {
                ca: ca_path,
                names: outside,
                scope: scope.to_string(),
            });
        }
    }
    let issuer = Issuer::from_ca_cert_der(&ca_der, &ca_key)?;
    issue_server(dir, server, &issuer, &ca_pem, &ca_der)
}

/// The DNS names and addresses a server certificate for `names` covers: the defaults, then
/// `names`, each once.
fn all_names(names: &Names) -> (Vec<String>, Vec<IpAddr>) {
    let mut dns: Vec<String> = DEFAULT_DNS_NAMES.iter().map(|s| s.to_string()).collect();
    for name in &names.dns {
        if !dns.contains(name) {
            dns.push(name.clone());
        }
    }
    let mut ips: Vec<IpAddr> = DEFAULT_IPS.to_vec();
    for ip in &names.ips {
        if !ips.contains(ip) {
            ips.push(*ip);
        }
    }
    (dns, ips)
}

/// A server certificate's parameters for the default names plus `names`, and the list of
/// what it covers.
fn server_params(
    names: &Names,
    issue: Issue,
) -> Result<(CertificateParams, Vec<String>), CertError> {
    let (dns, ips) = all_names(names);
    let mut server_params = CertificateParams::default();
    server_params.distinguished_name = DistinguishedName::new();
    server_params
        .distinguished_name
        .push(DnType::CommonName, "Multi-Messenger server");
    for name in &dns {
        let ia5 = name
            .clone()
            .try_into()
            .map_err(|_| CertError::InvalidName(name.clone()))?;
        server_params.subject_alt_names.push(SanType::DnsName(ia5));
    }
    for ip in &ips {
        server_params
            .subject_alt_names
            .push(SanType::IpAddress(*ip));
    }
    server_params.is_ca = IsCa::NoCa;
    server_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    server_params.not_before = issue.now - BACKDATE;
    server_params.not_after = server_params.not_before + issue.server_validity;
    let mut covers = dns;
    covers.extend(ips.iter().map(IpAddr::to_string));
    Ok((server_params, covers))
}

/// Signs `server` with `issuer` and replaces `server.key` and `server.pem` (the certificate
/// followed by `ca_pem`) in `dir` with the new pair ([`commit_server_pair`]).
fn issue_server(
    dir: &Path,
    (server_params, covers): (CertificateParams, Vec<String>),
    issuer: &Issuer<'_, &KeyPair>,
    ca_pem: &str,
    ca_der: &[u8],
) -> Result<Generated, CertError> {
    let server_key = KeyPair::generate()?;
    let server_cert = server_params.signed_by(&server_key, issuer)?;
    if !issued_by(server_cert.der(), ca_der) {
        // rcgen signs with whatever key it is given: catch a ca.key from another CA here,
        // before it replaces a working certificate with one no client accepts.
        return Err(CertError::Pem {
            path: dir.join(CA_KEY),
            detail: format!("this key does not belong to the CA in {CA_CERT}"),
        });
    }
    let key_pem = zeroize::Zeroizing::new(server_key.serialize_pem());
    let chain = format!("{}{}", server_cert.pem(), ca_pem);
    commit_server_pair(dir, key_pem.as_bytes(), chain.as_bytes())?;
    Ok(Generated {
        ca_cert: dir.join(CA_CERT),
        server_cert: dir.join(SERVER_CERT),
        ca_fingerprint: fingerprint(ca_der),
        covers,
    })
}

/// Replaces `server.key` and `server.pem` in `dir` with `key_pem` and `chain` as a pair.
///
/// The rule, which [`finish_pending`] relies on:
///
/// 1. `server.key.new`, then `server.pem.new`, are written (each complete and synced, or not
///    there at all: [`write_secret`]). Any failure here removes both: the old pair is
///    untouched.
/// 2. Once `server.pem.new` exists the pair is *committed*: `server.key.new` is renamed over
///    `server.key`, then `server.pem.new` over `server.pem`, the directory synced after each so
///    that a crash cannot reorder them. A crash or failure in this step leaves the new
///    certificate under its pending name, next to its key or its pending key;
///    [`finish_pending`] puts it in place at the next start.
fn commit_server_pair(dir: &Path, key_pem: &[u8], chain: &[u8]) -> Result<(), CertError> {
    let (key, cert) = (dir.join(SERVER_KEY), dir.join(SERVER_CERT));
    let (key_new, cert_new) = (dir.join(SERVER_KEY_PENDING), dir.join(SERVER_CERT_PENDING));
    let written = write_secret(&key_new, key_pem)
        .and_then(|()| write_secret(&cert_new, chain))
        .and_then(|()| sync_dir(dir));
    if let Err(e) = written {
        // Not committed: the old pair stays. (A pending key left here because even removing
        // it failed is removed by `finish_pending`.)
        let _ = fs::remove_file(&cert_new);
        let _ = fs::remove_file(&key_new);
        return Err(e);
    }
    rename_synced(&key_new, &key, dir)?;
    rename_synced(&cert_new, &cert, dir).map_err(|e| CertError::Unfinished {
        dir: dir.to_path_buf(),
        cause: e.to_string(),
    })
}

/// Renames `from` to `to` in `dir` and syncs `dir`, so that the rename is on disk before
/// anything that follows.
fn rename_synced(from: &Path, to: &Path, dir: &Path) -> Result<(), CertError> {
    fs::rename(from, to).map_err(io_err(to))?;
    sync_dir(dir)
}

/// Makes the directory's entries (renames, new files) durable. Not possible off Unix, where
/// directories cannot be opened; there the rename order is all there is.
fn sync_dir(dir: &Path) -> Result<(), CertError> {
    #[cfg(unix)]
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// What [`finish_pending`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Pending {
    /// No pending files: nothing was interrupted.
    None,
    /// A committed pair was half in place; it now is in place.
    Completed,
    /// A pending key whose certificate was never written (an interrupted write) was removed;
    /// the pair in place is the one from before.
    RolledBack,
    /// A pending certificate that goes with no key here (not written by the commit rule: a
    /// hand edit) was removed.
    Discarded,
}

/// Completes or rolls back a replacement of `server.key` and `server.pem` that was interrupted
/// (a crash, a full disk, an I/O error), following the rule of the commit
/// ([`renew_server`], [`generate`]):
///
/// - `server.pem.new` is there: the commit point was reached. If `server.key.new` is there too
///   (neither rename happened) and belongs to it, both are renamed into place, key first; if
///   only `server.pem.new` is left and belongs to `server.key` (the key was renamed already),
///   it is renamed into place. A `server.pem.new` that belongs to neither key is removed.
/// - Only `server.key.new` is there: the certificate was never written, so the commit did not
///   happen; it is removed and the old pair stays. (If it belongs to `server.pem`, the two
///   renames were somehow reordered, and it is put in place instead.)
///
/// After this, no pending file is left. Called by `mm-server` at start and by `mm-certs`
/// before anything else.
///
/// # Errors
/// I/O errors while renaming or removing.
pub fn finish_pending(dir: &Path) -> Result<Pending, CertError> {
    let (key, cert) = (dir.join(SERVER_KEY), dir.join(SERVER_CERT));
    let (key_new, cert_new) = (dir.join(SERVER_KEY_PENDING), dir.join(SERVER_CERT_PENDING));
    let (has_key_new, has_cert_new) = (key_new.is_file(), cert_new.is_file());
    let remove = |path: &Path| fs::remove_file(path).map_err(io_err(path));
    match (has_key_new, has_cert_new) {
        (false, false) => Ok(Pending::None),
        (true, true) if pair_matches(&cert_new, &key_new) => {
            rename_synced(&key_new, &key, dir)?;
            rename_synced(&cert_new, &cert, dir)?;
            Ok(Pending::Completed)
        }
        (true, true) => {
            remove(&cert_new)?;
            remove(&key_new)?;
            sync_dir(dir)?;
            Ok(Pending::Discarded)
        }
        (false, true) if pair_matches(&cert_new, &key) => {
            rename_synced(&cert_new, &cert, dir)?;
            Ok(Pending::Completed)
        }
        (false, true) => {
            remove(&cert_new)?;
            sync_dir(dir)?;
            Ok(Pending::Discarded)
        }
        (true, false) if pair_matches(&cert, &key_new) => {
            rename_synced(&key_new, &key, dir)?;
            Ok(Pending::Completed)
        }
        (true, false) => {
            remove(&key_new)?;
            sync_dir(dir)?;
            Ok(Pending::RolledBack)
        }
    }
}

/// Whether the first certificate in `cert_path` is the certificate of the key in `key_path`
/// (`false` if either does not load, or the key is of a kind rcgen does not read).
pub fn pair_matches(cert_path: &Path, key_path: &Path) -> bool {
    let Ok(certs) = load_certs(cert_path) else {
        return false;
    };
    let Ok(key_pem) = fs::read_to_string(key_path).map(zeroize::Zeroizing::new) else {
        return false;
    };
    let Ok(key) = KeyPair::from_pem(&key_pem) else {
        return false;
    };
    certs.first().is_some_and(|der| {
        x509_parser::parse_x509_certificate(der).is_ok_and(|(_, cert)| {
            cert.public_key().subject_public_key.data.as_ref() == key.public_key_raw()
        })
    })
}

/// What a certificate says about itself, as far as renewing it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// Valid from.
    pub not_before: time::OffsetDateTime,
    /// Valid until.
    pub not_after: time::OffsetDateTime,
    /// The DNS names and IP addresses it covers (subject alternative names).
    pub names: Names,
}

impl CertInfo {
    /// Reads a DER certificate.
    ///
    /// # Errors
    /// [`CertError::Pem`] naming `path` (where the certificate came from) if it does not parse.
    pub fn parse(der: &[u8], path: &Path) -> Result<CertInfo, CertError> {
        use x509_parser::extensions::GeneralName;
        let bad = |detail: String| CertError::Pem {
            path: path.to_path_buf(),
            detail,
        };
        let (_, cert) = x509_parser::parse_x509_certificate(der)
            .map_err(|e| bad(format!("unreadable certificate: {e}")))?;
        let time = |t: &x509_parser::time::ASN1Time| {
            time::OffsetDateTime::from_unix_timestamp(t.timestamp())
                .map_err(|e| bad(format!("certificate date out of range: {e}")))
        };
        let validity = cert.validity();
        let mut names = Names::default();
        let san = cert
            .subject_alternative_name()
            .map_err(|e| bad(format!("unreadable subject alternative names: {e}")))?;
        for name in san.iter().flat_map(|san| san.value.general_names.iter()) {
            match name {
                GeneralName::DNSName(dns) => names.dns.push((*dns).to_owned()),
                GeneralName::IPAddress(bytes) => {
                    if let Ok(v4) = <[u8; 4]>::try_from(*bytes) {
                        names.ips.push(IpAddr::from(v4));
                    } else if let Ok(v6) = <[u8; 16]>::try_from(*bytes) {
                        names.ips.push(IpAddr::from(v6));
                    }
                }
                _ => {}
            }
        }
        Ok(CertInfo {
            not_before: time(&validity.not_before)?,
            not_after: time(&validity.not_after)?,
            names,
        })
    }

    /// Whether it has less than [`RENEW_BEFORE`] left at `now` (or has run out).
    pub fn due(&self, now: time::OffsetDateTime) -> bool {
        self.not_after - now < RENEW_BEFORE
    }

    /// Its total validity, `notBefore` to `notAfter`.
    pub fn validity(&self) -> time::Duration {
        self.not_after - self.not_before
    }

    /// Whether it is valid longer than [`SERVER_VALIDITY`] (397 days) in all: what versions
    /// before 397-day certificates made (five years). Browsers refuse server certificates
    /// valid over 398 days, so such a certificate is replaced as if it were about to run out.
    pub fn too_long(&self) -> bool {
        self.validity() > SERVER_VALIDITY
    }

    /// Why a server certificate should be replaced at `now`, if it should: it runs out soon
    /// ([`CertInfo::due`], said first: it is the more urgent), or it is valid too long
    /// ([`CertInfo::too_long`]).
    pub fn renewal(&self, now: time::OffsetDateTime) -> Option<Renewal> {
        if self.due(now) {
            Some(Renewal::Expiring)
        } else if self.too_long() {
            Some(Renewal::TooLong {
                days: self.validity().whole_days(),
            })
        } else {
            None
        }
    }
}

/// Why a server certificate is replaced: see [`CertInfo::renewal`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Renewal {
    /// Fewer than [`RENEW_BEFORE`] left, or run out.
    Expiring,
    /// Valid longer than [`SERVER_VALIDITY`] in all.
    TooLong {
        /// Its total validity, in whole days.
        days: i64,
    },
}

impl std::fmt::Display for Renewal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Renewal::Expiring => write!(
                f,
                "fewer than {} days left",
                RENEW_BEFORE.whole_days()
            ),
            Renewal::TooLong { days } => write!(
                f,
                "valid longer than {} days; browsers refuse such certificates (this one is valid {days} days in all)",
                SERVER_VALIDITY.whole_days()
            ),
        }
    }
}

/// Whether the DER certificate `cert` carries a valid signature by the CA certificate `ca`
/// (`false` for anything that does not parse).
pub fn issued_by(cert: &[u8], ca: &[u8]) -> bool {
    let (Ok((_, cert)), Ok((_, ca))) = (
        x509_parser::parse_x509_certificate(cert),
        x509_parser::parse_x509_certificate(ca),
    ) else {
        return false;
    };
    cert.issuer() == ca.subject() && cert.verify_signature(Some(ca.public_key())).is_ok()
}

/// `YYYY-MM-DD` (UTC), for messages about expiry.
pub fn date(t: time::OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!("{:04}-{:02}-{:02}", t.year(), u8::from(t.month()), t.day())
}

/// What [`ensure_server_files`] found or did.
#[derive(Debug, Clone)]
pub enum Ensured {
    /// The files were there already.
    Existing,
    /// They were missing and have been generated.
    Generated(Generated),
}

/// Makes sure `dir` holds a server certificate and key: loads nothing, generates all four files
/// if none of them exists, and refuses to touch a directory that holds only some of them.
///
/// # Errors
/// [`CertError::Incomplete`] for a partial directory; generation errors.
pub fn ensure_server_files(dir: &Path) -> Result<Ensured, CertError> {
    let server_files = [dir.join(SERVER_CERT), dir.join(SERVER_KEY)];
    if server_files.iter().all(|p| p.exists()) {
        return Ok(Ensured::Existing);
    }
    let (present, missing): (Vec<PathBuf>, Vec<PathBuf>) = TLS_FILES
        .iter()
        .map(|f| dir.join(f))
        .partition(|p| p.exists());
    if !present.is_empty() {
        return Err(CertError::Incomplete {
            dir: dir.to_path_buf(),
            present,
            missing,
        });
    }
    generate(dir, &Names::default(), false).map(Ensured::Generated)
}

/// File name of a client's certificate, in the client's home directory.
pub const CLIENT_CERT: &str = "client.pem";
/// File name of a client's private key (0600), beside [`CLIENT_CERT`].
pub const CLIENT_KEY: &str = "client.key";

/// How long a generated client certificate is valid. Servers identify clients by the
/// certificate's fingerprint and do not check its dates, so this only has to be long.
const CLIENT_VALIDITY_DAYS: i64 = 100 * 365;

/// A client's self-signed certificate and its key: what it presents in mutual TLS. Servers
/// identify the account by [`ClientIdentity::fingerprint`].
pub struct ClientIdentity {
    /// The certificate (DER).
    pub cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
}

impl ClientIdentity {
    /// A new key pair and self-signed certificate, in memory only.
    ///
    /// # Errors
    /// [`CertError::Generate`] if rcgen fails.
    pub fn generate() -> Result<ClientIdentity, CertError> {
        Self::generate_pem().map(|(identity, ..)| identity)
    }

    /// [`ClientIdentity::generate`], also giving the certificate and key as PEM text.
    fn generate_pem() -> Result<(ClientIdentity, String, zeroize::Zeroizing<String>), CertError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, "Multi-Messenger client");
        params.is_ca = IsCa::NoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::days(1);
        params.not_after = now + time::Duration::days(CLIENT_VALIDITY_DAYS);
        let cert = params.self_signed(&key)?;
        let key_pem = zeroize::Zeroizing::new(key.serialize_pem());
        let identity = ClientIdentity {
            cert: cert.der().clone(),
            key: PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        };
        Ok((identity, cert.pem(), key_pem))
    }

    /// Loads `client.pem` and `client.key` from `dir`, or generates them there (key 0600) if
    /// neither exists. Returns the identity and whether it was just created.
    ///
    /// # Errors
    /// [`CertError::Incomplete`] if only one of the files exists; I/O and PEM errors.
    pub fn load_or_create(dir: &Path) -> Result<(ClientIdentity, bool), CertError> {
        let (cert_path, key_path) = (dir.join(CLIENT_CERT), dir.join(CLIENT_KEY));
        match (cert_path.exists(), key_path.exists()) {
            (true, true) => {
                let cert = load_certs(&cert_path)?.swap_remove(0);
                let key = load_key(&key_path)?;
                Ok((ClientIdentity { cert, key }, false))
            }
            (false, false) => {
                let (identity, cert_pem, key_pem) = ClientIdentity::generate_pem()?;
                create_private_dir(dir).map_err(io_err(dir))?;
                // Key first, as in `generate`: a crash in between leaves an incomplete pair that
                // the next start reports, never a certificate without its key.
                write_secret(&key_path, key_pem.as_bytes())?;
                write_secret(&cert_path, cert_pem.as_bytes())?;
                Ok((identity, true))
            }
            (cert, _) => {
                let (present, missing) = if cert {
                    (cert_path, key_path)
                } else {
                    (key_path, cert_path)
                };
                Err(CertError::Incomplete {
                    dir: dir.to_path_buf(),
                    present: vec![present],
                    missing: vec![missing],
                })
            }
        }
    }

    /// The private key, for the TLS configuration.
    pub fn key(&self) -> PrivateKeyDer<'static> {
        self.key.clone_key()
    }

    /// SHA-256 fingerprint of the certificate: the account's identity on servers.
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.cert)
    }
}

impl Clone for ClientIdentity {
    fn clone(&self) -> Self {
        ClientIdentity {
            cert: self.cert.clone(),
            key: self.key.clone_key(),
        }
    }
}

impl std::fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientIdentity")
            .field("fingerprint", &self.fingerprint())
            .field("key", &"<redacted>")
            .finish()
    }
}

/// Largest PEM file the programs read (a certificate chain or a key is a few KiB).
pub const MAX_PEM_FILE: u64 = 1024 * 1024;

/// Reads a small file the programs keep (PEM files, known servers, pins), at most `max` bytes.
/// Refuses anything that is not a regular file before opening it, so a FIFO cannot block and
/// `/dev/zero` cannot fill memory.
///
/// # Errors
/// I/O errors; [`std::io::ErrorKind::InvalidInput`] with words for people when the path is
/// not a regular file or holds more than `max` bytes.
pub fn read_limited(path: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read as _;
    let invalid = |why: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, why);
    if !fs::metadata(path)?.is_file() {
        return Err(invalid("not a regular file".into()));
    }
    let mut bytes = Vec::new();
    fs::File::open(path)?
        .take(max.saturating_add(1))
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(invalid(format!("larger than {max} bytes")));
    }
    Ok(bytes)
}

/// Reads every certificate in a PEM file, in order.
///
/// # Errors
/// I/O errors (also for a file that is not a regular file or is over [`MAX_PEM_FILE`]), or
/// [`CertError::Pem`] if the file holds no certificate.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, CertError> {
    let pem = read_limited(path, MAX_PEM_FILE).map_err(io_err(path))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| CertError::Pem {
            path: path.to_path_buf(),
            detail: "not a readable PEM file (damaged, or cut short?)".into(),
        })?;
    if certs.is_empty() {
        return Err(CertError::Pem {
            path: path.to_path_buf(),
            detail: "no certificate found".into(),
        });
    }
    Ok(certs)
}

/// Reads the first private key in a PEM file.
///
/// # Errors
/// I/O errors, or [`CertError::Pem`] if the file holds no key.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, CertError> {
    let pem = zeroize::Zeroizing::new(read_limited(path, MAX_PEM_FILE).map_err(io_err(path))?);
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| CertError::Pem {
        path: path.to_path_buf(),
        detail: format!("no usable private key: {e}"),
    })
}

/// Mode of every directory the programs create (data directory, TLS directory, client home):
/// owner only.
pub const PRIVATE_DIR_MODE: u32 = 0o700;
/// Mode of every file the programs create, public certificates included: owner only. The
/// directories they live in are owner-only anyway, so a looser mode would buy nothing; one rule
/// is easier to check than a list of exceptions.
pub const PRIVATE_FILE_MODE: u32 = 0o600;

/// Sets the process's file-creation mask to 0o077, so that anything created later (by us, by
/// SQLite, by a library) is owner-only even where no mode is given. Each program calls it first
/// thing; the explicit modes below are the rule, this is the backstop. Does nothing off Unix.
pub fn restrict_umask() {
    #[cfg(unix)]
    {
        rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    }
}

/// Creates `dir` and its missing parents, each private (0700) from the start. An existing
/// directory is left as it is (see [`tighten`]). Shared with the client, whose home holds keys
/// too.
///
/// # Errors
/// I/O errors.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(PRIVATE_DIR_MODE);
    }
    builder.create(dir).map_err(|e| {
        // `File exists` for a path that is a file (or under one) says nothing useful.
        if e.kind() == std::io::ErrorKind::AlreadyExists
            || e.kind() == std::io::ErrorKind::NotADirectory
        {
            std::io::Error::new(
                e.kind(),
                "exists and is not a directory (or is inside a file)",
            )
        } else {
            e
        }
    })?;
    // The mode given is filtered by the umask; make sure of it (a umask never loosens it).
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(dir, fs::Permissions::from_mode(PRIVATE_DIR_MODE))?;
    }
    Ok(())
}

/// Creates `path` as an empty private (0600) file if it does not exist, so that whatever opens
/// it next (SQLite, which gives its `-wal` and `-shm` files the mode of the database file) finds
/// it private. An existing file is left as it is (see [`tighten`]). Returns whether it was
/// created.
///
/// # Errors
/// I/O errors other than the file existing already.
pub fn create_private_file(path: &Path) -> std::io::Result<bool> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(PRIVATE_FILE_MODE);
    }
    match options.open(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e),
    }
}

/// What [`tighten`] found about one directory or file whose mode let others in.
#[derive(Debug)]
pub enum ModeChange {
    /// The mode was looser than private and is now `to`.
    Tightened {
        /// The directory or file.
        path: PathBuf,
        /// Its mode before (permission bits).
        from: u32,
        /// Its mode now.
        to: u32,
    },
    /// The mode is looser than private and could not be changed (e.g. another user owns it):
    /// the caller warns.
    Failed {
        /// The directory or file.
        path: PathBuf,
        /// Its mode (permission bits).
        mode: u32,
        /// Why it could not be changed.
        error: std::io::Error,
    },
}

impl std::fmt::Display for ModeChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ModeChange::Tightened { path, from, to } => write!(
                f,
                "tightened the permissions of {} from {from:04o} to {to:04o} (readable by others before)",
                path.display()
            ),
            ModeChange::Failed { path, mode, error } => write!(
                f,
                "{} has mode {mode:04o} (others can read it) and could not be made private: {}; \
                 fix it with chmod go-rwx",
                path.display(),
                mm_common::text::os_words(error)
            ),
        }
    }
}

/// Makes `dir` private (0700) and the files `names` in it private (0600) where their modes let
/// group or others in, keeping the owner's bits. Used at start on directories and files an
/// older version (or a umask) left readable. Only what the program keeps there is touched: the
/// directory itself and the files named; symbolic links and missing files are skipped.
///
/// Returns one entry per directory or file that was looser than private (nothing when all is
/// well, always nothing off Unix).
pub fn tighten(dir: &Path, names: &[&str]) -> Vec<ModeChange> {
    let mut changes = Vec::new();
    #[cfg(unix)]
    {
        tighten_one(dir, true, &mut changes);
        for name in names {
            tighten_one(&dir.join(name), false, &mut changes);
        }
    }
    #[cfg(not(unix))]
    let _ = (dir, names);
    changes
}

#[cfg(unix)]
fn tighten_one(path: &Path, want_dir: bool, changes: &mut Vec<ModeChange>) {
    use std::os::unix::fs::PermissionsExt;
    // Not followed: a link may point anywhere, and its target is not ours to change.
    let Ok(meta) = fs::symlink_metadata(path) else {
        return;
    };
    let kind_ok = if want_dir {
        meta.is_dir()
    } else {
        meta.is_file()
    };
    let mode = meta.permissions().mode() & 0o777;
    if !kind_ok || mode & 0o077 == 0 {
        return;
    }
    let to = mode & 0o700;
    changes.push(
        match fs::set_permissions(path, fs::Permissions::from_mode(to)) {
            Ok(()) => ModeChange::Tightened {
                path: path.to_path_buf(),
                from: mode,
                to,
            },
            Err(error) => ModeChange::Failed {
                path: path.to_path_buf(),
                mode,
                error,
            },
        },
    );
}

/// Writes a file readable only by its owner (0600), atomically: a temporary file in the same
/// directory, created 0600 from the start (never readable by others, even for a moment), then
/// renamed over the target. Every file the programs write goes through here (certificates
/// too: see [`PRIVATE_FILE_MODE`]).
///
/// # Errors
/// I/O errors.
pub fn write_secret(path: &Path, contents: &[u8]) -> Result<(), CertError> {
    write_atomic(path, contents, PRIVATE_FILE_MODE)
}

fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<(), CertError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let result = (|| {
        let mut file = options.open(&tmp)?;
        // `mode` only applies to a file the call creates; make sure a stale temp file is tightened.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            file.set_permissions(fs::Permissions::from_mode(mode))?;
        }
        file.write_all(contents)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(io_err(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn renewal_keeps_the_ca_and_replaces_the_server_certificate_and_key() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let first = generate(dir, &Names::default(), false).unwrap();
        let ca_before = fs::read(dir.join(CA_CERT)).unwrap();
        let ca_key_before = fs::read(dir.join(CA_KEY)).unwrap();
        let chain_before = load_certs(&dir.join(SERVER_CERT)).unwrap();
        let key_before = fs::read(dir.join(SERVER_KEY)).unwrap();
        let names = Names {
            // A LAN name: within what the CA may vouch for (`CaScope`).
            dns: vec!["renewed.lan".into()],
            ips: vec![],
        };
        let renewed = renew_server(dir, &names).unwrap();
        assert_eq!(renewed.ca_fingerprint, first.ca_fingerprint);
        assert!(renewed.covers.contains(&"renewed.lan".to_string()));
        assert_eq!(fs::read(dir.join(CA_CERT)).unwrap(), ca_before);
        assert_eq!(fs::read(dir.join(CA_KEY)).unwrap(), ca_key_before);
        let chain = load_certs(&dir.join(SERVER_CERT)).unwrap();
        assert_eq!(chain.len(), 2);
        assert_ne!(chain[0], chain_before[0]);
        assert_eq!(chain[1], load_certs(&dir.join(CA_CERT)).unwrap()[0]);
        assert_ne!(fs::read(dir.join(SERVER_KEY)).unwrap(), key_before);
        #[cfg(unix)]
        assert_eq!(mode(&dir.join(SERVER_KEY)), 0o600);

        // Refusals write nothing.
        let chain_now = fs::read(dir.join(SERVER_CERT)).unwrap();
        let bad_name = Names {
            dns: vec!["b\u{fc}cher.example".into()],
            ips: vec![],
        };
        assert!(renew_server(dir, &bad_name).is_err());
        fs::write(dir.join(CA_KEY), "damaged").unwrap();
        assert!(matches!(
            renew_server(dir, &Names::default()),
            Err(CertError::Pem { .. })
        ));
        assert_eq!(fs::read(dir.join(SERVER_CERT)).unwrap(), chain_now);
        let empty = tempfile::tempdir().unwrap();
        assert!(matches!(
            renew_server(empty.path(), &Names::default()),
            Err(CertError::Io { .. })
        ));
    }

    /// A CA, key and server pair in `dir` as versions before name constraints made them: the
    /// CA may vouch for any name.
    fn unconstrained_ca(dir: &Path) {
        create_private_dir(dir).unwrap();
        let ca_key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, "Multi-Messenger CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = params.self_signed(&ca_key).unwrap();
        write_secret(&dir.join(CA_KEY), ca_key.serialize_pem().as_bytes()).unwrap();
        write_secret(&dir.join(CA_CERT), ca.pem().as_bytes()).unwrap();
        let issuer = Issuer::new(params, &ca_key);
        let server = server_params(&Names::default(), Issue::now()).unwrap();
        issue_server(dir, server, &issuer, &ca.pem(), ca.der()).unwrap();
    }

    /// A certificate for `dns` and `ips` signed by the CA in `dir` with its key, made directly
    /// (as a thief of `ca.key` would, past every check of this crate).
    fn forged(dir: &Path, dns: &[&str], ips: &[IpAddr]) -> CertificateDer<'static> {
        let ca_der = load_certs(&dir.join(CA_CERT)).unwrap().remove(0);
        let ca_key = KeyPair::from_pem(&fs::read_to_string(dir.join(CA_KEY)).unwrap()).unwrap();
        let issuer = Issuer::from_ca_cert_der(&ca_der, &ca_key).unwrap();
        let mut params = CertificateParams::default();
        for name in dns {
            params
                .subject_alt_names
                .push(SanType::DnsName((*name).try_into().unwrap()));
        }
        for ip in ips {
            params.subject_alt_names.push(SanType::IpAddress(*ip));
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate().unwrap();
        params.signed_by(&key, &issuer).unwrap().der().clone()
    }

    /// What `mm` checks once the CA is pinned: rustls' webpki verifier with the CA in `dir` as
    /// the only root, for the server name `name`.
    fn webpki_verifies(dir: &Path, cert: &CertificateDer<'_>, name: &str) -> Result<(), String> {
        use rustls::client::danger::ServerCertVerifier;
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(load_certs(&dir.join(CA_CERT)).unwrap().remove(0))
            .unwrap();
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            std::sync::Arc::new(roots),
            std::sync::Arc::new(rustls::crypto::ring::default_provider()),
        )
        .build()
        .unwrap();
        let name = rustls_pki_types::ServerName::try_from(name.to_owned()).unwrap();
        verifier
            .verify_server_cert(cert, &[], &name, &[], rustls_pki_types::UnixTime::now())
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn a_generated_ca_may_vouch_only_for_the_server_and_lan_names_critically() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let names = Names {
            dns: vec!["chat.example.org".into(), "box.lan".into()],
            ips: vec![ip("203.0.113.5"), ip("192.168.1.20"), ip("2001:db8::5")],
        };
        generate(dir, &names, false).unwrap();
        let ca_der = load_certs(&dir.join(CA_CERT)).unwrap().remove(0);
        let (_, parsed) = x509_parser::parse_x509_certificate(&ca_der).unwrap();
        let extension = parsed.name_constraints().unwrap().unwrap();
        assert!(extension.critical, "name constraints must be critical");
        // No mailbox: the only e-mail subtree is the reserved `.invalid`.
        let emails: Vec<String> = extension
            .value
            .permitted_subtrees
            .iter()
            .flatten()
            .filter_map(|s| match &s.base {
                x509_parser::extensions::GeneralName::RFC822Name(m) => Some((*m).to_owned()),
                _ => None,
            })
            .collect();
        assert_eq!(emails, [".invalid"]);
        // Server authentication only (S/MIME, code signing refused by verifiers that chain it).
        let eku = parsed.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.server_auth);
        assert!(!eku.client_auth && !eku.code_signing && !eku.email_protection && !eku.any);
        let scope = CaScope::of_ca(&ca_der, &dir.join(CA_CERT))
            .unwrap()
            .unwrap();
        assert!(scope.is_limited());
        assert!(ca_is_limited(&dir.join(CA_CERT)).unwrap());
        // Exactly: box.lan is under lan; 192.168.1.20 and ::1 are in LAN ranges.
        let dns: Vec<String> = scope
            .permitted
            .iter()
            .filter(|s| matches!(s, Subtree::Dns(_)))
            .map(Subtree::to_string)
            .collect();
        assert_eq!(
            dns,
            [
                "localhost",
                "chat.example.org",
                "local",
                "lan",
                "home.arpa",
                "internal"
            ]
        );
        let ips: Vec<String> = scope
            .permitted
            .iter()
            .filter(|s| matches!(s, Subtree::Ip { .. }))
            .map(Subtree::to_string)
            .collect();
        assert_eq!(
            ips,
            [
                "127.0.0.0/8",
                "10.0.0.0/8",
                "172.16.0.0/12",
                "192.168.0.0/16",
                "169.254.0.0/16",
                "100.64.0.0/10",
                "::1/128",
                "fc00::/7",
                "fe80::/10",
                "203.0.113.5/32",
                "2001:db8::5/128"
            ]
        );
        assert!(scope.excluded.is_empty());
        for name in [
            "localhost",
            "chat.example.org",
            "CHAT.example.org.",
            "x.chat.example.org",
            "printer.local",
            "nas.home.arpa",
            "svc.internal",
            "box.lan",
        ] {
            assert!(scope.permits_dns(name), "{name}");
        }
        for name in [
            "example.org",
            "example.com",
            "evil-chat.example.org",
            "lan.example.com",
            "internal.com",
            "org",
        ] {
            assert!(!scope.permits_dns(name), "{name}");
        }
        for addr in [
            "127.0.0.1",
            "10.9.8.7",
            "172.31.255.255",
            "192.168.200.1",
            "169.254.1.1",
            "100.127.0.1",
            "203.0.113.5",
            "::1",
            "fd12::1",
            "fe80::1",
            "2001:db8::5",
        ] {
            assert!(scope.permits_ip(ip(addr)), "{addr}");
        }
        for addr in [
            "8.8.8.8",
            "172.32.0.1",
            "203.0.113.6",
            "100.128.0.1",
            "2001:db8::6",
            "::ffff:8.8.8.8",
            "0.0.0.0",
        ] {
            assert!(!scope.permits_ip(ip(addr)), "{addr}");
        }
        // A wildcard name permits its suffix; never a whole top-level domain, nor everything.
        let wild = CaScope::for_names(&Names {
            dns: vec![
                "*.chat.example.org".into(),
                "*.org".into(),
                "".into(),
                ".".into(),
            ],
            ips: vec![],
        });
        assert!(wild.permits_dns("a.chat.example.org") && wild.permits_dns("chat.example.org"));
        assert!(!wild.permits_dns("example.org") && !wild.permits_dns("bank.org"));
        assert!(!wild.permits_dns("example.com"));
        // The defaults alone (mm-server's first start): nothing public at all.
        let defaults = CaScope::for_names(&Names::default());
        assert!(defaults.is_limited());
        assert!(!defaults.permits_dns("chat.example.org"));
        assert!(defaults.permits_dns("localhost") && defaults.permits_ip(ip("127.0.0.1")));
        let words = defaults.to_string();
        assert!(
            words.contains("localhost, local, lan, home.arpa, internal"),
            "{words}"
        );
        assert!(words.contains("192.168.0.0/16"), "{words}");
    }

    #[test]
    fn webpki_accepts_the_servers_names_and_refuses_other_websites_signed_by_the_ca_key() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let names = Names {
            dns: vec!["chat.example.org".into()],
            ips: vec![ip("203.0.113.5")],
        };
        generate(dir, &names, false).unwrap();
        let server = load_certs(&dir.join(SERVER_CERT)).unwrap().remove(0);
        for name in [
            "localhost",
            "chat.example.org",
            "127.0.0.1",
            "::1",
            "203.0.113.5",
        ] {
            webpki_verifies(dir, &server, name).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        // A LAN name or address the server may move to, signed with the CA key directly.
        let lan = forged(dir, &["printer.lan"], &[ip("192.168.1.20")]);
        webpki_verifies(dir, &lan, "printer.lan").unwrap();
        webpki_verifies(dir, &lan, "192.168.1.20").unwrap();
        // Anything else public, signed with the stolen CA key: refused by the verifier itself.
        for (dns, ips, name) in [
            (&["example.com"][..], &[][..], "example.com"),
            (&["www.bank.example"][..], &[][..], "www.bank.example"),
            (
                &["evil-chat.example.org"][..],
                &[][..],
                "evil-chat.example.org",
            ),
            (&[][..], &[ip("8.8.8.8")][..], "8.8.8.8"),
            (&[][..], &[ip("203.0.113.6")][..], "203.0.113.6"),
            (&[][..], &[ip("2001:db8::1")][..], "2001:db8::1"),
            // One outside name spoils the whole certificate.
            (
                &["chat.example.org", "example.com"][..],
                &[][..],
                "chat.example.org",
            ),
        ] {
            let cert = forged(dir, dns, ips);
            let err = webpki_verifies(dir, &cert, name).unwrap_err();
            assert!(err.contains("NameConstraintViolation"), "{name}: {err}");
        }
        // The same certificate under a CA without name constraints (an earlier version's)
        // passes: the refusal above is the constraints' doing.
        let old = tempfile::tempdir().unwrap();
        unconstrained_ca(old.path());
        webpki_verifies(
            old.path(),
            &forged(old.path(), &["example.com"], &[]),
            "example.com",
        )
        .unwrap();
    }

    #[test]
    fn issuing_for_a_name_outside_the_ca_fails_before_writing_anything() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        generate(dir, &Names::default(), false).unwrap();
        let before: Vec<Vec<u8>> = TLS_FILES
            .iter()
            .map(|f| fs::read(dir.join(f)).unwrap())
            .collect();
        let public = Names {
            dns: vec!["chat.example.org".into(), "box.lan".into()],
            ips: vec![ip("203.0.113.5"), ip("192.168.1.20")],
        };
        let err = renew_server(dir, &public).unwrap_err();
        match &err {
            CertError::OutsideCa { names, .. } => {
                assert_eq!(names, &["chat.example.org", "203.0.113.5"]);
            }
            other => panic!("{other}"),
        }
        let text = err.to_string();
        for words in [
            "chat.example.org, 203.0.113.5",
            "may not vouch",
            "nothing was written",
            "mm-certs --new-ca",
            "--force",
            "must then trust the new one",
            "localhost",
        ] {
            assert!(text.contains(words), "{words}: {text}");
        }
        let after: Vec<Vec<u8>> = TLS_FILES
            .iter()
            .map(|f| fs::read(dir.join(f)).unwrap())
            .collect();
        assert_eq!(after, before);
        assert!(no_pending(dir));
        // The daily renewal with the same names, or a LAN rename, still works.
        renew_server(dir, &Names::default()).unwrap();
        let lan = Names {
            dns: vec!["box.lan".into(), "nas.home.arpa".into()],
            ips: vec![ip("192.168.1.20"), ip("fd00::20")],
        };
        renew_server(dir, &lan).unwrap();
        // A public name given when the CA was made stays renewable.
        let other = tempfile::tempdir().unwrap();
        generate(other.path(), &public, false).unwrap();
        renew_server(other.path(), &public).unwrap();
        // A CA from before name constraints issues anything, as it always did.
        let old = tempfile::tempdir().unwrap();
        unconstrained_ca(old.path());
        assert!(!ca_is_limited(&old.path().join(CA_CERT)).unwrap());
        renew_server(old.path(), &public).unwrap();
    }

    #[test]
    fn browser_steps_lead_with_a_warning_for_a_ca_without_name_constraints() {
        let old = tempfile::tempdir().unwrap();
        unconstrained_ca(old.path());
        let steps = cli::browser_trust(&old.path().join(CA_CERT));
        assert!(steps.starts_with("\nWARNING: "), "{steps}");
        let warning = steps.split("\n\n").next().unwrap();
        for words in [
            "no name constraints",
            "ANY website",
            "mm-certs --new-ca",
            "trust the new",
        ] {
            assert!(warning.contains(words), "{words}: {steps}");
        }
        assert!(steps.contains("Firefox"));
        let new = tempfile::tempdir().unwrap();
        generate(new.path(), &Names::default(), false).unwrap();
        let steps = cli::browser_trust(&new.path().join(CA_CERT));
        assert!(
            !steps.contains("WARNING") && !steps.contains("no name constraints"),
            "{steps}"
        );
        assert!(steps.contains("Firefox"));
    }

    /// A directory with a CA and a server pair, and another pair from the same CA (in a second
    /// directory): what an interrupted replacement leaves, file by file.
    fn old_and_new_pair() -> (tempfile::TempDir, tempfile::TempDir) {
        let tmp = tempfile::tempdir().unwrap();
        generate(tmp.path(), &Names::default(), false).unwrap();
        let other = tempfile::tempdir().unwrap();
        for f in TLS_FILES {
            fs::copy(tmp.path().join(f), other.path().join(f)).unwrap();
        }
        renew_server(other.path(), &Names::default()).unwrap();
        (tmp, other)
    }

    fn pair_on_disk(dir: &Path) -> (Vec<u8>, Vec<u8>) {
        (
            fs::read(dir.join(SERVER_KEY)).unwrap(),
            fs::read(dir.join(SERVER_CERT)).unwrap(),
        )
    }

    fn no_pending(dir: &Path) -> bool {
        !dir.join(SERVER_KEY_PENDING).exists() && !dir.join(SERVER_CERT_PENDING).exists()
    }

    #[test]
    fn an_interrupted_replacement_is_completed_or_rolled_back_never_left_half_done() {
        let copy = |from: &Path, name: &str, to: &Path, as_name: &str| {
            fs::copy(from.join(name), to.join(as_name)).unwrap();
        };
        // Crashed after both pending files were written, before any rename: committed.
        let (dir, new) = old_and_new_pair();
        let (dir, new) = (dir.path(), new.path());
        copy(new, SERVER_KEY, dir, SERVER_KEY_PENDING);
        copy(new, SERVER_CERT, dir, SERVER_CERT_PENDING);
        assert_eq!(finish_pending(dir).unwrap(), Pending::Completed);
        assert_eq!(pair_on_disk(dir), pair_on_disk(new));
        assert!(no_pending(dir));
        assert_eq!(finish_pending(dir).unwrap(), Pending::None, "once");

        // Crashed between the renames: the new key in place, its certificate pending.
        let (dir, new) = old_and_new_pair();
        let (dir, new) = (dir.path(), new.path());
        copy(new, SERVER_KEY, dir, SERVER_KEY);
        copy(new, SERVER_CERT, dir, SERVER_CERT_PENDING);
        assert!(!pair_matches(&dir.join(SERVER_CERT), &dir.join(SERVER_KEY)));
        assert_eq!(finish_pending(dir).unwrap(), Pending::Completed);
        assert_eq!(pair_on_disk(dir), pair_on_disk(new));
        assert!(no_pending(dir));

        // Crashed while writing the certificate: only the pending key. Rolled back.
        let (dir, new) = old_and_new_pair();
        let (dir, new) = (dir.path(), new.path());
        let before = pair_on_disk(dir);
        copy(new, SERVER_KEY, dir, SERVER_KEY_PENDING);
        assert_eq!(finish_pending(dir).unwrap(), Pending::RolledBack);
        assert_eq!(pair_on_disk(dir), before);
        assert!(no_pending(dir));

        // The renames reordered (the certificate in place, its key pending): completed.
        let (dir, new) = old_and_new_pair();
        let (dir, new) = (dir.path(), new.path());
        copy(new, SERVER_CERT, dir, SERVER_CERT);
        copy(new, SERVER_KEY, dir, SERVER_KEY_PENDING);
        assert_eq!(finish_pending(dir).unwrap(), Pending::Completed);
        assert_eq!(pair_on_disk(dir), pair_on_disk(new));

        // A pending certificate that goes with no key here: removed, the pair untouched.
        let (dir, new) = old_and_new_pair();
        let (dir, new) = (dir.path(), new.path());
        let before = pair_on_disk(dir);
        copy(new, SERVER_CERT, dir, SERVER_CERT_PENDING);
        assert_eq!(finish_pending(dir).unwrap(), Pending::Discarded);
        assert_eq!(pair_on_disk(dir), before);
        assert!(no_pending(dir));
        assert!(pair_matches(&dir.join(SERVER_CERT), &dir.join(SERVER_KEY)));
    }

    #[cfg(unix)]
    #[test]
    fn a_renewal_whose_certificate_cannot_be_written_leaves_the_old_pair() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        generate(dir, &Names::default(), false).unwrap();
        let before = pair_on_disk(dir);
        // The certificate's temporary file cannot be created (a directory in the way), after
        // the key was written: as with a full disk between the two.
        let pid = std::process::id();
        for name in [SERVER_CERT, SERVER_CERT_PENDING] {
            fs::create_dir(dir.join(format!(".{name}.tmp{pid}"))).unwrap();
        }
        assert!(renew_server(dir, &Names::default()).is_err());
        assert_eq!(pair_on_disk(dir), before, "the old pair, both files");
        assert!(pair_matches(&dir.join(SERVER_CERT), &dir.join(SERVER_KEY)));
        assert!(no_pending(dir));
        for name in [SERVER_CERT, SERVER_CERT_PENDING] {
            fs::remove_dir(dir.join(format!(".{name}.tmp{pid}"))).unwrap();
        }
        renew_server(dir, &Names::default()).unwrap();
        assert_ne!(pair_on_disk(dir), before);
        assert!(pair_matches(&dir.join(SERVER_CERT), &dir.join(SERVER_KEY)));
        assert!(no_pending(dir));
    }

    #[test]
    fn errors_say_their_cause_once() {
        let tmp = tempfile::tempdir().unwrap();
        let err = load_certs(tmp.path()).unwrap_err();
        assert!(matches!(err, CertError::Io { .. }), "{err}");
        assert!(std::error::Error::source(&err).is_none(), "{err}");
        let generate_err = CertError::from(rcgen::Error::CouldNotParseCertificate);
        assert!(std::error::Error::source(&generate_err).is_none());
    }

    #[test]
    fn certificates_valid_longer_than_397_days_are_renewed_with_the_reason() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let now = time::OffsetDateTime::now_utc();
        let five_years = Issue {
            now,
            server_validity: time::Duration::days(1825),
        };
        generate_at(dir, &Names::default(), false, five_years).unwrap();
        let path = dir.join(SERVER_CERT);
        let info = CertInfo::parse(&load_certs(&path).unwrap()[0], &path).unwrap();
        assert!(!info.due(now));
        assert!(info.too_long());
        let why = info.renewal(now).unwrap();
        assert_eq!(why, Renewal::TooLong { days: 1825 });
        assert!(why
            .to_string()
            .contains("valid longer than 397 days; browsers refuse such certificates"));
        // About to run out says so first.
        let late = info.not_after - time::Duration::days(3);
        assert_eq!(info.renewal(late), Some(Renewal::Expiring));
        // 397 days exactly is fine.
        renew_server_at(dir, &Names::default(), Issue::now()).unwrap();
        let info = CertInfo::parse(&load_certs(&path).unwrap()[0], &path).unwrap();
        assert_eq!(info.validity(), SERVER_VALIDITY);
        assert!(!info.too_long());
        assert_eq!(info.renewal(now), None);
    }

    #[test]
    fn generates_loadable_files_with_private_keys_0600() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("tls");
        let names = Names {
            dns: vec!["chat.example.org".into()],
            ips: vec!["192.0.2.7".parse().unwrap()],
        };
        let generated = generate(&dir, &names, false).unwrap();
        assert!(generated.covers.contains(&"chat.example.org".to_string()));
        assert!(generated.covers.contains(&"192.0.2.7".to_string()));
        assert!(generated.covers.contains(&"::1".to_string()));

        let chain = load_certs(&dir.join(SERVER_CERT)).unwrap();
        assert_eq!(
            chain.len(),
            2,
            "server.pem holds the server certificate and the CA"
        );
        let ca = load_certs(&dir.join(CA_CERT)).unwrap();
        assert_eq!(chain[1], ca[0]);
        assert_eq!(fingerprint(&ca[0]), generated.ca_fingerprint);
        load_key(&dir.join(SERVER_KEY)).unwrap();
        load_key(&dir.join(CA_KEY)).unwrap();
        #[cfg(unix)]
        {
            assert_eq!(mode(&dir.join(SERVER_KEY)), 0o600);
            assert_eq!(mode(&dir.join(CA_KEY)), 0o600);
            assert_eq!(mode(&dir.join(CA_CERT)), 0o600);
            assert_eq!(mode(&dir.join(SERVER_CERT)), 0o600);
            assert_eq!(mode(&dir), 0o700);
        }
        // No temporary files are left behind.
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 4);
    }

    #[cfg(unix)]
    #[test]
    fn private_directories_files_and_tightening() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let nested = tmp.path().join("a").join("b");
        create_private_dir(&nested).unwrap();
        assert_eq!(mode(&tmp.path().join("a")), 0o700, "parents too");
        assert_eq!(mode(&nested), 0o700);
        let db = nested.join("db");
        assert!(create_private_file(&db).unwrap());
        assert_eq!(mode(&db), 0o600);
        fs::write(&db, b"kept").unwrap();
        assert!(
            !create_private_file(&db).unwrap(),
            "an existing file is kept"
        );
        assert_eq!(fs::read(&db).unwrap(), b"kept");

        let chmod =
            |p: &Path, m: u32| fs::set_permissions(p, fs::Permissions::from_mode(m)).unwrap();
        chmod(&nested, 0o755);
        chmod(&db, 0o664);
        let other = nested.join("not-ours");
        fs::write(&other, b"x").unwrap();
        chmod(&other, 0o644);
        std::os::unix::fs::symlink(&other, nested.join("link")).unwrap();
        let changes = tighten(&nested, &["db", "link", "missing"]);
        let found: Vec<(PathBuf, u32, u32)> = changes
            .iter()
            .map(|c| match c {
                ModeChange::Tightened { path, from, to } => (path.clone(), *from, *to),
                ModeChange::Failed { path, error, .. } => panic!("{}: {error}", path.display()),
            })
            .collect();
        assert_eq!(
            found,
            vec![(nested.clone(), 0o755, 0o700), (db.clone(), 0o664, 0o600)]
        );
        assert!(changes[1].to_string().contains("from 0664 to 0600"));
        assert_eq!(
            mode(&other),
            0o644,
            "neither a file not named nor a link's target"
        );
        assert!(tighten(&nested, &["db"]).is_empty(), "nothing left to do");
    }

    #[test]
    fn server_certificates_are_valid_397_days_at_most_and_the_ca_ten_years() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let info = |file: &str| {
            let path = dir.join(file);
            CertInfo::parse(&load_certs(&path).unwrap()[0], &path).unwrap()
        };
        generate(dir, &Names::default(), false).unwrap();
        let (server, ca) = (info(SERVER_CERT), info(CA_CERT));
        assert!(server.not_after - server.not_before <= time::Duration::days(397));
        assert_eq!(server.not_after - server.not_before, SERVER_VALIDITY);
        assert!(ca.not_after - ca.not_before >= time::Duration::days(3650));
        assert!(!server.due(time::OffsetDateTime::now_utc()));
        renew_server(dir, &Names::default()).unwrap();
        let renewed = info(SERVER_CERT);
        assert_eq!(renewed.not_after - renewed.not_before, SERVER_VALIDITY);
        assert_eq!(info(CA_CERT), ca, "renewing leaves the CA alone");

        // Issued at another time, for another period (tests renew without waiting a year).
        let then = time::OffsetDateTime::now_utc() - time::Duration::days(380);
        let issue = Issue {
            now: then,
            server_validity: time::Duration::days(41),
        };
        renew_server_at(dir, &Names::default(), issue).unwrap();
        let short = info(SERVER_CERT);
        assert_eq!(short.not_after - short.not_before, time::Duration::days(41));
        assert!(short.due(time::OffsetDateTime::now_utc()));
        assert!(!short.due(then));
        assert!(issued_by(
            &load_certs(&dir.join(SERVER_CERT)).unwrap()[0],
            &load_certs(&dir.join(CA_CERT)).unwrap()[0]
        ));
        assert_eq!(date(ca.not_before + time::Duration::days(1)).len(), 10);
    }

    #[test]
    fn a_ca_key_from_another_ca_issues_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let other = tempfile::tempdir().unwrap();
        generate(tmp.path(), &Names::default(), false).unwrap();
        generate(other.path(), &Names::default(), false).unwrap();
        let before = fs::read(tmp.path().join(SERVER_CERT)).unwrap();
        fs::copy(other.path().join(CA_KEY), tmp.path().join(CA_KEY)).unwrap();
        let err = renew_server(tmp.path(), &Names::default()).unwrap_err();
        assert!(err.to_string().contains("does not belong"), "{err}");
        assert_eq!(fs::read(tmp.path().join(SERVER_CERT)).unwrap(), before);
    }

    #[test]
    fn refuses_to_overwrite_without_force() {
        let tmp = tempfile::tempdir().unwrap();
        let first = generate(tmp.path(), &Names::default(), false).unwrap();
        let err = generate(tmp.path(), &Names::default(), false).unwrap_err();
        assert!(
            matches!(&err, CertError::Exists(files) if files.len() == 4),
            "{err}"
        );
        assert!(err.to_string().contains("--new-ca"));
        let ca_before = fs::read(tmp.path().join(CA_CERT)).unwrap();
        assert_eq!(
            fingerprint(&load_certs(&first.ca_cert).unwrap()[0]),
            first.ca_fingerprint
        );
        let second = generate(tmp.path(), &Names::default(), true).unwrap();
        assert_ne!(second.ca_fingerprint, first.ca_fingerprint);
        assert_ne!(fs::read(tmp.path().join(CA_CERT)).unwrap(), ca_before);
    }

    #[test]
    fn ensure_generates_once_and_refuses_partial_directories() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(matches!(
            ensure_server_files(tmp.path()).unwrap(),
            Ensured::Generated(_)
        ));
        assert!(matches!(
            ensure_server_files(tmp.path()).unwrap(),
            Ensured::Existing
        ));
        fs::remove_file(tmp.path().join(SERVER_KEY)).unwrap();
        let err = ensure_server_files(tmp.path()).unwrap_err();
        assert!(matches!(err, CertError::Incomplete { .. }), "{err}");
        assert!(
            tmp.path().join(SERVER_CERT).exists(),
            "nothing was overwritten"
        );
    }

    #[test]
    fn garbage_pem_is_a_clear_error() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("x.pem");
        fs::write(&path, b"not a pem").unwrap();
        assert!(matches!(load_certs(&path), Err(CertError::Pem { .. })));
        assert!(matches!(load_key(&path), Err(CertError::Pem { .. })));
        assert!(matches!(
            load_certs(&tmp.path().join("missing")),
            Err(CertError::Io { .. })
        ));
    }

    #[test]
    fn fingerprint_format() {
        let fp = fingerprint(b"abc");
        // SHA-256("abc") = ba7816bf...
        assert!(fp.starts_with("BA:78:16:BF:"), "{fp}");
        assert_eq!(fp.len(), 32 * 3 - 1);
    }

    /// `--home` or `--data` naming a file said `File exists (os error 17)`.
    #[test]
    fn a_directory_that_is_a_file_is_said_so() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("f");
        fs::write(&file, b"x").unwrap();
        for dir in [file.clone(), file.join("sub")] {
            let e = create_private_dir(&dir).unwrap_err();
            assert_eq!(
                mm_common::text::os_words(&e),
                "exists and is not a directory (or is inside a file)"
            );
        }
    }
}
