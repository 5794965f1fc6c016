//! The link to NATS (`--bus`) against a real nats-server (Debian's 2.9.10, [`TestNats`]):
//! connecting, JetStream as the cluster uses it (deduplication by `Nats-Msg-Id`, an ordered
//! consumer), surviving a restart of NATS, TLS verified with `--bus-ca`, and what `mm-server`
//! refuses at start.

use std::path::Path;
use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use futures_util::StreamExt;
use mm_server::cluster::nats::{connect, BusConfig, BusError, BusSettings};
use mm_tests::{TestNats, WAIT};

const MM_SERVER: &str = env!("CARGO_BIN_EXE_e2e-mm-server");

/// A checked bus configuration for `url` (as a node on a PostgreSQL store would have).
fn bus(url: &str, ca: Option<&Path>) -> BusConfig {
    let settings = BusSettings {
        url: url.into(),
        ca_file: ca.map(Path::to_path_buf),
        node_name: Some("node-a:7701".into()),
        ..BusSettings::default()
    };
    BusConfig::new(&settings, true, "unused:1").unwrap()
}

/// Waits until `client` is in `state`.
async fn wait_for_state(client: &async_nats::Client, state: async_nats::connection::State) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while client.connection_state() != state {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the NATS client is {:?}, not {state:?}, after {WAIT:?}",
            client.connection_state()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The stream the cluster uses, in miniature: file storage, a 2-minute duplicate window.
async fn make_stream(js: &jetstream::Context) -> stream::Stream {
    js.get_or_create_stream(stream::Config {
        name: "MM".into(),
        subjects: vec!["mm.log".into()],
        storage: stream::StorageType::File,
        duplicate_window: Duration::from_secs(120),
        max_age: Duration::from_secs(3600),
        ..Default::default()
    })
    .await
    .unwrap()
}

/// Publishes `payload` with `Nats-Msg-Id: id` and waits for JetStream's acknowledgement.
async fn publish(
    js: &jetstream::Context,
    id: &str,
    payload: &str,
) -> jetstream::publish::PublishAck {
    let ack = js
        .send_publish(
            "mm.log",
            jetstream::message::PublishMessage::build()
                .message_id(id)
                .payload(payload.to_owned().into()),
        )
        .await
        .unwrap();
    tokio::time::timeout(WAIT, ack).await.unwrap().unwrap()
}

/// The next message of an ordered consumer, as text.
async fn next(messages: &mut consumer::pull::Ordered) -> String {
    let message = tokio::time::timeout(WAIT, messages.next())
        .await
        .expect("no message from the ordered consumer")
        .expect("the ordered consumer ended")
        .unwrap();
    String::from_utf8(message.payload.to_vec()).unwrap()
}

#[tokio::test]
async fn a_node_connects_to_a_real_nats_server_under_its_own_name() {
    let nats = TestNats::start();
    let client = connect(&bus(&nats.url(), None)).await.unwrap();
    assert_eq!(
        client.connection_state(),
        async_nats::connection::State::Connected
    );
    // A core NATS round trip on the link.
    let mut sub = client.subscribe("mm.test").await.unwrap();
    client.publish("mm.test", "ping".into()).await.unwrap();
    let got = tokio::time::timeout(WAIT, sub.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&got.payload[..], b"ping");
    // The server sees the connection under the node's name.
    assert!(
        nats.connection_names().contains(&"node-a:7701".to_owned()),
        "{:?}",
        nats.connection_names()
    );
}

#[tokio::test]
async fn jetstream_on_nats_2_9_deduplicates_by_msg_id_and_an_ordered_consumer_reads_in_order() {
    let nats = TestNats::start();
    let client = connect(&bus(&nats.url(), None)).await.unwrap();
    let js = jetstream::new(client);
    let mut stream = make_stream(&js).await;
    let first = publish(&js, "node-a.1.1", "one").await;
    assert_eq!((first.sequence, first.duplicate), (1, false));
    // The same id again (a publish retried after a lost acknowledgement): not stored twice.
    let again = publish(&js, "node-a.1.1", "one").await;
    assert!(again.duplicate, "{again:?}");
    assert_eq!(again.sequence, 1);
    let second = publish(&js, "node-a.1.2", "two").await;
    assert_eq!((second.sequence, second.duplicate), (2, false));
    assert_eq!(stream.info().await.unwrap().state.messages, 2);

    let consumer = stream
        .create_consumer(consumer::pull::OrderedConfig {
            deliver_policy: consumer::DeliverPolicy::All,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut messages = consumer.messages().await.unwrap();
    assert_eq!(next(&mut messages).await, "one");
    assert_eq!(next(&mut messages).await, "two");
    // Published after the consumer was made: delivered after the others, in order.
    for (i, text) in ["three", "four", "five"].iter().enumerate() {
        publish(&js, &format!("node-a.1.{}", i + 3), text).await;
    }
    for text in ["three", "four", "five"] {
        assert_eq!(next(&mut messages).await, text);
    }
}

#[tokio::test]
async fn a_node_survives_a_nats_restart_and_publishes_and_reads_again() {
    let mut nats = TestNats::start();
    let client = connect(&bus(&nats.url(), None)).await.unwrap();
    let js = jetstream::new(client.clone());
    let stream = make_stream(&js).await;
    publish(&js, "a.1", "before").await;
    let consumer = stream
        .create_consumer(consumer::pull::OrderedConfig {
            deliver_policy: consumer::DeliverPolicy::All,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut messages = consumer.messages().await.unwrap();
    assert_eq!(next(&mut messages).await, "before");

    nats.stop();
    wait_for_state(&client, async_nats::connection::State::Disconnected).await;
    // NATS away for a few reconnection attempts: the link keeps trying (the node runs on).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        client.connection_state(),
        async_nats::connection::State::Disconnected
    );
    nats.restart();
    wait_for_state(&client, async_nats::connection::State::Connected).await;

    // The stream is still there (file storage) and its sequence goes on.
    let ack = publish(&js, "a.2", "after").await;
    assert_eq!((ack.sequence, ack.duplicate), (2, false));
    // The ordered consumer made before the restart is gone with the server's memory (it is
    // ephemeral); async-nats 0.51 takes over a minute to notice and remake it against 2.9.10,
    // so a node resumes by making a new one from the sequence after the last it applied.
    drop(messages);
    let consumer = stream
        .create_consumer(consumer::pull::OrderedConfig {
            deliver_policy: consumer::DeliverPolicy::ByStartSequence { start_sequence: 2 },
            ..Default::default()
        })
        .await
        .unwrap();
    let mut messages = consumer.messages().await.unwrap();
    assert_eq!(next(&mut messages).await, "after");
    let ack = publish(&js, "a.3", "later").await;
    assert_eq!(ack.sequence, 3);
    assert_eq!(next(&mut messages).await, "later");
}

/// A CA and a certificate for 127.0.0.1 and localhost signed by it, in `dir`: `ca.pem`,
/// `server.pem`, `server.key`.
fn make_tls(dir: &Path) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "NATS test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, &ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let params =
        rcgen::CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(dir.join("server.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("server.key"), key.serialize_pem()).unwrap();
}

#[tokio::test]
async fn tls_to_nats_is_verified_with_bus_ca_and_refused_without_it() {
    let dir = tempfile::tempdir().unwrap();
    make_tls(dir.path());
    let (ca, cert, key) = (
        dir.path().join("ca.pem"),
        dir.path().join("server.pem"),
        dir.path().join("server.key"),
    );
    let nats = TestNats::start_tls(dir, &cert, &key);
    let url = nats.url();
    assert!(url.starts_with("tls://"), "{url}");

    // Trusting the CA: connected, over TLS.
    let client = connect(&bus(&url, Some(&ca))).await.unwrap();
    let mut sub = client.subscribe("mm.test").await.unwrap();
    client.publish("mm.test", "over tls".into()).await.unwrap();
    let got = tokio::time::timeout(WAIT, sub.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&got.payload[..], b"over tls");
    // nats:// with --bus-ca is TLS too.
    let plain_url = url.replace("tls://", "nats://");
    connect(&bus(&plain_url, Some(&ca))).await.unwrap();

    // Without the CA the system's roots do not know it: refused, saying what to do.
    let err = connect(&bus(&url, None)).await.unwrap_err();
    assert!(matches!(err, BusError::Tls { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("--bus-ca") && text.contains(&url), "{text}");
    // Trusting another CA: refused as well.
    let other = tempfile::tempdir().unwrap();
    make_tls(other.path());
    let err = connect(&bus(&url, Some(&other.path().join("ca.pem"))))
        .await
        .unwrap_err();
    assert!(matches!(err, BusError::Tls { .. }), "{err:?}");
}

/// Runs `mm-server` with `args` and `env` (and no bus or store from the test's environment)
/// until it exits, which it must do promptly; its exit status and stderr.
async fn mm_server_refuses(args: &[&str], env: &[(&str, &str)]) -> String {
    let data = tempfile::tempdir().unwrap();
    let mut cmd = tokio::process::Command::new(MM_SERVER);
    cmd.arg("--data")
        .arg(data.path())
        .args(["--bind", "127.0.0.1:0", "--admin", "off"])
        .args(args)
        .env_remove("MM_SERVER_BUS")
        .env_remove("MM_SERVER_STORE")
        .envs(env.iter().copied())
        .kill_on_drop(true);
    let out = tokio::time::timeout(WAIT, cmd.output())
        .await
        .expect("mm-server did not stop")
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    // Refused before anything is made.
    assert!(
        std::fs::read_dir(data.path()).unwrap().next().is_none(),
        "{stderr}"
    );
    stderr
}

const PG: &str = "postgres://mm@127.0.0.1:1/chat";

#[tokio::test]
async fn mm_server_refuses_a_bus_url_with_credentials_wherever_it_comes_from_without_echoing_them()
{
    let secret = "nats://mm:hunter2@127.0.0.1:4222";
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("mm-server.toml");
    std::fs::write(&config, format!("bus = \"{secret}\"\n")).unwrap();
    let config = config.to_str().unwrap();
    for (args, env) in [
        (vec!["--store", PG, "--bus", secret], vec![]),
        (vec!["--store", PG], vec![("MM_SERVER_BUS", secret)]),
        (vec!["--store", PG, "--config", config], vec![]),
    ] {
        let stderr = mm_server_refuses(&args, &env).await;
        assert!(stderr.contains("--bus-creds"), "{args:?}: {stderr}");
        assert!(!stderr.contains("hunter2"), "{args:?}: {stderr}");
    }
}

#[tokio::test]
async fn mm_server_refuses_a_bus_without_a_postgresql_store() {
    let stderr = mm_server_refuses(&["--bus", "nats://127.0.0.1:4222"], &[]).await;
    assert!(stderr.contains("--store postgres://"), "{stderr}");
}

#[tokio::test]
async fn mm_server_refuses_a_remote_bus_without_tls_or_credentials() {
    let stderr =
        mm_server_refuses(&["--store", PG, "--bus", "nats://nats.example:4222"], &[]).await;
    assert!(stderr.contains("must use TLS"), "{stderr}");
    let stderr = mm_server_refuses(&["--store", PG, "--bus", "tls://nats.example:4222"], &[]).await;
    assert!(stderr.contains("--bus-creds"), "{stderr}");
}

#[cfg(unix)]
#[tokio::test]
async fn mm_server_refuses_a_credentials_file_others_can_read() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let creds = dir.path().join("node.creds");
    std::fs::write(&creds, "-----BEGIN NATS USER JWT-----\n").unwrap();
    std::fs::set_permissions(&creds, std::fs::Permissions::from_mode(0o644)).unwrap();
    let creds = creds.to_str().unwrap();
    let stderr = mm_server_refuses(
        &[
            "--store",
            PG,
            "--bus",
            "nats://127.0.0.1:4222",
            "--bus-creds",
            creds,
        ],
        &[],
    )
    .await;
    assert!(stderr.contains("chmod 600"), "{stderr}");
}
