// Over 600 lines: the tests of one module share their helpers.
//! Tests of [`super`]: tabs, events, own lines, keys, pastes and drafts (one file: they share
//! their helpers; over 600 lines for that reason).

use super::*;
use crate::ChatLine;
use mm_common::e2e::Failure;
use ratatui::crossterm::event::KeyEventState;

fn key(code: KeyCode, modifiers: KeyModifiers) -> KeyEvent {
    KeyEvent {
        code,
        modifiers,
        kind: ratatui::crossterm::event::KeyEventKind::Press,
        state: KeyEventState::NONE,
    }
}

fn type_line(app: &mut App, text: &str) -> Action {
    for c in text.chars() {
        app.on_key(key(KeyCode::Char(c), KeyModifiers::NONE), 0);
    }
    app.on_key(key(KeyCode::Enter, KeyModifiers::NONE), 0)
}

fn private(from: &str, text: &str) -> Event {
    Event::Private(ChatLine {
        room: String::new(),
        action: false,
        id: 1,
        ts: 0,
        from: from.into(),
        text: text.into(),
    })
}

#[test]
fn a_private_message_opens_a_tab_that_counts_unread_lines() {
    let mut app = App::new("s", "alice");
    let note = app.on_event(&private("bob", "hi"), 0);
    assert!(note.is_some());
    app.on_event(&private("BOB", "there"), 0);
    assert_eq!(app.tabs.len(), 2, "one tab per peer, case-insensitively");
    assert_eq!(app.tabs[1].unread, 2);
    assert!(app.tabs[1].mention);
    assert_eq!(app.tabs[1].marker, Some(0));
    app.on_key(key(KeyCode::Char('2'), KeyModifiers::ALT), 0);
    assert_eq!(app.active, 1);
    assert_eq!((app.tabs[1].unread, app.tabs[1].mention), (0, false));
    assert_eq!(app.tabs[1].marker, Some(0), "marker shown while reading");
    app.on_key(key(KeyCode::Char('p'), KeyModifiers::CONTROL), 0);
    assert_eq!(app.active, 0);
    assert_eq!(app.tabs[1].marker, None, "left: marker cleared");
}

#[test]
fn mentions_are_flagged_on_the_room_tab() {
    let mut app = App::new("s", "alice");
    let bob = app.tab_for("bob").unwrap();
    app.switch_to(bob);
    let public = |text: &str| {
        Event::Public(ChatLine {
            room: String::new(),
            action: false,
            id: 1,
            ts: 0,
            from: "carol".into(),
            text: text.into(),
        })
    };
    assert!(app.on_event(&public("malice aforethought"), 0).is_none());
    assert!(!app.tabs[0].mention);
    assert!(app.on_event(&public("hey Alice, look"), 0).is_some());
    assert!(app.tabs[0].mention);
    assert_eq!(app.tabs[0].unread, 2);
    app.switch_to(0);
    assert!(
        app.on_event(&public("alice?"), 0).is_none(),
        "no notification for the tab being read"
    );
    assert_eq!((app.tabs[0].unread, app.tabs[0].mention), (0, false));
}

#[test]
fn in_a_private_tab_lines_and_peer_commands_go_to_the_peer() {
    let mut app = App::new("s", "alice");
    let bob = app.tab_for("bob").unwrap();
    app.switch_to(bob);
    assert_eq!(
        type_line(&mut app, "hello"),
        Action::Run(Command::Msg {
            to: "bob".into(),
            text: "hello".into()
        })
    );
    assert_eq!(
        type_line(&mut app, "/secure"),
        Action::Run(Command::Secure("bob".into()))
    );
    assert_eq!(
        type_line(&mut app, "/verify"),
        Action::Run(Command::Verify("bob".into()))
    );
    assert_eq!(
        type_line(&mut app, "//slash"),
        Action::Run(Command::Msg {
            to: "bob".into(),
            text: "/slash".into()
        })
    );
}

#[test]
fn msg_and_secure_from_the_room_open_the_peers_tab() {
    let mut app = App::new("s", "alice");
    assert!(matches!(
        type_line(&mut app, "/secure carol"),
        Action::Run(Command::Secure(_))
    ));
    assert_eq!(app.current().title(), "carol");
    app.switch_to(0);
    assert!(matches!(
        type_line(&mut app, "/msg dave hi"),
        Action::Run(Command::Msg { .. })
    ));
    assert_eq!(app.current().title(), "dave");
    assert_eq!(type_line(&mut app, "/close"), Action::None);
    assert_eq!(app.tabs.len(), 2);
    type_line(&mut app, "/query erin");
    assert_eq!(app.current().title(), "erin");
}

#[test]
fn a_changed_key_blocks_sending_from_the_tab() {
    let mut app = App::new("s", "alice");
    let i = app.tab_for("bob").unwrap();
    app.switch_to(i);
    app.set_status(
        "bob",
        &Status::Failed(Failure::KeyChanged {
            pinned: [1; 32],
            presented: [2; 32],
        }),
    );
    assert_eq!(type_line(&mut app, "are you there?"), Action::None);
    let last = app.current().lines.back().unwrap();
    assert_eq!(last.kind, LineKind::Error);
    assert!(last.text.contains("key CHANGED"), "{}", last.text);
    // Verifying and accepting still work.
    assert_eq!(
        type_line(&mut app, "/accept-key"),
        Action::Run(Command::AcceptKey("bob".into()))
    );
}

#[test]
fn history_is_not_repeated_after_a_reconnect_and_scrollback_is_bounded() {
    let mut app = App::new("s", "alice");
    let h = |id| {
        Event::History(crate::ChatLine {
            room: String::new(),
            action: false,
            id,
            ts: 0,
            from: "bob".into(),
            text: format!("h{id}"),
        })
    };
    for id in 1..=3 {
        app.on_event(&h(id), 0);
    }
    for id in 2..=4 {
        app.on_event(&h(id), 0); // replay after a reconnect, plus one new
    }
    // Our own line (answered with Sent 5) and a line we missed while away (6).
    app.on_event(
        &Event::Sent {
            line: LineId::from_tag(1),
            id: 5,
            ts: 0,
        },
        0,
    );
    for id in [5, 6] {
        app.on_event(&h(id), 0);
    }
    let texts: Vec<&str> = app.tabs[0].lines.iter().map(|l| l.text.as_str()).collect();
    assert_eq!(texts, ["h1", "h2", "h3", "h4", "h6"]);
    for i in 0..SCROLLBACK + 10 {
        app.own_public(LineId::from_tag(1), &format!("{i}"), 0);
    }
    assert_eq!(app.tabs[0].lines.len(), SCROLLBACK);
}

#[test]
fn own_lines_are_pending_until_answered_and_say_how_they_ended() {
    use mm_common::protocol::ErrorCode;
    let mut app = App::new("s", "alice");
    let [sent, refused, lost, unsent] = [1, 2, 3, 4].map(LineId::from_tag);
    app.own_public(sent, "a", 0);
    app.own_private("nobody", "b", refused, Delivery::Plain, 0);
    app.own_public(lost, "c", 0);
    app.own_private("bob", "d", unsent, Delivery::Queued, 0);
    let state = |app: &App, text: &str| {
        app.tabs
            .iter()
            .flat_map(|t| &t.lines)
            .find(|l| l.text == text)
            .and_then(|l| l.sending.clone())
    };
    assert_eq!(state(&app, "a"), Some(Sending::Pending(sent)));
    app.on_event(
        &Event::Sent {
            line: sent,
            id: 9,
            ts: 0,
        },
        0,
    );
    assert_eq!(state(&app, "a"), Some(Sending::Delivered));
    let lines_before = app.tabs.iter().map(|t| t.lines.len()).sum::<usize>();
    app.on_event(
        &Event::Error {
            line: Some(refused),
            code: ErrorCode::NO_SUCH_NICK,
            fatal: false,
            detail: "nobody is not online".into(),
        },
        0,
    );
    assert_eq!(
        state(&app, "b"),
        Some(Sending::Refused(
            "error (no-such-nick): nobody is not online".into()
        ))
    );
    assert_eq!(
        app.tabs.iter().map(|t| t.lines.len()).sum::<usize>(),
        lines_before,
        "the refusal marks the line instead of adding one"
    );
    app.on_event(
        &Event::Secure(E2eEvent::Failed {
            peer: "bob".into(),
            failure: Failure::NoKeys,
            unsent: vec![unsent.get()],
        }),
        0,
    );
    assert!(matches!(state(&app, "d"), Some(Sending::Refused(why)) if why.contains("not sent")));
    app.on_event(
        &Event::Closed {
            error: Some("connection lost".into()),
            undelivered: vec![lost],
        },
        0,
    );
    assert_eq!(state(&app, "c"), Some(Sending::NotDelivered));
    assert!(app.tabs[0]
        .lines
        .iter()
        .any(|l| l.kind == LineKind::Error && l.text.contains("1 of your line")));
}

#[test]
fn tabs_are_bounded() {
    let mut app = App::new("s", "alice");
    for i in 0..MAX_TABS + 5 {
        app.on_event(&private(&format!("u{i}"), "spam"), 0);
    }
    assert_eq!(app.tabs.len(), MAX_TABS);
}

#[test]
fn scrolling_back_holds_the_view_and_is_bounded() {
    let mut app = App::new("s", "alice");
    for i in 0..50 {
        app.own_public(LineId::from_tag(1), &format!("{i}"), 0);
    }
    app.page = 10;
    app.on_key(key(KeyCode::PageUp, KeyModifiers::NONE), 0);
    assert_eq!(app.tabs[0].scroll, 8);
    app.own_public(LineId::from_tag(1), "new", 0);
    assert_eq!(
        app.tabs[0].scroll, 9,
        "new lines do not move what is being read"
    );
    // A new line of several rows moves the view by as many (80 columns: the time and the
    // nick on a row, then 1,000 characters without a space on 13).
    app.own_public(LineId::from_tag(1), &"w".repeat(1000), 0);
    assert_eq!(app.tabs[0].scroll, 9 + 14);
    for _ in 0..20 {
        app.on_key(key(KeyCode::PageUp, KeyModifiers::NONE), 0);
    }
    // 51 lines of one row and one of 14, in a view of 10 rows: the first row at the top.
    assert_eq!(app.tabs[0].scroll, 51 + 14 - 10);
    assert!(app.at_top());
    for _ in 0..20 {
        app.on_key(key(KeyCode::PageDown, KeyModifiers::NONE), 0);
    }
    assert_eq!(app.tabs[0].scroll, 0);
}

#[test]
fn a_replaced_connection_says_so_and_offers_reconnect_only() {
    use mm_common::protocol::ErrorCode;
    let mut app = App::new("s", "alice");
    app.on_event(
        &Event::Error {
            line: None,
            code: ErrorCode::REPLACED,
            fatal: true,
            detail: "you logged in again from another connection".into(),
        },
        0,
    );
    app.on_event(
        &Event::Closed {
            error: None,
            undelivered: vec![],
        },
        0,
    );
    assert!(app.replaced);
    assert_eq!(app.conn, Conn::Offline(REPLACED_STATUS.into()));
    assert!(app.tabs[0].lines.iter().any(|l| l.text
        == "alice logged in from another client; this one is disconnected — /reconnect to take the account back"));
    assert_eq!(type_line(&mut app, "/reconnect"), Action::Reconnect);
    // A fatal error of another kind is only an error: reconnecting stays automatic.
    let mut app = App::new("s", "alice");
    app.on_event(
        &Event::Error {
            line: None,
            code: ErrorCode::TOO_SLOW,
            fatal: true,
            detail: "slow".into(),
        },
        0,
    );
    assert!(!app.replaced);
}

fn last_line(app: &App) -> String {
    app.current()
        .lines
        .back()
        .map(|l| l.text.clone())
        .unwrap_or_default()
}

fn say(text: &str) -> Command {
    Command::Say(text.into())
}

fn msg(to: &str, text: &str) -> Command {
    Command::Msg {
        to: to.into(),
        text: text.into(),
    }
}

fn enter(app: &mut App) -> Action {
    app.on_key(key(KeyCode::Enter, KeyModifiers::NONE), 0)
}

#[test]
fn a_line_over_the_limit_is_refused_with_its_real_size_and_stays_in_the_input() {
    let mut app = App::new("s", "alice");
    let long = "x".repeat(5000);
    assert_eq!(type_line(&mut app, &long), Action::None);
    assert_eq!(app.input.text(), long, "not cut, not lost");
    assert_eq!(
        last_line(&app),
        "error (text-too-long): message of 5000 bytes is over the limit of 4096 bytes — nothing was sent; the line stays in the input to edit"
    );
    // Multi-byte text: the limit counts bytes, and the characters are said too.
    let mut app = App::new("s", "alice");
    assert_eq!(type_line(&mut app, &"é".repeat(2100)), Action::None);
    assert!(
        last_line(&app)
            .contains("message of 4200 bytes is over the limit of 4096 bytes (2100 characters)"),
        "{}",
        last_line(&app)
    );
    // Deleting what is too much sends it: 2048 'é' are 4096 bytes.
    for _ in 0..52 {
        app.on_key(key(KeyCode::Backspace, KeyModifiers::NONE), 0);
    }
    assert_eq!(enter(&mut app), Action::Run(say(&"é".repeat(2048))));
    assert!(app.input.is_empty());
    // The limit is the server's: a smaller one counts.
    let mut app = App::new("s", "alice");
    app.max_text_len = 10;
    assert_eq!(type_line(&mut app, "/msg bob 12345678901"), Action::None);
    assert!(last_line(&app).contains("message of 11 bytes is over the limit of 10 bytes"));
    assert_eq!(app.input.text(), "/msg bob 12345678901");
    // Other refused text stays too; other errors clear the line as before (Up recalls it).
    let mut app = App::new("s", "alice");
    app.on_paste("a\u{1b}[2Jb", 0);
    assert_eq!(enter(&mut app), Action::None);
    assert!(
        last_line(&app).contains("control character"),
        "{}",
        last_line(&app)
    );
    assert_eq!(app.input.text(), "a\u{1b}[2Jb");
}

#[test]
fn a_pasted_draft_sends_each_line_as_a_line_in_order() {
    let mut app = App::new("s", "alice");
    app.on_paste("one\r\ntwo\tcols\r\n\r\n/three\r\n", 0);
    assert_eq!(app.input.text(), "one\ntwo    cols\n\n/three");
    assert!(
        last_line(&app).starts_with(
            "pasted 3 lines (and 1 empty line, left out): Enter sends each as its own line"
        ),
        "{}",
        last_line(&app)
    );
    // Nothing is sent before Enter; then each line, in order, a pasted "/..." as text.
    assert_eq!(
        enter(&mut app),
        Action::RunAll(vec![say("one"), say("two    cols"), say("/three")])
    );
    app.sent(0);
    assert_eq!(
        last_line(&app),
        "left out 1 empty line (the server takes no empty lines)"
    );
    assert!(app.input.is_empty());
    // Up brings the draft back whole.
    app.on_key(key(KeyCode::Up, KeyModifiers::NONE), 0);
    assert_eq!(app.input.text(), "one\ntwo    cols\n\n/three");

    // "/msg NICK" on the first line takes them all to NICK (never the rest to the room).
    let mut app = App::new("s", "alice");
    for c in "/msg bob ".chars() {
        app.on_key(key(KeyCode::Char(c), KeyModifiers::NONE), 0);
    }
    app.on_paste("first\nsecond", 0);
    assert_eq!(
        enter(&mut app),
        Action::RunAll(vec![msg("bob", "first"), msg("bob", "second")])
    );
    assert_eq!(app.current().peer(), Some("bob"), "bob's tab, shown");
    // In a private tab, they all go to its peer.
    app.on_paste("a\nb", 0);
    assert_eq!(
        enter(&mut app),
        Action::RunAll(vec![msg("bob", "a"), msg("bob", "b")])
    );
    // A paste that ends with a line break is one line: sent as typed.
    app.on_paste("just this\n", 0);
    assert_eq!(enter(&mut app), Action::Run(msg("bob", "just this")));
    // Blanks only: nothing.
    app.on_paste(" \n\t\n", 0);
    assert_eq!(enter(&mut app), Action::Run(Command::Nothing));
}

#[test]
fn a_draft_that_cannot_go_whole_sends_nothing_and_stays() {
    let mut app = App::new("s", "alice");
    app.on_paste(&format!("fine\n{}\nalso fine", "x".repeat(5000)), 0);
    assert_eq!(enter(&mut app), Action::None);
    assert_eq!(
        last_line(&app),
        "line 2 of 3: error (text-too-long): message of 5000 bytes is over the limit of 4096 bytes — nothing was sent; the draft stays in the input to edit"
    );
    assert_eq!(app.input.rows(), 3);
    let mut app = App::new("s", "alice");
    app.on_paste("fine\nbell\u{7}", 0);
    assert_eq!(enter(&mut app), Action::None);
    assert!(last_line(&app).starts_with("line 2 of 2: error (invalid-text)"));
    // At most 100 lines at once.
    let mut app = App::new("s", "alice");
    let many: Vec<String> = (0..=MAX_DRAFT_LINES).map(|i| i.to_string()).collect();
    app.on_paste(&many.join("\n"), 0);
    assert_eq!(enter(&mut app), Action::None);
    assert_eq!(
        last_line(&app),
        "the draft holds 101 lines and mm sends at most 100 at once — nothing was sent (Ctrl+U clears the draft)"
    );
    assert_eq!(app.input.rows(), 101);
    app.on_key(key(KeyCode::Backspace, KeyModifiers::NONE), 0);
    app.on_key(key(KeyCode::Backspace, KeyModifiers::NONE), 0);
    app.on_key(key(KeyCode::Backspace, KeyModifiers::NONE), 0);
    assert!(matches!(enter(&mut app), Action::RunAll(lines) if lines.len() == 100));
    // A command takes one line.
    let mut app = App::new("s", "alice");
    app.on_paste("/secure bob\nhello", 0);
    assert_eq!(enter(&mut app), Action::None);
    assert!(last_line(&app).starts_with("the draft's first line is a command"));
    assert_eq!(app.input.text(), "/secure bob\nhello");
    // Lines not sent come back, with where they go.
    let mut app = App::new("s", "alice");
    app.input.submit();
    assert!(app.unsent(&[msg("bob", "x"), msg("bob", "/y")], 0));
    assert_eq!(app.input.text(), "/msg bob x\n/y");
    assert_eq!(
        last_line(&app),
        "2 lines not sent are back in the input: Enter sends again"
    );
    app.input.submit();
    assert!(app.unsent(&[say("/etc/passwd is here"), say("z")], 0));
    assert_eq!(app.input.text(), "//etc/passwd is here\nz");
    assert_eq!(
        enter(&mut app),
        Action::RunAll(vec![say("/etc/passwd is here"), say("z")])
    );
    // Not over something typed since.
    app.on_key(key(KeyCode::Char('q'), KeyModifiers::NONE), 0);
    assert!(!app.unsent(&[say("lost?")], 0));
    assert_eq!(app.input.text(), "q");
}

#[test]
fn keys_that_arrive_as_one_burst_with_line_breaks_are_a_paste() {
    // A terminal without bracketed paste: the pasted lines arrive as keys, Enter included,
    // all at once. They make a draft, tabs as spaces; nothing is sent or completed.
    let mut app = App::new("s", "alice");
    app.on_event(&Event::Users(vec!["alice".into(), "bob".into()]), 0);
    let mut burst: Vec<KeyEvent> = Vec::new();
    for c in "bo".chars() {
        burst.push(key(KeyCode::Char(c), KeyModifiers::NONE));
    }
    burst.push(key(KeyCode::Tab, KeyModifiers::NONE));
    burst.push(key(KeyCode::Char('x'), KeyModifiers::NONE));
    burst.push(key(KeyCode::Enter, KeyModifiers::NONE));
    burst.push(key(KeyCode::Char('y'), KeyModifiers::NONE));
    burst.push(key(KeyCode::Enter, KeyModifiers::NONE));
    let last = burst.len() - 1;
    for (i, k) in burst.into_iter().enumerate() {
        assert_eq!(app.on_burst_key(k, i < last, 0), Action::None);
    }
    assert_eq!(
        app.input.text(),
        "bo    x\ny",
        "the last line break starts no line"
    );
    assert!(last_line(&app).starts_with("pasted 2 lines: Enter sends"));
    // Then a typed Enter sends them.
    assert_eq!(
        app.on_burst_key(key(KeyCode::Enter, KeyModifiers::NONE), false, 0),
        Action::RunAll(vec![say("bo    x"), say("y")])
    );
    // A burst without a line break before its end is typing (a slow link): its last Enter
    // sends, its last Tab completes.
    let burst = [
        key(KeyCode::Char('b'), KeyModifiers::NONE),
        key(KeyCode::Tab, KeyModifiers::NONE),
    ];
    app.on_burst_key(burst[0], true, 0);
    app.on_burst_key(burst[1], false, 0);
    assert_eq!(app.input.text(), "bob: ");
    app.on_burst_key(key(KeyCode::Char('h'), KeyModifiers::NONE), true, 0);
    assert_eq!(
        app.on_burst_key(key(KeyCode::Enter, KeyModifiers::NONE), false, 0),
        Action::Run(say("bob: h"))
    );
    // Alt+Enter starts a line by hand.
    app.on_key(key(KeyCode::Char('1'), KeyModifiers::NONE), 0);
    app.on_key(key(KeyCode::Enter, KeyModifiers::ALT), 0);
    app.on_key(key(KeyCode::Char('2'), KeyModifiers::NONE), 0);
    assert_eq!(enter(&mut app), Action::RunAll(vec![say("1"), say("2")]));
}

/// Pastes `text` as a terminal without bracketed paste delivers it: one burst of keys, each
/// line break an Enter.
fn burst_paste(app: &mut App, text: &str) -> Vec<Action> {
    let keys: Vec<KeyEvent> = text
        .chars()
        .map(|c| match c {
            '\n' => key(KeyCode::Enter, KeyModifiers::NONE),
            c => key(KeyCode::Char(c), KeyModifiers::NONE),
        })
        .collect();
    let last = keys.len() - 1;
    keys.into_iter()
        .enumerate()
        .map(|(i, k)| app.on_burst_key(k, i < last, 0))
        .collect()
}

#[test]
fn a_paste_is_counted_one_way_its_last_line_break_starting_no_line() {
    // 4 lines copied as whole lines (the last one ends with a line break), pasted both ways:
    // the notice, the draft and Enter all count 4.
    for bracketed in [true, false] {
        let mut app = App::new("s", "alice");
        if bracketed {
            app.on_paste("a\nb\nc\nd\n", 0);
        } else {
            burst_paste(&mut app, "a\nb\nc\nd\n");
        }
        assert_eq!(app.input.text(), "a\nb\nc\nd", "bracketed: {bracketed}");
        assert_eq!(app.input.rows(), 4);
        assert!(
            last_line(&app).starts_with("pasted 4 lines: Enter sends each"),
            "{}",
            last_line(&app)
        );
        assert!(matches!(enter(&mut app), Action::RunAll(lines) if lines.len() == 4));
    }
    // Empty lines are shown, counted apart and left out, the same in the notice and after
    // sending.
    let mut app = App::new("s", "alice");
    app.on_paste("\nfirst\n\n\nsecond\n\n", 0);
    assert_eq!(app.input.text(), "\nfirst\n\n\nsecond");
    assert_eq!(
        last_line(&app),
        "pasted 2 lines (and 3 empty lines, left out): Enter sends each as its own line, in order (Up/Down move between them, Ctrl+U clears the draft)"
    );
    assert_eq!(
        enter(&mut app),
        Action::RunAll(vec![say("first"), say("second")])
    );
    app.sent(0);
    assert_eq!(
        last_line(&app),
        "left out 3 empty lines (the server takes no empty lines)"
    );
    // Into a draft that already holds lines: the draft's count.
    let mut app = App::new("s", "alice");
    app.on_paste("x\ny", 0);
    app.on_key(key(KeyCode::Enter, KeyModifiers::ALT), 0);
    app.on_paste("z\nw\n", 0);
    assert!(
        last_line(&app).starts_with("pasted into the draft, which holds 4 lines: Enter sends"),
        "{}",
        last_line(&app)
    );
    assert!(matches!(enter(&mut app), Action::RunAll(lines) if lines.len() == 4));
}

#[test]
fn a_paste_over_the_line_limit_says_so_at_once_and_stays() {
    let many: String = (1..=150).map(|i| format!("line {i}\n")).collect();
    for bracketed in [true, false] {
        let mut app = App::new("s", "alice");
        if bracketed {
            app.on_paste(&many, 0);
        } else {
            let actions = burst_paste(&mut app, &many);
            assert!(actions.iter().all(|a| *a == Action::None));
        }
        let said = app.current().lines.back().unwrap().clone();
        assert_eq!(said.kind, LineKind::Error, "bracketed: {bracketed}");
        assert_eq!(
            said.text,
            "pasted 150 lines: mm sends at most 100 lines at once, so Enter sends nothing until the draft holds 100 or fewer (edit it, or Ctrl+U clears it)"
        );
        assert!(
            !app.current()
                .lines
                .iter()
                .any(|l| l.text.contains("Enter sends each")),
            "never promises to send them"
        );
        assert_eq!(app.input.lines().filled, 150, "the draft stays");
        // Enter refuses with the same count, and the draft still stays.
        assert_eq!(enter(&mut app), Action::None);
        assert_eq!(
            last_line(&app),
            "the draft holds 150 lines and mm sends at most 100 at once — nothing was sent (Ctrl+U clears the draft)"
        );
        assert_eq!(app.input.rows(), 150);
    }
    // 100 lines go.
    let mut app = App::new("s", "alice");
    let hundred: String = (1..=100).map(|i| format!("line {i}\n")).collect();
    app.on_paste(&hundred, 0);
    assert!(last_line(&app).starts_with("pasted 100 lines: Enter sends each"));
    assert!(matches!(enter(&mut app), Action::RunAll(lines) if lines.len() == 100));
}

#[test]
fn a_full_input_says_so_once_and_a_paste_that_does_not_fit_is_refused_whole() {
    let mut app = App::new("s", "alice");
    app.on_paste(&"x".repeat(super::super::input::MAX_DRAFT - 1), 0);
    let lines = app.current().lines.len();
    for _ in 0..3 {
        app.on_key(key(KeyCode::Char('y'), KeyModifiers::NONE), 0);
    }
    assert_eq!(app.input.len(), super::super::input::MAX_DRAFT);
    assert_eq!(app.current().lines.len(), lines + 1, "said once");
    assert!(last_line(&app).starts_with("the input is full (262144 characters)"));
    let mut app = App::new("s", "alice");
    app.on_paste("abc", 0);
    app.on_paste(&"x".repeat(super::super::input::MAX_DRAFT), 0);
    assert_eq!(app.input.text(), "abc");
    assert_eq!(
        last_line(&app),
        "not pasted: the paste is 262144 characters and the input holds at most 262144 (3 in it now)"
    );
}

#[test]
fn the_size_of_a_long_line_shows_once_it_nears_the_limit() {
    let mut app = App::new("s", "alice");
    app.on_paste(&"x".repeat(3000), 0);
    assert_eq!(app.size_of_line_at_cursor(), None);
    app.on_paste(&"x".repeat(100), 0);
    assert_eq!(app.size_of_line_at_cursor(), Some((3100, 4096)));
    let mut app = App::new("s", "alice");
    app.on_paste(&format!("/msg bob {}", "é".repeat(2100)), 0);
    assert_eq!(app.size_of_line_at_cursor(), Some((4200, 4096)));
    app.on_paste("\nshort", 0);
    assert_eq!(app.size_of_line_at_cursor(), None, "the cursor's line");
}

/// A bracketed paste holding `ESC [ 201 ~` then a line break ended early, and its Enter (in
/// the same burst) ran `/quit`: an Enter arriving with a paste is part of it.
#[test]
fn an_enter_in_the_burst_of_a_paste_sends_and_runs_nothing() {
    let mut app = App::new("s", "alice");
    app.on_paste("/quit", 0);
    assert_eq!(
        app.on_burst_key(key(KeyCode::Enter, KeyModifiers::NONE), false, 0),
        Action::None
    );
    assert_eq!(app.input.text(), "/quit", "kept as a draft");
    app.end_burst();
    // A key after the pause is the user's: Enter runs what they now see.
    assert_eq!(
        app.on_burst_key(key(KeyCode::Enter, KeyModifiers::NONE), false, 0),
        Action::Quit
    );
}

#[test]
fn rendered_items_go_where_their_target_says() {
    use mm_common::protocol::LeaveReason;
    let mut app = App::new("s", "alice");
    app.on_event(&Event::Joined { nick: "bob".into() }, 0);
    assert_eq!(app.tabs.len(), 1, "a join opens no tab");
    assert_eq!(app.tabs[0].lines.back().unwrap().text, "bob joined");
    let bob = app.tab_for("bob").unwrap();
    app.on_event(
        &Event::Left {
            nick: "bob".into(),
            reason: LeaveReason::Quit,
        },
        0,
    );
    assert_eq!(app.tabs[0].lines.back().unwrap().text, "bob left");
    assert_eq!(app.tabs[bob].lines.back().unwrap().text, "bob went offline");
    // Answers and warnings go to the tab shown.
    app.switch_to(bob);
    app.on_event(&Event::Warning("careful".into()), 0);
    let last = app.tabs[bob].lines.back().unwrap();
    assert_eq!(
        (last.kind, last.text.as_str()),
        (LineKind::Error, "warning: careful")
    );
    // A safety number is a block in the peer's tab, with how to compare it.
    app.on_event(
        &Event::SafetyNumber {
            peer: "carol".into(),
            number: "00000 11111 22222 33333 44444".into(),
            new_key: true,
        },
        7,
    );
    let carol = app.find_tab("carol").unwrap();
    let lines: Vec<(LineKind, &str)> = app.tabs[carol]
        .lines
        .iter()
        .map(|l| (l.kind, l.text.as_str()))
        .collect();
    assert_eq!(
        lines,
        [
            (
                LineKind::Safety,
                "safety number of carol's NEW key (not accepted yet):"
            ),
            (LineKind::Safety, "    00000  11111  22222  33333"),
            (LineKind::Safety, "    44444"),
            (
                LineKind::Notice,
                "compare it with the one carol sees, in person or by phone; if they are the same: /accept-key carol, then /verified carol"
            ),
        ]
    );
}

fn entered(room: &str) -> Event {
    Event::Room(RoomEvent::Entered {
        room: RoomInfo {
            name: room.into(),
            topic: "ship it".into(),
            topic_by: "carol".into(),
            modes: mm_common::protocol::Modes::default(),
            members: 2,
            role: mm_common::protocol::Role::Member,
            seen: 0,
            names: Vec::new(),
        },
        created: false,
        asked: false,
    })
}

fn room_line(room: &str, from: &str, text: &str, action: bool) -> Event {
    Event::Public(ChatLine {
        id: 9,
        ts: 0,
        room: room.into(),
        from: from.into(),
        text: text.into(),
        action,
    })
}

fn texts(tab: &Tab) -> Vec<String> {
    tab.lines
        .iter()
        .map(|l| match &l.from {
            Some(from) => format!("<{from}> {}", l.text),
            None => l.text.clone(),
        })
        .collect()
}

#[test]
fn entering_a_room_opens_its_tab_and_its_lines_go_there() {
    let mut app = App::new("s", "alice");
    app.on_event(&entered("#dev"), 0);
    assert_eq!(app.tabs.len(), 2);
    assert_eq!(app.tabs[1].kind, TabKind::Channel("#dev".into()));
    assert!(texts(&app.tabs[1])[0].starts_with("entered #dev — topic: ship it — 2 members"));
    app.on_event(&room_line("#DEV", "bob", "hi all", false), 0);
    app.on_event(&room_line("#dev", "bob", "waves", true), 0);
    app.on_event(&room_line("#lobby", "bob", "lobby line", false), 0);
    assert_eq!(texts(&app.tabs[1])[1..], ["<bob> hi all", "<bob> waves"]);
    assert_eq!(app.tabs[1].lines[2].kind, LineKind::Action);
    assert_eq!(texts(&app.tabs[0]), ["<bob> lobby line"]);
    assert_eq!(app.tabs[1].unread, 3);
    // Entering again (a reconnect) opens no second tab.
    app.on_event(&entered("#Dev"), 0);
    assert_eq!(app.tabs.len(), 2);
    // A plain line typed in the room tab goes to the room; /me too.
    app.switch_to(1);
    assert_eq!(
        type_line(&mut app, "hello"),
        Action::Run(Command::SayIn {
            room: Some("#dev".into()),
            text: "hello".into(),
            action: false
        })
    );
    assert_eq!(
        Placing {
            app: &mut app,
            now: 0
        }
        .room(),
        Some("#dev".to_owned()),
        "room commands default to the room shown"
    );
    // /close in a room tab leaves the room.
    assert_eq!(
        type_line(&mut app, "/close"),
        Action::Run(Command::Part {
            room: Some("#dev".into()),
            reason: String::new()
        })
    );
}

#[test]
fn leaving_or_being_kicked_closes_the_tab_with_a_notice_in_the_lobby() {
    let mut app = App::new("s", "alice");
    app.on_event(&entered("#dev"), 0);
    app.on_event(&entered("#ops"), 0);
    app.switch_to(2);
    app.on_event(
        &Event::Room(RoomEvent::Kicked {
            room: "#ops".into(),
            nick: "alice".into(),
            by: "carol".into(),
            reason: "bye".into(),
            me: true,
        }),
        0,
    );
    assert_eq!(app.tabs.len(), 2);
    assert_eq!(app.active, 1, "the tab before it is shown");
    assert!(app.room_info("#ops").is_none());
    assert_eq!(
        texts(&app.tabs[0]).last().map(String::as_str),
        Some("you were kicked from #ops by carol (bye)")
    );
    app.on_event(
        &Event::Room(RoomEvent::Parted {
            room: "#dev".into(),
            nick: "alice".into(),
            reason: String::new(),
            me: true,
        }),
        0,
    );
    assert_eq!(app.tabs.len(), 1);
    assert_eq!(app.active, 0);
    assert_eq!(
        texts(&app.tabs[0]).last().map(String::as_str),
        Some("you left #dev")
    );
}

#[test]
fn room_state_follows_topics_modes_joins_and_names() {
    use mm_common::protocol::{Member, Role, RoomMode};
    let mut app = App::new("s", "alice");
    app.on_event(&entered("#dev"), 0);
    app.on_event(
        &Event::Room(RoomEvent::Names {
            room: "#dev".into(),
            members: vec![
                Member {
                    nick: "alice".into(),
                    role: Role::Member,
                    online: true,
                    away: false,
                },
                Member {
                    nick: "carol".into(),
                    role: Role::Owner,
                    online: true,
                    away: false,
                },
            ],
            complete: true,
        }),
        0,
    );
    app.on_event(
        &Event::Room(RoomEvent::Joined {
            room: "#dev".into(),
            nick: "bob".into(),
        }),
        0,
    );
    app.on_event(
        &Event::Room(RoomEvent::Topic {
            room: "#dev".into(),
            by: "carol".into(),
            topic: "new topic".into(),
            changed: true,
        }),
        0,
    );
    app.on_event(
        &Event::Room(RoomEvent::Mode {
            room: "#dev".into(),
            by: "carol".into(),
            mode: RoomMode::Moderated,
            on: true,
        }),
        0,
    );
    app.on_event(
        &Event::Room(RoomEvent::Member {
            room: "#dev".into(),
            by: "carol".into(),
            nick: "alice".into(),
            change: mm_common::protocol::MemberChange::Op,
        }),
        0,
    );
    let info = app.room_info("#DEV").unwrap();
    assert_eq!(info.members, 3);
    assert_eq!(info.topic, "new topic");
    assert!(info.modes.moderated);
    assert_eq!(info.role, Role::Op);
    let names: Vec<&str> = info.names.iter().map(|m| m.nick.as_str()).collect();
    assert_eq!(names, ["alice", "bob", "carol"]);
}

#[test]
fn mentions_in_a_room_are_counted_on_its_tab() {
    let mut app = App::new("s", "alice");
    app.on_event(&entered("#dev"), 0);
    let note = app.on_event(&room_line("#dev", "bob", "alice: look", false), 0);
    assert_eq!(note.map(|n| n.title), Some("bob in #dev".to_owned()));
    app.on_event(&room_line("#dev", "bob", "ALICE again", false), 0);
    app.on_event(&room_line("#dev", "bob", "not you", false), 0);
    assert_eq!((app.tabs[1].unread, app.tabs[1].mentions), (4, 2));
    assert_eq!(app.tabs[0].mentions, 0);
    app.switch_to(1);
    assert_eq!((app.tabs[1].unread, app.tabs[1].mentions), (0, 0));
}

#[test]
fn f2_toggles_the_member_pane_and_asks_for_the_names() {
    let mut app = App::new("s", "alice");
    app.on_event(&entered("#dev"), 0);
    assert_eq!(
        app.on_key(key(KeyCode::F(2), KeyModifiers::NONE), 0),
        Action::None
    );
    assert!(app.show_members, "shown (in room tabs only)");
    app.on_key(key(KeyCode::F(2), KeyModifiers::NONE), 0);
    app.switch_to(1);
    assert_eq!(
        app.on_key(key(KeyCode::F(2), KeyModifiers::NONE), 0),
        Action::Run(Command::Names(Some("#dev".into())))
    );
    assert!(app.show_members);
    let before = app.tabs[1].lines.len();
    app.on_event(
        &Event::Room(RoomEvent::Names {
            room: "#dev".into(),
            members: vec![mm_common::protocol::Member {
                nick: "bob".into(),
                role: mm_common::protocol::Role::Op,
                online: true,
                away: false,
            }],
            complete: true,
        }),
        0,
    );
    assert_eq!(
        app.tabs[1].lines.len(),
        before,
        "the pane shows it, not a line"
    );
    assert_eq!(app.room_info("#dev").unwrap().names.len(), 1);
}

#[test]
fn tab_completes_rooms_and_room_commands() {
    let mut app = App::new("s", "alice");
    app.on_event(&entered("#Dev"), 0);
    for c in "/jo".chars() {
        app.on_key(key(KeyCode::Char(c), KeyModifiers::NONE), 0);
    }
    app.on_key(key(KeyCode::Tab, KeyModifiers::NONE), 0);
    assert_eq!(app.input.text(), "/join ");
    for c in "#d".chars() {
        app.on_key(key(KeyCode::Char(c), KeyModifiers::NONE), 0);
    }
    app.on_key(key(KeyCode::Tab, KeyModifiers::NONE), 0);
    assert_eq!(app.input.text(), "/join #Dev ");
}

#[test]
fn end_jumps_to_the_bottom_of_the_conversation() {
    let mut app = App::new("s", "alice");
    for i in 0..100 {
        app.notice(&format!("line {i}"), 0);
    }
    app.on_key(key(KeyCode::PageUp, KeyModifiers::NONE), 0);
    assert!(app.tabs[0].scroll > 0);
    app.on_key(key(KeyCode::End, KeyModifiers::NONE), 0);
    assert_eq!(app.tabs[0].scroll, 0);
}

#[test]
fn our_own_join_brings_its_room_forward_and_the_logins_entries_do_not() {
    let mut app = App::new("s", "alice");
    // Entered at login (the server's re-entry): a tab, not brought forward.
    app.on_event(&entered("#dev"), 0);
    assert_eq!(app.active, 0);
    // Our /join answered: brought forward, so a /close right after leaves this room.
    let Event::Room(RoomEvent::Entered { room, created, .. }) = entered("#ops") else {
        unreachable!()
    };
    app.on_event(
        &Event::Room(RoomEvent::Entered {
            room,
            created,
            asked: true,
        }),
        0,
    );
    assert_eq!(app.tabs[app.active].kind, TabKind::Channel("#ops".into()));
}
