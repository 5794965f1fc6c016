//! Server configuration: a TOML file (`--config FILE`) in which every field is optional and
//! defaults to the values below. `server/mm-server.example.toml` lists them all (a test keeps it
//! in step with [`Limits::default`]).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// The port mm-server listens on unless told otherwise.
pub use mm_common::protocol::DEFAULT_PORT;

/// Everything the server can be configured with.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address and port to listen on. Default `127.0.0.1:7667` (this machine only); use
    /// `0.0.0.0:7667` to serve a LAN.
    pub bind: SocketAddr,
    /// Directory holding the CA (`ca.pem`, `ca.key`), `server.pem` and `server.key`; a CA and a
    /// server certificate are generated at start when it holds none of them. Default: `tls/` in
    /// `data_dir`.
    pub tls_dir: Option<PathBuf>,
    /// Directory for the store (`mm-server.db`) and, unless `tls_dir` says otherwise, the TLS
    /// files (`tls/`). Default: `$MM_SERVER_DATA`, else `multi-messenger/server` in
    /// `$XDG_DATA_HOME` or `~/.local/share` (`mm_certs::default_server_data_dir`).
    pub data_dir: Option<PathBuf>,
    /// Names to obtain a publicly trusted certificate for from an ACME server
    /// (`--acme-domain`; see `crate::acme`). Empty (the default): the self-made CA and
    /// certificate in `tls_dir`.
    pub acme_domains: Vec<String>,
    /// The ACME server's directory URL. Default: Let's Encrypt's production directory.
    pub acme_directory: Option<String>,
    /// Contacts for the ACME account (`mailto:...`).
    pub acme_contact: Vec<String>,
    /// A CA certificate (PEM) to trust the ACME server's HTTPS with instead of the system's
    /// roots (private ACME servers, tests).
    pub acme_directory_ca: Option<PathBuf>,
    /// The admin listener's address (plain HTTP: `/metrics`, `/healthz`, `/readyz`), or `off`.
    /// Default `127.0.0.1:9464` ([`crate::admin::DEFAULT_ADMIN`]).
    pub admin: Option<String>,
    /// Peers (addresses or networks, `10.0.0.0/8`) whose connections begin with a PROXY
    /// protocol v2 header ([`crate::proxy`]). Default: none.
    pub proxy_protocol_from: Vec<String>,
    /// Where the store is: unset (the default) for `mm-server.db` in `data_dir`, or a
    /// PostgreSQL URL `postgres://USER@HOST:PORT/DB` (without a password; TLS with
    /// verification off loopback, `sslrootcert=FILE` to name the CA). Default:
    /// `$MM_SERVER_STORE`, else SQLite.
    pub store: Option<String>,
    /// A file holding the PostgreSQL store's password (readable by its owner only); else
    /// `$MM_STORE_PASSWORD`, else none.
    pub store_password_file: Option<PathBuf>,
    /// The bus that joins this node to a cluster (CLUSTER.md): `nats://HOST:PORT` or
    /// `tls://HOST:PORT`, or a comma-separated list of servers; no credentials in it. Needs a
    /// PostgreSQL `store`. Default: `$MM_SERVER_BUS`, else none (one server on its own).
    pub bus: Option<String>,
    /// A NATS credentials file (user JWT and nkey seed; readable by its owner only) for the
    /// bus. Needed off loopback.
    pub bus_creds_file: Option<PathBuf>,
    /// CA certificates (PEM) that verify the NATS server; turns TLS on for every bus server.
    /// Default: the system's roots (for `tls://` URLs).
    pub bus_ca_file: Option<PathBuf>,
    /// This node's name in the cluster: 1–64 characters of `A-Z a-z 0-9 . _ : -`. Default:
    /// `HOSTNAME:PORT` (the chat port of `bind`).
    pub node_name: Option<String>,
    /// This node's lease in the store, `"8s"` by default (1 s to 5 min): a node that cannot
    /// renew it closes its sessions; one that died frees its nicks when it runs out.
    #[serde(with = "humantime_serde")]
    pub node_lease: Option<Duration>,
    /// Limits and timeouts.
    pub limits: Limits,
}

/// Where the admin listener listens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminSetting {
    /// Not configured: [`crate::admin::DEFAULT_ADMIN`], and a busy port is only warned about.
    Default,
    /// Disabled (`off`).
    Off,
    /// Configured: a busy address stops the server at start.
    At(SocketAddr),
}

impl AdminSetting {
    /// Reads `--admin`'s or `admin`'s value: `off` or an address and port.
    ///
    /// # Errors
    /// A sentence naming the value.
    pub fn parse(value: &str) -> Result<AdminSetting, String> {
        if value.trim().eq_ignore_ascii_case("off") {
            return Ok(AdminSetting::Off);
        }
        value.trim().parse().map(AdminSetting::At).map_err(|_| {
            format!(
                "admin: {value:?} is neither an address and port (e.g. 127.0.0.1:9464) nor \"off\""
            )
        })
    }
}

impl Config {
    /// The admin listener's setting.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] for a value that is neither `off` nor an address and port.
    pub fn admin_setting(&self) -> Result<AdminSetting, ConfigError> {
        match &self.admin {
            None => Ok(AdminSetting::Default),
            Some(value) => AdminSetting::parse(value).map_err(ConfigError::Invalid),
        }
    }

    /// The trusted proxies.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming an entry that is not an address or network.
    pub fn proxies(&self) -> Result<crate::proxy::Trusted, ConfigError> {
        let list = self
            .proxy_protocol_from
            .iter()
            .map(|s| {
                s.parse::<crate::proxy::Cidr>()
                    .map_err(|e| ConfigError::Invalid(format!("proxy_protocol_from: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(crate::proxy::Trusted::new(list))
    }
}

impl Config {
    /// The bus settings ([`crate::cluster::nats::BusConfig`]), checked, or `None` without
    /// `bus` (one server on its own). `postgres`: whether the store is PostgreSQL;
    /// `hostname`: this machine's name, for the default node name `HOSTNAME:PORT`.
    ///
    /// The `node_*` and `bus_*` fields without `bus` are refused too: they would do nothing.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`], a sentence naming the fix (never a URL's credentials).
    pub fn bus(
        &self,
        postgres: bool,
        hostname: Option<&str>,
    ) -> Result<Option<crate::cluster::nats::BusConfig>, ConfigError> {
        use crate::cluster::nats::{BusConfig, BusSettings};
        let Some(url) = self.bus.as_deref().filter(|u| !u.trim().is_empty()) else {
            let given: Vec<&str> = [
                ("bus_creds_file", self.bus_creds_file.is_some()),
                ("bus_ca_file", self.bus_ca_file.is_some()),
                ("node_name", self.node_name.is_some()),
                ("node_lease", self.node_lease.is_some()),
            ]
            .into_iter()
            .filter_map(|(name, set)| set.then_some(name))
            .collect();
            if given.is_empty() {
                return Ok(None);
            }
            return Err(ConfigError::Invalid(format!(
                "{} given without a bus: they apply to a node of a cluster; add --bus nats://HOST:PORT (bus = \"…\" in --config, or $MM_SERVER_BUS), or leave them out",
                given.join(", ")
            )));
        };
        let host = hostname
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .unwrap_or("localhost");
        let settings = BusSettings {
            url: url.to_owned(),
            creds_file: self.bus_creds_file.clone(),
            ca_file: self.bus_ca_file.clone(),
            node_name: self.node_name.clone(),
            lease: self.node_lease,
        };
        BusConfig::new(&settings, postgres, &format!("{host}:{}", self.bind.port()))
            .map(Some)
            .map_err(ConfigError::Invalid)
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            bind: SocketAddr::from(([127, 0, 0, 1], DEFAULT_PORT)),
            tls_dir: None,
            data_dir: None,
            acme_domains: Vec::new(),
            acme_directory: None,
            acme_contact: Vec::new(),
            acme_directory_ca: None,
            admin: None,
            proxy_protocol_from: Vec::new(),
            store: None,
            store_password_file: None,
            bus: None,
            bus_creds_file: None,
            bus_ca_file: None,
            node_name: None,
            node_lease: None,
            limits: Limits::default(),
        }
    }
}

/// Limits, queue bounds and timeouts. Durations are written like `"10s"` or `"250ms"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Most simultaneous connections (logged in or not). Further connections wait in the
    /// kernel's accept backlog until one ends.
    pub max_connections: usize,
    /// Most simultaneous connections from one IP address (loopback included).
    pub max_connections_per_ip: usize,
    /// Messages a client may send at once before the steady rate applies.
    pub rate_burst: u32,
    /// Messages per second a client may send, sustained.
    pub rate_per_sec: u32,
    /// Refused (over-rate) messages a client may send, refilling at one per second, before it
    /// is disconnected for flooding.
    pub flood_strikes: u32,
    /// Longest chat text in bytes; capped at the protocol's 4096.
    pub max_text_len: usize,
    /// Time allowed for the TLS handshake.
    #[serde(with = "humantime_serde")]
    pub handshake_timeout: Duration,
    /// Time allowed between the end of the TLS handshake and the client's `Hello`.
    #[serde(with = "humantime_serde")]
    pub hello_timeout: Duration,
    /// The server pings a client it has not heard from for this long.
    #[serde(with = "humantime_serde")]
    pub ping_interval: Duration,
    /// A client that sends nothing (not even a pong) for this long is disconnected.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// A write to a client that makes no progress for this long disconnects it.
    #[serde(with = "humantime_serde")]
    pub write_timeout: Duration,
    /// Frames (public and private lines, notices) that may wait for one client before it is
    /// disconnected as too slow. Frames are shared between recipients, so a full queue costs
    /// about 16 bytes per entry plus the frames themselves.
    pub outbound_queue: usize,
    /// Bytes that may wait for one client before it is disconnected as too slow: the encoded
    /// messages themselves, not the 4-byte length each one gets on the wire. At least 64 KiB
    /// (one largest message) whatever is configured.
    pub outbound_queue_bytes: usize,
    /// Join and leave notices are sent only while at most this many users are online; in
    /// larger rooms they stop (clients use `Who`).
    pub presence_max_online: usize,
    /// How long a graceful shutdown waits for clients to receive what is queued for them.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// Public lines kept as history and sent to each client at login (0 keeps none).
    pub history_len: usize,
    /// Private lines that may wait in the store for one offline user; beyond this, senders get
    /// `mailbox-full`.
    pub mailbox_len: usize,
    /// Private lines that may wait in the store for all offline users together: with
    /// `mailbox_len` alone, a flood to many accounts could fill the disk.
    pub mailbox_total: usize,
    /// Most registered nicks. Registration is free, so without a cap a script could fill the
    /// disk with accounts; beyond it, new nicks are refused with `accounts-full` (existing
    /// accounts log in as usual).
    pub max_accounts: usize,
    /// New nicks one client certificate may register per `registrations_per_certificate_period`
    /// (a token bucket: this many at once, then one each period / this many). Beyond it new
    /// nicks are refused with `registration-limit`; logging in to a registered nick is never
    /// limited. One person registers one or two nicks.
    pub registrations_per_certificate: u32,
    /// See `registrations_per_certificate`.
    #[serde(with = "humantime_serde")]
    pub registrations_per_certificate_period: Duration,
    /// New nicks one client address may register per `registrations_per_address_period`, all
    /// certificates together (certificates cost nothing to make; addresses do). IPv6 addresses
    /// count by their /64 network, which one host usually has whole. Loopback included: behind
    /// a proxy on the same machine every client has one address.
    pub registrations_per_address: u32,
    /// See `registrations_per_address`.
    #[serde(with = "humantime_serde")]
    pub registrations_per_address_period: Duration,
    /// Most certificates, and most addresses, whose recent registrations are remembered (in
    /// memory, about 200 bytes each). Beyond it the least recently seen is forgotten: the one
    /// whose allowance has most likely refilled already.
    pub registrations_tracked: usize,
    /// An account that never logs in again after the connection that registered it expires
    /// (it and its waiting messages are deleted) this many days after that connection ended;
    /// 0 keeps every account. Accounts that logged in again never expire.
    pub unused_account_days: u32,
    /// Most rooms (besides `#lobby`) on the server; beyond it, creating one is refused with
    /// `rooms-full`.
    pub max_rooms: usize,
    /// Most rooms one user is a member of (besides `#lobby`): `too-many-rooms` beyond.
    pub max_rooms_per_user: usize,
    /// Most members of one room: `room-full` beyond.
    pub max_room_members: usize,
    /// Rooms one user may create per `room_creations_period` (a token bucket: this many at
    /// once, then one each period / this many): `rooms-full`, with when to try again, beyond.
    pub room_creations_per_user: u32,
    /// See `room_creations_per_user`.
    #[serde(with = "humantime_serde")]
    pub room_creations_period: Duration,
    /// Most lines of room history (all rooms but `#lobby` together) kept in memory; the
    /// histories of rooms nobody online is in are then read from the store when someone
    /// enters. Each line costs its encoded size (~100 bytes for a short line) plus ~40.
    pub history_cache_lines: usize,
    /// Longest room topic, in bytes of UTF-8 (at most the protocol's 1024).
    pub max_topic_len: usize,
    /// Most bans, and most pending invitations, per room.
    pub max_bans_per_room: usize,
    /// A room without members is deleted (with its topic, bans and history) this many days
    /// after it was last active; 0 keeps empty rooms.
    pub room_expiry_days: u32,
    /// Prekey bundles (`FetchBundle`) one account may fetch at once: a token bucket per
    /// account (reconnecting does not refill it), refilled at `bundle_fetches_per_minute`.
    /// Beyond it a fetch is answered `RateLimited` with when to try again. Each answer may use
    /// up one of the target's one-time prekeys, so this bounds how fast anyone drains them.
    pub bundle_fetch_burst: u32,
    /// See `bundle_fetch_burst`.
    pub bundle_fetches_per_minute: u32,
    /// One account gets at most one of another account's one-time prekeys per this period:
    /// fetching the same user's bundle again within it hands out the signed prekey alone (the
    /// last-resort key). 0 turns the rule off.
    #[serde(with = "humantime_serde")]
    pub one_time_prekey_reuse_window: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 10_000,
            max_connections_per_ip: 20,
            rate_burst: 20,
            rate_per_sec: 5,
            flood_strikes: 30,
            max_text_len: mm_common::protocol::MAX_TEXT_LEN,
            handshake_timeout: Duration::from_secs(10),
            hello_timeout: Duration::from_secs(10),
            ping_interval: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(90),
            write_timeout: Duration::from_secs(10),
            outbound_queue: 1024,
            outbound_queue_bytes: 1024 * 1024,
            presence_max_online: 1000,
            shutdown_grace: Duration::from_secs(5),
            history_len: 100,
            mailbox_len: 100,
            max_accounts: 100_000,
            mailbox_total: 1_000_000,
            registrations_per_certificate: 3,
            registrations_per_certificate_period: Duration::from_secs(24 * 3600),
            registrations_per_address: 10,
            registrations_per_address_period: Duration::from_secs(3600),
            registrations_tracked: 10_000,
            unused_account_days: 30,
            max_rooms: 10_000,
            max_rooms_per_user: 50,
            max_room_members: 10_000,
            room_creations_per_user: 5,
            room_creations_period: Duration::from_secs(3600),
            history_cache_lines: 200_000,
            max_topic_len: 390,
            max_bans_per_room: 1000,
            room_expiry_days: 30,
            bundle_fetch_burst: 20,
            bundle_fetches_per_minute: 20,
            one_time_prekey_reuse_window: Duration::from_secs(3600),
        }
    }
}

/// A configuration file that could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {cause}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        cause: std::io::Error,
    },
    /// The file is not valid TOML for this configuration.
    #[error("{path}: {cause}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong, with its location.
        cause: Box<toml::de::Error>,
    },
    /// A value is out of range.
    #[error("{0}")]
    Invalid(String),
}

impl Config {
    /// Reads and checks a configuration file.
    ///
    /// # Errors
    /// [`ConfigError`] if the file cannot be read, parsed or holds impossible values.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            cause: source,
        })?;
        let config: Config = toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_path_buf(),
            cause: Box::new(source),
        })?;
        config.limits.check()?;
        config.admin_setting()?;
        config.proxies()?;
        Ok(config)
    }
}

impl Limits {
    /// Rejects values that would make the server unusable or unbounded.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the field.
    pub fn check(&self) -> Result<(), ConfigError> {
        let nonzero = [
            ("max_connections", self.max_connections),
            ("max_text_len", self.max_text_len),
            ("outbound_queue", self.outbound_queue),
            ("outbound_queue_bytes", self.outbound_queue_bytes),
            ("max_connections_per_ip", self.max_connections_per_ip),
            ("rate_burst", self.rate_burst as usize),
            ("bundle_fetch_burst", self.bundle_fetch_burst as usize),
            (
                "bundle_fetches_per_minute",
                self.bundle_fetches_per_minute as usize,
            ),
            ("rate_per_sec", self.rate_per_sec as usize),
            ("flood_strikes", self.flood_strikes as usize),
            (
                "registrations_per_certificate",
                self.registrations_per_certificate as usize,
            ),
            (
                "registrations_per_address",
                self.registrations_per_address as usize,
            ),
            ("registrations_tracked", self.registrations_tracked),
            ("max_rooms", self.max_rooms),
            ("max_rooms_per_user", self.max_rooms_per_user),
            ("max_room_members", self.max_room_members),
            (
                "room_creations_per_user",
                self.room_creations_per_user as usize,
            ),
            ("max_topic_len", self.max_topic_len),
            ("max_bans_per_room", self.max_bans_per_room),
        ];
        for (name, value) in nonzero {
            if value == 0 {
                return Err(ConfigError::Invalid(format!(
                    "limits.{name} must be at least 1"
                )));
            }
        }
        let durations = [
            ("handshake_timeout", self.handshake_timeout),
            ("hello_timeout", self.hello_timeout),
            ("ping_interval", self.ping_interval),
            ("idle_timeout", self.idle_timeout),
            ("write_timeout", self.write_timeout),
            (
                "registrations_per_certificate_period",
                self.registrations_per_certificate_period,
            ),
            (
                "registrations_per_address_period",
                self.registrations_per_address_period,
            ),
            ("room_creations_period", self.room_creations_period),
        ];
        for (name, value) in durations {
            if value.is_zero() {
                return Err(ConfigError::Invalid(format!(
                    "limits.{name} must be more than 0"
                )));
            }
        }
        // Both are sent in one go at login: bound what one login can cost.
        if self.history_len > 1000 {
            return Err(ConfigError::Invalid(
                "limits.history_len must be at most 1000".into(),
            ));
        }
        if self.max_accounts == 0 || self.mailbox_total == 0 {
            return Err(ConfigError::Invalid(
                "limits.max_accounts and limits.mailbox_total must be at least 1".into(),
            ));
        }
        if !(1..=10_000).contains(&self.mailbox_len) {
            return Err(ConfigError::Invalid(
                "limits.mailbox_len must be 1 to 10000".into(),
            ));
        }
        if self.max_topic_len > mm_common::protocol::MAX_TOPIC_LEN {
            return Err(ConfigError::Invalid(format!(
                "limits.max_topic_len must be at most {}",
                mm_common::protocol::MAX_TOPIC_LEN
            )));
        }
        if self.idle_timeout <= self.ping_interval {
            return Err(ConfigError::Invalid(
                "limits.idle_timeout must be longer than limits.ping_interval".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_file_parses_and_matches_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("mm-server.example.toml");
        let config = Config::from_file(&path).unwrap();
        let defaults = Config::default();
        assert_eq!(config.bind, defaults.bind);
        assert!(config.acme_domains.is_empty() && config.acme_directory.is_none());
        // The commented ACME lines, uncommented, are valid settings.
        let text = std::fs::read_to_string(&path).unwrap();
        let acme: String = text
            .lines()
            .filter_map(|l| l.strip_prefix("# acme_"))
            .map(|l| format!("acme_{l}\n"))
            .collect();
        let parsed: Config = toml::from_str(&acme).unwrap();
        assert_eq!(parsed.acme_domains, ["chat.example.org"]);
        assert_eq!(
            parsed.acme_directory.as_deref(),
            Some(crate::acme::LETS_ENCRYPT)
        );
        assert_eq!(parsed.acme_contact, ["mailto:ops@example.org"]);
        assert!(parsed.acme_directory_ca.is_some());
        assert_eq!(config.admin_setting().unwrap(), AdminSetting::Default);
        assert!(config.proxies().unwrap().is_empty());
        assert_eq!(
            format!("{:?}", config.limits),
            format!("{:?}", defaults.limits)
        );
    }

    #[test]
    fn unknown_fields_and_bad_values_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "[limits]\nmax_conections = 5\n").unwrap();
        let err = Config::from_file(&path).unwrap_err().to_string();
        assert!(err.contains("max_conections"), "{err}");
        std::fs::write(
            &path,
            "[limits]\nidle_timeout = \"1s\"\nping_interval = \"2s\"\n",
        )
        .unwrap();
        assert!(matches!(
            Config::from_file(&path),
            Err(ConfigError::Invalid(_))
        ));
        std::fs::write(&path, "[limits]\noutbound_queue = 0\n").unwrap();
        assert!(matches!(
            Config::from_file(&path),
            Err(ConfigError::Invalid(_))
        ));
        std::fs::write(
            &path,
            "bind = \"0.0.0.0:9000\"\n[limits]\nwrite_timeout = \"250ms\"\n",
        )
        .unwrap();
        let config = Config::from_file(&path).unwrap();
        assert_eq!(config.bind.port(), 9000);
        assert_eq!(config.limits.write_timeout, Duration::from_millis(250));
        // Printed as mm-server prints errors (anyhow's chain), each cause is said once.
        for broken in [dir.path().join("nope"), {
            let bad = dir.path().join("bad.toml");
            std::fs::write(&bad, "bind = 7\n").unwrap();
            bad
        }] {
            let e = Config::from_file(&broken).unwrap_err();
            let shown = format!("{:#}", anyhow::Error::from(e));
            let first = shown.split(": ").last().unwrap_or_default().to_string();
            assert_eq!(shown.matches(first.as_str()).count(), 1, "{shown}");
        }
        assert!(matches!(
            Config::from_file(&dir.path().join("nope")),
            Err(ConfigError::Read { .. })
        ));
        std::fs::write(&path, "admin = \"localhost\"\n").unwrap();
        let err = Config::from_file(&path).unwrap_err().to_string();
        assert!(err.contains("admin"), "{err}");
        std::fs::write(&path, "proxy_protocol_from = [\"10.0.0.0/40\"]\n").unwrap();
        let err = Config::from_file(&path).unwrap_err().to_string();
        assert!(err.contains("proxy_protocol_from"), "{err}");
        std::fs::write(
            &path,
            "admin = \"off\"\nproxy_protocol_from = [\"10.0.0.0/8\", \"::1\"]\n",
        )
        .unwrap();
        let config = Config::from_file(&path).unwrap();
        assert_eq!(config.admin_setting().unwrap(), AdminSetting::Off);
        let proxies = config.proxies().unwrap();
        assert!(proxies.trusts("10.9.8.7".parse().unwrap()));
        assert!(proxies.trusts("::1".parse().unwrap()));
        assert!(!proxies.trusts("127.0.0.1".parse().unwrap()));
    }
}
