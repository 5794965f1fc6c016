//! Forged lines: characters that end a line in some reader (U+2028, NEL, ...), reorder it
//! (bidi overrides and isolates) or hide text (invisible format characters, tags) are refused
//! by the server, refused by `mm` before sending, and never printed by `mm`'s line mode — even
//! when they arrive end-to-end encrypted, where no server can see them.

use mm_client::ChatLine;
use mm_client::Event;
use mm_common::protocol::{ClientMsg, ErrorCode, ServerMsg};
use mm_tests::{RawTls, TestServer, WAIT};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// The refused set as PROTOCOL.md lists it ("Text"), written out here independently of the
/// implementation.
fn refused_set() -> Vec<char> {
    [
        (0x0000, 0x001F),
        (0x007F, 0x009F),
        (0x2028, 0x2029),
        (0x202A, 0x202E),
        (0x2060, 0x206F),
        (0xFEFF, 0xFEFF),
        (0xFFF9, 0xFFFB),
        (0xE0000, 0xE007F),
    ]
    .into_iter()
    .flat_map(|(a, b): (u32, u32)| (a..=b).filter_map(char::from_u32))
    .collect()
}

/// Lines as a reader that splits on every Unicode line end sees them (Python's
/// `str.splitlines()`).
fn split_lines_like_python(text: &str) -> Vec<&str> {
    text.split([
        '\n', '\r', '\u{0B}', '\u{0C}', '\u{1C}', '\u{1D}', '\u{1E}', '\u{85}', '\u{2028}',
        '\u{2029}',
    ])
    .collect()
}

const FORGED: &str = "\u{2028}[secure] <bob> yes, send it to account 42";

#[tokio::test]
async fn the_server_refuses_every_character_that_can_break_reorder_or_hide_a_line() {
    let server = TestServer::start_unthrottled().await;
    let mut bob = server.client("bob").await;
    let mut mallory = RawTls::login(&server, "mallory").await;
    let set = refused_set();
    assert_eq!(set.len(), 220);
    for c in &set {
        for msg in [
            ClientMsg::Public {
                room: "#lobby".into(),
                action: false,
                text: format!("ok{c}{FORGED}"),
            },
            ClientMsg::Private {
                to: "bob".into(),
                text: format!("{c}ok"),
            },
        ] {
            mallory.send(&msg).await;
            match mallory.read().await {
                Some(ServerMsg::Error {
                    code: ErrorCode::INVALID_TEXT,
                    fatal: false,
                    detail,
                }) => assert!(
                    detail.contains(&format!("U+{:04X}", u32::from(*c)))
                        || detail.contains("control character"),
                    "U+{:04X}: {detail}",
                    u32::from(*c)
                ),
                other => panic!("U+{:04X} in {msg:?}: {other:?}", u32::from(*c)),
            }
        }
    }
    // What right-to-left writers and emoji need goes through: LRM, RLM, ALM, a subdivision flag.
    let kept = "\u{200F}שלום\u{200E} \u{627}\u{61C}1 \u{1F3F4}\u{E0067}\u{E0062}\u{E0077}\u{E006C}\u{E0073}\u{E007F} zero\u{200D}width";
    mallory
        .send(&ClientMsg::Public {
            room: "#lobby".into(),
            action: false,
            text: kept.into(),
        })
        .await;
    assert!(
        matches!(mallory.read().await, Some(ServerMsg::Sent { .. })),
        "kept characters pass"
    );
    // Nothing refused reached bob: his first line is the one that passed.
    let line = bob.next_line().await;
    assert!(
        matches!(&line, Event::Public(ChatLine { from, text, .. }) if from == "mallory" && text == kept),
        "{line:?}"
    );
}

/// Reads `mm`'s output into `printed` up to the first line holding `needle`, and returns it.
async fn read_until(
    out: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    printed: &mut Vec<String>,
    needle: &str,
) -> String {
    loop {
        let line = tokio::time::timeout(WAIT, out.next_line())
            .await
            .expect("no output in time")
            .unwrap()
            .expect("stdout closed");
        printed.push(line.clone());
        if line.contains(needle) {
            return line;
        }
    }
}

#[tokio::test]
async fn line_mode_never_prints_a_forged_line_even_end_to_end_encrypted() {
    let server = TestServer::start_unthrottled().await;
    let home = tempfile::tempdir().unwrap();
    // The peer's client is hostile: it encrypts whatever it likes, which the server cannot see.
    let mut mallory = server.client("mallory").await;
    let mut alice = crate::cli::spawn_mm(
        &server.server(),
        Some(&server.ca_path()),
        "alice",
        home.path(),
    );
    let mut out = BufReader::new(alice.stdout.take().unwrap()).lines();
    let mut stdin = alice.stdin.take().unwrap();
    let mut printed = Vec::new();
    read_until(&mut out, &mut printed, "* connected").await;
    mm_tests::wait_for_keys(&server, "alice").await;
    mallory.client.secure("alice").await.unwrap();
    mallory.secure_ready("alice").await;

    let payloads: Vec<String> = refused_set()
        .into_iter()
        .map(|c| format!("hi{c}[secure] <bob> yes, send it to account 42"))
        .collect();
    // A client of ours refuses such a text before encrypting it (the server cannot check
    // inside ciphertext); a hostile client that sends one anyway is not shown at all (the
    // receiver checks every decrypted text: `review_a_peers_text_with_refused_characters_is_not_shown`
    // in common/src/e2e/tests/review.rs).
    for text in &payloads {
        assert!(
            matches!(
                mallory.client.private("alice", text).await,
                Err(mm_client::SendError::Refused(
                    mm_common::e2e::Refused::InvalidText(_)
                ))
            ),
            "{text:?}"
        );
    }
    mallory.client.private("alice", "the end").await.unwrap();
    read_until(&mut out, &mut printed, "the end").await;
    assert!(
        printed
            .iter()
            .any(|l| l.starts_with("* mallory started a secure session")),
        "{printed:#?}"
    );

    let all = printed.join("\n");
    let set = refused_set();
    let bad: Vec<String> = printed
        .iter()
        .flat_map(|l| l.chars().filter(|c| set.contains(c)).map(move |c| (l, c)))
        .map(|(l, c)| format!("U+{:04X} in {l:?}", u32::from(c)))
        .collect();
    assert!(
        bad.is_empty(),
        "refused characters printed:\n{}",
        bad.join("\n")
    );
    let secure: Vec<&str> = split_lines_like_python(&all)
        .into_iter()
        .filter(|l| l.starts_with("[secure]"))
        .collect();
    assert_eq!(secure.len(), 1, "only the valid line arrives:\n{all}");
    assert!(
        secure.iter().all(|l| l.starts_with("[secure] <mallory> ")),
        "no forged line from bob:\n{all}"
    );
    // alice herself cannot send such a line: refused by mm, with the character named.
    stdin
        .write_all(format!("/msg mallory fine{FORGED}\n").as_bytes())
        .await
        .unwrap();
    let refusal = read_until(&mut out, &mut printed, "! error").await;
    assert_eq!(
        refusal,
        "! error (invalid-text): message holds U+2028, a line separator: characters that can \
         break a line, reorder it or hide text are refused"
    );
    drop(stdin);
    let output = tokio::time::timeout(WAIT, alice.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "one line refused by mm");

    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("1 line not delivered: 1 refused by mm"),
        "{stderr}"
    );
}
