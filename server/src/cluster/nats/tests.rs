//! The bus's settings and what `connect` says when it cannot connect. Against a real
//! nats-server: tests/e2e/nats.rs.

use super::*;
use crate::config::{Config, ConfigError};

fn settings(url: &str) -> BusSettings {
    BusSettings {
        url: url.into(),
        ..BusSettings::default()
    }
}

fn refused(settings: &BusSettings, postgres: bool) -> String {
    BusConfig::new(settings, postgres, "box:7667").unwrap_err()
}

/// A file with `text` and, on Unix, `mode`.
fn private_file(dir: &Path, name: &str, text: &str, mode: u32) -> PathBuf {
    let file = dir.join(name);
    std::fs::write(&file, text).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    #[cfg(not(unix))]
    let _ = mode;
    file
}

#[test]
fn a_loopback_bus_is_accepted_with_defaults_and_urls_are_normalised() {
    let cfg = BusConfig::new(
        &settings("nats://127.0.0.1:4222, nats://localhost , nats://[::1]:5000/"),
        true,
        "box:7667",
    )
    .unwrap();
    assert_eq!(
        cfg.urls,
        [
            "nats://127.0.0.1:4222",
            "nats://localhost:4222",
            "nats://[::1]:5000"
        ]
    );
    assert_eq!(cfg.node_name, "box:7667");
    assert_eq!(cfg.lease, DEFAULT_LEASE);
    assert!(!cfg.tls());
    assert_eq!(cfg.creds_file, None);
    // A tls:// URL turns TLS on (for every server of the list).
    let tls = BusConfig::new(&settings("tls://127.0.0.1:4222"), true, "n").unwrap();
    assert!(tls.tls());
}

#[test]
fn a_bus_without_a_postgresql_store_is_refused() {
    let err = refused(&settings("nats://127.0.0.1:4222"), false);
    assert!(err.contains("--store postgres://"), "{err}");
    // Through the configuration, with SQLite (the default store).
    let config = Config {
        bus: Some("nats://127.0.0.1:4222".into()),
        ..Config::default()
    };
    let err = config.bus(false, Some("box")).unwrap_err().to_string();
    assert!(err.contains("PostgreSQL store"), "{err}");
}

#[test]
fn off_loopback_the_bus_needs_tls() {
    let dir = tempfile::tempdir().unwrap();
    let creds = private_file(dir.path(), "node.creds", "x", 0o600);
    let s = BusSettings {
        creds_file: Some(creds.clone()),
        ..settings("nats://10.0.0.5:4222")
    };
    let err = refused(&s, true);
    assert!(err.contains("nats://10.0.0.5:4222"), "{err}");
    assert!(err.contains("tls://") && err.contains("--bus-ca"), "{err}");
    // One remote server in a list of loopback ones is enough to need it.
    let s = BusSettings {
        creds_file: Some(creds.clone()),
        ..settings("nats://127.0.0.1:4222,nats://nats.example:4222")
    };
    assert!(refused(&s, true).contains("nats://nats.example:4222"));
    // tls:// or --bus-ca satisfies it.
    let s = BusSettings {
        creds_file: Some(creds.clone()),
        ..settings("tls://nats.example:4222")
    };
    assert!(BusConfig::new(&s, true, "n").unwrap().tls());
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, "x").unwrap();
    let s = BusSettings {
        creds_file: Some(creds),
        ca_file: Some(ca),
        ..settings("nats://nats.example:4222")
    };
    assert!(BusConfig::new(&s, true, "n").unwrap().tls());
}

#[test]
fn off_loopback_the_bus_needs_credentials() {
    let err = refused(&settings("tls://nats.example:4222"), true);
    assert!(err.contains("--bus-creds"), "{err}");
    assert!(err.contains("tls://nats.example:4222"), "{err}");
}

#[test]
fn credentials_in_the_url_are_refused_and_never_repeated() {
    for url in [
        "nats://mm:hunter2@127.0.0.1:4222",
        "nats://hunter2@127.0.0.1:4222",
        "tls://hunter2@nats.example",
        "nats://127.0.0.1:4222,nats://mm:hunter2@127.0.0.1:4223",
        "hunter2@127.0.0.1:4222",
        "ws://mm:hunter2@127.0.0.1:4222",
        "nats://127.0.0.1:4222/?token=hunter2",
    ] {
        // Refused before anything else is looked at: even without a PostgreSQL store.
        for postgres in [true, false] {
            let err = refused(&settings(url), postgres);
            assert!(!err.contains("hunter2"), "{url}: {err}");
        }
    }
    let err = refused(&settings("nats://mm:hunter2@127.0.0.1:4222"), true);
    assert!(err.contains("--bus-creds"), "{err}");
    assert!(err.contains("127.0.0.1:4222"), "{err}");
}

#[test]
fn urls_that_are_not_nats_servers_are_refused_in_words() {
    for (url, words) in [
        ("", "empty"),
        ("127.0.0.1:4222", "no scheme"),
        ("http://127.0.0.1:4222", "is not NATS"),
        ("nats://127.0.0.1:0", "no valid host and port"),
        ("nats://127.0.0.1:99999", "no valid host and port"),
        ("nats://:4222", "no valid host and port"),
        ("nats://[::1", "no valid host and port"),
        ("nats://a b:4222", "no valid host and port"),
        ("nats://127.0.0.1:4222,", "empty"),
        ("nats://127.0.0.1:4222/x", "path or query"),
    ] {
        let err = refused(&settings(url), true);
        assert!(err.contains(words), "{url:?}: {err}");
    }
}

#[cfg(unix)]
#[test]
fn a_credentials_file_others_can_read_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let file = private_file(dir.path(), "node.creds", "x", 0o644);
    let s = BusSettings {
        creds_file: Some(file.clone()),
        ..settings("nats://127.0.0.1:4222")
    };
    let err = refused(&s, true);
    assert!(err.contains("chmod 600"), "{err}");
    assert!(err.contains("0644"), "{err}");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let cfg = BusConfig::new(&s, true, "n").unwrap();
    assert_eq!(cfg.creds_file.as_deref(), Some(file.as_path()));
    let missing = BusSettings {
        creds_file: Some(dir.path().join("nope")),
        ..s
    };
    assert!(refused(&missing, true).contains("cannot read bus_creds_file"));
}

#[test]
fn node_names_and_leases_are_checked() {
    let named = |name: &str| BusSettings {
        node_name: Some(name.into()),
        ..settings("nats://127.0.0.1")
    };
    assert_eq!(
        BusConfig::new(&named("eu-1.chat_a:7667"), true, "d")
            .unwrap()
            .node_name,
        "eu-1.chat_a:7667"
    );
    assert!(BusConfig::new(&named(&"n".repeat(64)), true, "d").is_ok());
    for bad in [
        String::new(),
        "n".repeat(65),
        "a b".into(),
        "né".into(),
        "a/b".into(),
    ] {
        let err = refused(&named(&bad), true);
        assert!(err.contains("node_name"), "{bad:?}: {err}");
    }
    // A default (the hostname) that is not a valid name says how to choose one.
    let err = BusConfig::new(&settings("nats://127.0.0.1"), true, "bad host:7667").unwrap_err();
    assert!(err.contains("--node-name"), "{err}");
    let leased = |secs: f64| BusSettings {
        lease: Some(Duration::from_secs_f64(secs)),
        ..settings("nats://127.0.0.1")
    };
    for ok in [1.0, 8.0, 300.0] {
        assert_eq!(
            BusConfig::new(&leased(ok), true, "d").unwrap().lease,
            Duration::from_secs_f64(ok)
        );
    }
    for bad in [0.0, 0.5, 301.0] {
        let err = refused(&leased(bad), true);
        assert!(
            err.contains("node_lease") && err.contains("1s to 5m"),
            "{err}"
        );
    }
}

#[test]
fn the_configuration_file_sets_the_bus_and_its_node_settings() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(
        &path,
        "bind = \"127.0.0.1:7701\"\nbus = \"nats://127.0.0.1:4222\"\nnode_lease = \"3s\"\n",
    )
    .unwrap();
    let config = Config::from_file(&path).unwrap();
    let bus = config.bus(true, Some("box")).unwrap().unwrap();
    assert_eq!(bus.urls, ["nats://127.0.0.1:4222"]);
    assert_eq!(bus.lease, Duration::from_secs(3));
    assert_eq!(bus.node_name, "box:7701");
    assert!(Config::default().bus(false, None).unwrap().is_none());
    // Node settings without a bus would do nothing: refused, naming them.
    std::fs::write(&path, "node_name = \"a\"\nnode_lease = \"3s\"\n").unwrap();
    let config = Config::from_file(&path).unwrap();
    match config.bus(true, None) {
        Err(ConfigError::Invalid(e)) => {
            assert!(
                e.contains("node_name, node_lease") && e.contains("--bus"),
                "{e}"
            )
        }
        other => panic!("{other:?}"),
    }
    std::fs::write(&path, "node_lease = \"soon\"\n").unwrap();
    assert!(matches!(
        Config::from_file(&path),
        Err(ConfigError::Parse { .. })
    ));
}

#[test]
fn reconnection_backs_off_to_at_most_five_seconds_and_never_gives_up() {
    assert_eq!(reconnect_delay(1), Duration::ZERO);
    assert_eq!(reconnect_delay(2), Duration::from_millis(100));
    assert_eq!(reconnect_delay(3), Duration::from_millis(200));
    let mut last = Duration::ZERO;
    for attempt in 1..10_000 {
        let d = reconnect_delay(attempt);
        assert!(d >= last && d <= MAX_RECONNECT_DELAY, "{attempt}: {d:?}");
        last = d;
    }
    assert_eq!(reconnect_delay(usize::MAX), MAX_RECONNECT_DELAY);
}

fn loopback(url: &str) -> BusConfig {
    BusConfig::new(&settings(url), true, "test-node").unwrap()
}

#[tokio::test]
async fn a_bus_nobody_listens_on_is_an_error_naming_it() {
    // A port just freed: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("nats://127.0.0.1:{port}");
    let err = connect(&loopback(&url)).await.unwrap_err();
    assert!(matches!(err, BusError::Connect { .. }), "{err:?}");
    assert!(err.to_string().contains(&url), "{err}");
}

#[tokio::test]
async fn a_bus_that_never_answers_times_out_in_five_seconds() {
    // Accepts and then says nothing (no INFO): a hung server, or not NATS.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("nats://{}", listener.local_addr().unwrap());
    let held = tokio::spawn(async move {
        let mut kept = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            kept.push(s);
        }
    });
    let started = std::time::Instant::now();
    let err = connect(&loopback(&url)).await.unwrap_err();
    let took = started.elapsed();
    held.abort();
    assert!(matches!(err, BusError::Timeout { .. }), "{err:?}");
    assert!(err.to_string().contains(&url), "{err}");
    assert!(
        took >= Duration::from_secs(4) && took < Duration::from_secs(8),
        "{took:?}"
    );
}

#[cfg(unix)]
#[tokio::test]
async fn a_credentials_file_that_is_not_one_is_refused_without_quoting_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = private_file(
        dir.path(),
        "node.creds",
        "SUAsecretseed-not-a-creds-file\n",
        0o600,
    );
    let cfg = BusConfig {
        creds_file: Some(file),
        ..loopback("nats://127.0.0.1:1")
    };
    let err = connect(&cfg).await.unwrap_err();
    assert!(matches!(err, BusError::Credentials(_)), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("not a NATS credentials file"), "{text}");
    assert!(!text.contains("secretseed"), "{text}");
}

#[tokio::test]
async fn a_ca_file_without_certificates_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, "not a certificate\n").unwrap();
    let cfg = BusConfig {
        ca_file: Some(ca),
        ..loopback("nats://127.0.0.1:1")
    };
    let err = connect(&cfg).await.unwrap_err();
    assert!(matches!(err, BusError::TlsSetup(_)), "{err:?}");
    assert!(err.to_string().contains("holds no certificate"), "{err}");
}

/// A log that keeps what is written to it.
#[derive(Clone, Default)]
struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_lost_link_is_warned_about_once_and_its_return_is_logged() {
    let log = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer({
            let log = log.clone();
            move || log.clone()
        })
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .finish();
    let lost = AtomicBool::new(false);
    let urls = "nats://127.0.0.1:4222";
    tracing::subscriber::with_default(subscriber, || {
        // The first connection is logged by `connect` itself, not as a return.
        log_event(urls, &lost, &async_nats::Event::Connected);
        log_event(urls, &lost, &async_nats::Event::Disconnected);
        for _ in 0..5 {
            let failed = async_nats::ClientError::Other("connection refused".into());
            log_event(urls, &lost, &async_nats::Event::ClientError(failed));
        }
        log_event(urls, &lost, &async_nats::Event::Connected);
    });
    let text = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(
        lines[0].contains("WARN") && lines[0].contains("lost the link to the bus"),
        "{text}"
    );
    assert!(lines[0].contains(urls), "{text}");
    assert!(
        lines[1].contains("INFO") && lines[1].contains("the link to the bus (NATS) is back"),
        "{text}"
    );
}
