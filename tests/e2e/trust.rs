//! The client always verifies the server: by CA file or by a pinned fingerprint.

use mm_client::trust::KnownServers;
use mm_client::{connect, ConnectError, ConnectOptions, Trust};
use mm_server::Limits;
use mm_tests::TestServer;

#[tokio::test]
async fn a_client_given_the_wrong_ca_refuses_to_connect() {
    let server = TestServer::start().await;
    let other = TestServer::start().await;
    let opts = ConnectOptions::new(server.server(), "alice", Trust::Roots(other.ca.clone()));
    match connect(&opts).await {
        Err(ConnectError::Tls { cause: source, .. }) => {
            assert!(
                source.to_string().to_lowercase().contains("certificate"),
                "{source}"
            );
        }
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("connected to a server signed by another CA"),
    }
}

#[tokio::test]
async fn first_contact_reports_the_fingerprint_and_a_pin_then_connects() {
    let server = TestServer::start().await;
    let home = tempfile::tempdir().unwrap();
    let known = KnownServers::in_home(home.path());
    let opts = ConnectOptions::new(server.server(), "alice", Trust::Known(known.clone()));
    let expected = mm_certs::fingerprint(&server.ca[0]);
    match connect(&opts).await {
        Err(ConnectError::UnknownServer { fingerprint, .. }) => assert_eq!(fingerprint, expected),
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("connected to an unknown server"),
    }
    known.add(&server.server(), &expected).unwrap();
    let (_client, _events, welcome) = connect(&opts).await.unwrap();
    assert_eq!(welcome.nick, "alice");
}

#[tokio::test]
async fn a_changed_server_certificate_is_refused_loudly() {
    let server = TestServer::start().await;
    let impostor = TestServer::start().await;
    let home = tempfile::tempdir().unwrap();
    let known = KnownServers::in_home(home.path());
    // The pin for the impostor's address is the real server's fingerprint.
    known
        .add(&impostor.server(), &mm_certs::fingerprint(&server.ca[0]))
        .unwrap();
    let opts = ConnectOptions::new(impostor.server(), "alice", Trust::Known(known));
    match connect(&opts).await {
        Err(e @ ConnectError::ServerKeyChanged { .. }) => {
            let text = e.to_string();
            assert!(
                text.contains("CHANGED") && text.contains(&mm_certs::fingerprint(&impostor.ca[0])),
                "{text}"
            );
        }
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("connected to a server with a changed certificate"),
    }
}

#[tokio::test]
async fn copying_the_pinned_ca_into_a_forged_chain_does_not_fool_the_pin() {
    // The attacker has the real CA certificate (it is public) but not its key: it serves its own
    // certificate followed by a copy of the real CA, so the chain's last fingerprint matches.
    let real = tempfile::tempdir().unwrap();
    mm_certs::generate(real.path(), &mm_certs::Names::default(), false).unwrap();
    let forged = tempfile::tempdir().unwrap();
    mm_certs::generate(forged.path(), &mm_certs::Names::default(), false).unwrap();
    let forged_chain = std::fs::read_to_string(forged.path().join("server.pem")).unwrap();
    let end = "-----END CERTIFICATE-----\n";
    let leaf_pem = &forged_chain[..forged_chain.find(end).unwrap() + end.len()];
    let real_ca_pem = std::fs::read_to_string(real.path().join("ca.pem")).unwrap();
    std::fs::write(
        forged.path().join("server.pem"),
        format!("{leaf_pem}{real_ca_pem}"),
    )
    .unwrap();
    std::fs::write(forged.path().join("ca.pem"), &real_ca_pem).unwrap();
    let server = TestServer::start_in(forged, Limits::default()).await;

    let home = tempfile::tempdir().unwrap();
    let known = KnownServers::in_home(home.path());
    known
        .add(&server.server(), &mm_certs::fingerprint(&server.ca[0]))
        .unwrap();
    let opts = ConnectOptions::new(server.server(), "alice", Trust::Known(known));
    match connect(&opts).await {
        Err(ConnectError::Tls { .. }) => {}
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("a forged chain passed the pin"),
    }
}

#[tokio::test]
async fn the_pinned_certificate_must_still_cover_the_address_used() {
    let tls = tempfile::tempdir().unwrap();
    mm_certs::generate(tls.path(), &mm_certs::Names::default(), false).unwrap();
    // 127.0.0.2 is loopback but not in the certificate (which covers localhost, 127.0.0.1, ::1).
    let server = TestServer::start_on("127.0.0.2:0", tls, Limits::default()).await;
    let home = tempfile::tempdir().unwrap();
    let known = KnownServers::in_home(home.path());
    known
        .add(&server.server(), &mm_certs::fingerprint(&server.ca[0]))
        .unwrap();
    let opts = ConnectOptions::new(server.server(), "alice", Trust::Known(known));
    match connect(&opts).await {
        Err(ConnectError::Tls { cause: source, .. }) => {
            assert!(
                source.to_string().contains("not valid for name"),
                "{source}"
            )
        }
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("a certificate for other names was accepted"),
    }
}
