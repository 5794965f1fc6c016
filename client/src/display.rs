//! How events look as lines of text. Line mode prints exactly these lines without colour; the
//! interactive mode adds colour. Everything that came from the network goes through [`clean`]
//! first, so a hostile server or peer cannot send terminal escape sequences, break a line in
//! two (U+2028 and the like: a forged second line for whoever splits the output on Unicode line
//! ends), or reorder or hide text with Unicode bidi and format controls.

use mm_common::e2e::{E2eEvent, Failure, Trust};
use mm_common::identity::key_fingerprint;
use mm_common::protocol::LeaveReason;

use crate::{Event, Welcome};

/// Replaces every character chat text may not hold (`mm_common::text`: control characters,
/// line and paragraph separators, bidi embeddings, overrides and isolates, invisible format
/// characters, stray tags) with U+FFFD, one for one. An honest server refuses them in what it
/// relays, so this only changes hostile input — and end-to-end decrypted text, which no server
/// can check. The terminal UI draws through it too.
pub fn clean(s: &str) -> String {
    mm_common::text::sanitize(s).into_owned()
}

/// A stable hash of a nick's lowercase form (FNV-1a), so that a user keeps one colour in line
/// mode and in the terminal UI; index a palette with it modulo its length.
pub fn nick_palette_index(nick: &str) -> usize {
    let hash = nick
        .to_ascii_lowercase()
        .bytes()
        .fold(2166136261u32, |h, b| {
            (h ^ u32::from(b)).wrapping_mul(16777619)
        });
    hash as usize
}

/// Colour settings for nicks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Style {
    /// Use ANSI colours.
    pub color: bool,
}

impl Style {
    /// No colours (line mode, `NO_COLOR`).
    pub const PLAIN: Style = Style { color: false };

    /// Colours unless the `NO_COLOR` convention says otherwise.
    pub fn from_env() -> Style {
        Style {
            color: std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
        }
    }

    /// A nick, coloured by a stable hash of its lowercase form so that a user keeps a colour.
    pub fn nick(&self, nick: &str) -> String {
        let nick = clean(nick);
        if !self.color {
            return nick;
        }
        // Colours readable on both dark and light backgrounds (no white, black, bright yellow).
        const PALETTE: [u8; 10] = [31, 32, 33, 34, 35, 36, 91, 92, 94, 95];
        let color = PALETTE[nick_palette_index(&nick) % PALETTE.len()];
        format!("\x1b[{color}m{nick}\x1b[0m")
    }

    /// A notice line (joins, errors), dimmed when colour is on.
    fn notice(&self, text: String) -> String {
        if self.color {
            format!("\x1b[2m{text}\x1b[0m")
        } else {
            text
        }
    }

    /// Secure-session text, green and bold when colour is on.
    fn secure(&self, text: String) -> String {
        if self.color {
            format!("\x1b[1;32m{text}\x1b[0m")
        } else {
            text
        }
    }

    fn error(&self, text: String) -> String {
        if self.color {
            format!("\x1b[1;31m{text}\x1b[0m")
        } else {
            text
        }
    }
}

/// The line shown after logging in.
pub fn welcome_line(server: &str, w: &Welcome, style: Style) -> String {
    let names: Vec<String> = w.online.iter().map(|n| style.nick(n)).collect();
    style.notice(format!(
        "* connected to {} as {}; {} online: {}",
        clean(server),
        clean(&w.nick),
        w.online.len(),
        names.join(", ")
    ))
}

/// The line for an event, or `None` for events that are not shown (acknowledgements).
pub fn event_line(event: &Event, style: Style) -> Option<String> {
    let line = match event {
        Event::Public { from, text, .. } => format!("<{}> {}", style.nick(from), clean(text)),
        Event::Private { from, text, .. } => {
            format!("[private] <{}> {}", style.nick(from), clean(text))
        }
        Event::History { ts, from, text, .. } => style.notice(format!(
            "[history {}] <{}> {}",
            clock(*ts),
            clean(from),
            clean(text)
        )),
        Event::Offline { ts, from, text, .. } => format!(
            "[private, sent {}] <{}> {}",
            clock(*ts),
            style.nick(from),
            clean(text)
        ),
        Event::Queued { .. } => style
            .notice("* they are offline; the server keeps the message for their next login".into()),
        Event::Joined { nick } => style.notice(format!("* {} joined", clean(nick))),
        Event::Reconnecting {
            attempt,
            in_secs,
            reason,
        } => style.notice(format!(
            "* not connected ({}); reconnecting in {in_secs} s (attempt {attempt}); what you type waits",
            clean(reason)
        )),
        Event::Reconnected(w) => style.notice(format!(
            "* reconnected; {}",
            count(w.online.len(), "user online", "users online")
        )),
        Event::GaveUp { reason } => style.error(format!("! not reconnecting: {}", clean(reason))),
        Event::Left { nick, reason } => match reason {
            LeaveReason::Quit => style.notice(format!("* {} left", clean(nick))),
            other => style.notice(format!("* {} left ({})", clean(nick), other.as_str())),
        },
        Event::Users(nicks) => {
            let names: Vec<String> = nicks.iter().map(|n| style.nick(n)).collect();
            style.notice(format!("* online ({}): {}", nicks.len(), names.join(", ")))
        }
        Event::Error { code, detail, .. } => {
            style.error(format!("! error ({}): {}", code.name(), clean(detail)))
        }
        Event::Shutdown { reason } => style.notice(format!("* {}", shutdown_words(&clean(reason)))),
        Event::Closed { error: Some(e), .. } => {
            style.error(format!("! disconnected: {}", clean(e)))
        }
        Event::Closed { error: None, .. } => style.notice("* disconnected".to_string()),
        Event::Sent { .. } => return None,
        Event::Secure(e) => return secure_line(e, style),
        Event::Warning(w) => style.error(format!("! warning: {}", clean(w))),
        Event::SafetyNumber {
            peer,
            number,
            new_key,
        } => {
            let peer = clean(peer);
            if *new_key {
                style.error(format!(
                    "! safety number of {peer}'s NEW key (not accepted): {}",
                    clean(number)
                ))
            } else {
                style.notice(format!("* safety number with {peer}: {}", clean(number)))
            }
        }
    };
    Some(line)
}

/// `MM-DD HH:MM UTC` of a server timestamp, for lines from the past: line mode's output is read
/// by scripts, the same wherever they run (the terminal UI shows local time).
pub fn clock(ts_ms: u64) -> String {
    format!(
        "{} UTC",
        crate::localtime::format_date_time(ts_ms, &jiff::tz::TimeZone::UTC)
    )
}

/// The line for an end-to-end event. Secure messages carry the fixed marker `[secure]`; nothing
/// else starts with it, so a script can rely on it.
pub fn secure_line(event: &E2eEvent, style: Style) -> Option<String> {
    let line = match event {
        E2eEvent::Starting {
            peer,
            by_peer: false,
        } => style.notice(format!(
            "* setting up a secure session with {}...",
            clean(peer)
        )),
        E2eEvent::Starting {
            peer,
            by_peer: true,
        } => style.notice(format!(
            "* {} is setting up a secure session with you...",
            clean(peer)
        )),
        E2eEvent::Ready {
            peer,
            key,
            trust,
            renewed: false,
        } => {
            let peer = clean(peer);
            let compare = if *trust == Trust::Verified {
                String::new()
            } else {
                format!(". Compare safety numbers: /verify {peer}")
            };
            style.secure(format!(
                "* secure session with {peer} ready: messages to and from {peer} are end-to-end encrypted. \
                 {peer}'s key: {} ({trust}){compare}",
                key_fingerprint(key)
            ))
        }
        E2eEvent::Ready {
            peer,
            renewed: true,
            ..
        } => style.notice(format!(
            "* secure session with {} renewed with fresh keys",
            clean(peer)
        )),
        E2eEvent::Message { peer, text } => {
            format!(
                "{} <{}> {}",
                style.secure("[secure]".into()),
                style.nick(peer),
                clean(text)
            )
        }
        E2eEvent::Ended {
            peer,
            by_peer,
            unsent,
        } => {
            let peer = clean(peer);
            let dropped = not_sent(unsent.len());
            if *by_peer {
                style.notice(format!(
                    "* {peer} ended the secure session{dropped}; nothing goes unencrypted: your next message to {peer} starts a new one (/insecure {peer} to go on unencrypted)"
                ))
            } else {
                style.notice(format!(
                    "* secure session with {peer} ended by you{dropped}; private messages with {peer} are NOT end-to-end encrypted now"
                ))
            }
        }
        E2eEvent::NotStarted {
            peer,
            failure,
            unsent,
        } => {
            let peer = clean(peer);
            let dropped = not_sent(unsent.len());
            style.notice(format!(
                "* the secure session {peer} offered did not come up ({failure}){dropped}; private messages with {peer} are still NOT end-to-end encrypted (/secure {peer} to try)"
            ))
        }
        E2eEvent::Failed {
            peer,
            failure: Failure::KeyChanged { pinned, presented },
            ..
        } => {
            let peer = clean(peer);
            style.error(format!(
                "!! WARNING: {peer}'s key has CHANGED. Pinned: {}. Presented: {}. Someone may be \
                 intercepting your conversation; nothing was sent. Compare the safety number of \
                 the NEW key (/verify {peer}) with {peer} in person or by phone; if they match: \
                 /accept-key {peer}, then /verified {peer}",
                key_fingerprint(pinned),
                key_fingerprint(presented)
            ))
        }
        E2eEvent::Failed {
            peer,
            failure: Failure::OwnKey,
            unsent,
        } => {
            let peer = clean(peer);
            let dropped = not_sent(unsent.len());
            style.error(format!("!! WARNING: {}{dropped}", own_key_warning(&peer)))
        }
        E2eEvent::Failed {
            peer,
            failure,
            unsent,
        } => {
            let peer = clean(peer);
            let dropped = not_sent(unsent.len());
            if matches!(failure, Failure::PeerLeft | Failure::Unreachable) {
                style.error(format!(
                    "! secure session with {peer} interrupted: {failure}{dropped}. Nothing goes unencrypted: \
                     messages to {peer} are refused until {peer} is back, and the session then restarts \
                     by itself; /insecure {peer} to go on unencrypted"
                ))
            } else if failure.is_interruption() {
                style.error(format!(
                    "! secure session with {peer} interrupted: {failure}{dropped}. Nothing goes unencrypted: \
                     your next message to {peer} starts a new session and waits for it (it also restarts \
                     by itself when {peer} is online); /insecure {peer} to go on unencrypted"
                ))
            } else {
                style.error(format!(
                    "! secure session with {peer} failed: {failure}{dropped}. Messages to {peer} are blocked \
                     until /secure {peer} or /insecure {peer}"
                ))
            }
        }
        _ => return None,
    };
    Some(line)
}

/// What to tell the user when `peer` presents our own identity key (line mode and the terminal
/// UI say the same).
pub fn own_key_warning(peer: &str) -> String {
    format!(
        "{peer} presents your own key: you and {peer} share one home directory; each user needs \
         their own (each --nick has one by default; or --home DIR). Nothing was sent or pinned; \
         messages to {peer} stay blocked: once {peer} has a home of their own, /secure {peer} \
         again (or /insecure {peer} to send plain)"
    )
}

/// `; 2 waiting messages were NOT sent`, or nothing for 0.
fn not_sent(n: usize) -> String {
    match n {
        0 => String::new(),
        1 => "; 1 waiting message was NOT sent".to_string(),
        n => format!("; {n} waiting messages were NOT sent"),
    }
}

/// How our own outgoing secure line is echoed in the interactive mode.
pub fn own_secure_line(to: &str, text: &str, queued: bool, style: Style) -> String {
    let waiting = if queued {
        " (sent when the session is ready)"
    } else {
        ""
    };
    format!(
        "{} -> <{}> {}{waiting}",
        style.secure("[secure]".into()),
        style.nick(to),
        clean(text)
    )
}

/// How our own outgoing private line is echoed in the interactive mode.
pub fn own_private_line(to: &str, text: &str, style: Style) -> String {
    format!("[private] -> <{}> {}", style.nick(to), clean(text))
}

/// How our own public line is echoed in the interactive mode.
pub fn own_public_line(nick: &str, text: &str, style: Style) -> String {
    format!("<{}> {}", style.nick(nick), clean(text))
}

/// `n` and the word for it: "1 line", "2 lines".
pub(crate) fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// The notice for the server's `Shutdown { reason }`: `server shutting down`, with the reason
/// only when it says more than that (today's server says just "server is shutting down").
pub fn shutdown_words(reason: &str) -> String {
    let reason = reason.trim();
    if reason.is_empty() || reason.to_ascii_lowercase().contains("shutting down") {
        "server shutting down".to_owned()
    } else {
        format!("server shutting down: {reason}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mm_common::protocol::ErrorCode;

    #[test]
    fn lines_hold_the_nick_and_the_text_verbatim() {
        let p = Event::Public {
            id: 1,
            ts: 0,
            from: "alice".into(),
            text: "hi  there ✓".into(),
        };
        assert_eq!(event_line(&p, Style::PLAIN).unwrap(), "<alice> hi  there ✓");
        let q = Event::Private {
            id: 1,
            ts: 0,
            from: "bob".into(),
            text: "psst".into(),
        };
        assert_eq!(
            event_line(&q, Style::PLAIN).unwrap(),
            "[private] <bob> psst"
        );
        let e = Event::Error {
            line: None,
            code: ErrorCode::NO_SUCH_NICK,
            fatal: false,
            detail: "carol is not online".into(),
        };
        assert_eq!(
            event_line(&e, Style::PLAIN).unwrap(),
            "! error (no-such-nick): carol is not online"
        );
        assert_eq!(
            event_line(
                &Event::Sent {
                    line: crate::LineId::from_tag(1),
                    id: 1,
                    ts: 1
                },
                Style::PLAIN
            ),
            None
        );
        let l = Event::Left {
            nick: "x".into(),
            reason: LeaveReason::TooSlow,
        };
        assert_eq!(event_line(&l, Style::PLAIN).unwrap(), "* x left (too slow)");
    }

    #[test]
    fn hostile_bytes_never_reach_the_terminal() {
        let p = Event::Public {
            id: 1,
            ts: 0,
            from: "ev\u{1b}[2Jil".into(),
            text: "a\u{1b}]0;pwned\u{7}b\u{202E}cba\nx".into(),
        };
        let line = event_line(&p, Style::PLAIN).unwrap();
        assert!(
            !line.chars().any(|c| c.is_control() || c == '\u{202E}'),
            "{line:?}"
        );
        assert_eq!(line.matches('\u{FFFD}').count(), 5);
    }

    /// Characters that break, reorder or hide a line, and the flag base, to mix into strings.
    const HOSTILE: [char; 16] = [
        '\n',
        '\r',
        '\u{0B}',
        '\u{1E}',
        '\u{1b}',
        '\u{85}',
        '\u{2028}',
        '\u{2029}',
        '\u{202E}',
        '\u{2067}',
        '\u{2061}',
        '\u{FEFF}',
        '\u{FFF9}',
        '\u{E0041}',
        '\u{E007F}',
        '\u{1F3F4}',
    ];

    /// Every line `mm` shows for an event built from `a` and `b` (in every string field).
    fn all_lines(a: &str, b: &str) -> Vec<String> {
        let (a, b) = (a.to_string(), b.to_string());
        let events = vec![
            Event::Public {
                id: 1,
                ts: 0,
                from: a.clone(),
                text: b.clone(),
            },
            Event::Private {
                id: 1,
                ts: 0,
                from: a.clone(),
                text: b.clone(),
            },
            Event::History {
                id: 1,
                ts: 0,
                from: a.clone(),
                text: b.clone(),
            },
            Event::Offline {
                id: 1,
                ts: 0,
                from: a.clone(),
                text: b.clone(),
            },
            Event::Joined { nick: a.clone() },
            Event::Left {
                nick: a.clone(),
                reason: LeaveReason::Quit,
            },
            Event::Left {
                nick: b.clone(),
                reason: LeaveReason::TooSlow,
            },
            Event::Users(vec![a.clone(), b.clone()]),
            Event::Error {
                line: None,
                code: ErrorCode(7),
                fatal: true,
                detail: b.clone(),
            },
            Event::Shutdown { reason: a.clone() },
            Event::Warning(b.clone()),
            Event::Closed {
                error: Some(a.clone()),
                undelivered: vec![],
            },
            Event::Secure(E2eEvent::Starting {
                peer: a.clone(),
                by_peer: true,
            }),
            Event::Secure(E2eEvent::Starting {
                peer: a.clone(),
                by_peer: false,
            }),
            Event::Secure(E2eEvent::Ready {
                peer: a.clone(),
                key: [3; 32],
                trust: mm_common::e2e::Trust::New,
                renewed: false,
            }),
            Event::Secure(E2eEvent::Message {
                peer: a.clone(),
                text: b.clone(),
            }),
            Event::Secure(E2eEvent::Ended {
                peer: b.clone(),
                by_peer: true,
                unsent: vec![1],
            }),
            Event::Secure(E2eEvent::Failed {
                peer: a.clone(),
                failure: Failure::KeyChanged {
                    pinned: [1; 32],
                    presented: [2; 32],
                },
                unsent: vec![],
            }),
            Event::Secure(E2eEvent::Failed {
                peer: b.clone(),
                failure: Failure::PeerLeft,
                unsent: vec![],
            }),
        ];
        let mut lines = Vec::new();
        for style in [Style::PLAIN, Style { color: true }] {
            lines.extend(events.iter().filter_map(|e| event_line(e, style)));
            let welcome = Welcome {
                nick: a.clone(),
                server: b.clone(),
                max_text_len: 1,
                rate_burst: 1,
                rate_per_sec: 1,
                online: vec![a.clone(), b.clone()],
            };
            lines.push(welcome_line(&b, &welcome, style));
            lines.push(own_public_line(&a, &b, style));
            lines.push(own_private_line(&a, &b, style));
            lines.push(own_secure_line(&a, &b, true, style));
        }
        lines
    }

    /// What a line may hold: nothing chat text may not hold, except the colour escapes of
    /// the coloured style (ESC `[` digits `;` `m`), which `mm` writes itself.
    fn assert_clean(line: &str) {
        let mut rest = String::new();
        let mut chars = line.chars().peekable();
        while let Some(c) = chars.next() {
            if c == '\u{1b}' && chars.peek() == Some(&'[') {
                chars.next();
                while chars.next_if(|c| c.is_ascii_digit() || *c == ';').is_some() {}
                assert_eq!(chars.next(), Some('m'), "{line:?}");
                continue;
            }
            rest.push(c);
        }
        assert_eq!(mm_common::text::find_forbidden(&rest), None, "{line:?}");
        assert!(
            !rest.contains(['\n', '\r', '\u{85}', '\u{2028}', '\u{2029}', '\u{202E}']),
            "{line:?}"
        );
    }

    #[test]
    fn nothing_shown_holds_a_line_break_or_a_bidi_or_format_control() {
        let forged = "ok\u{2028}[secure] <bob> yes, send it to account 42";
        for line in all_lines(forged, forged) {
            assert_clean(&line);
        }
        for c in HOSTILE {
            let s = format!("x{c}y");
            for line in all_lines(&s, &s) {
                assert_clean(&line);
            }
        }
        let shown = event_line(
            &Event::Secure(E2eEvent::Message {
                peer: "mallory".into(),
                text: forged.into(),
            }),
            Style::PLAIN,
        )
        .unwrap();
        assert_eq!(
            shown,
            "[secure] <mallory> ok\u{FFFD}[secure] <bob> yes, send it to account 42"
        );
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn no_input_makes_a_shown_line_break_reorder_or_hide(
                a in proptest::collection::vec(
                    prop_oneof![
                        any::<char>(),
                        proptest::sample::select(&HOSTILE[..]),
                        (0xE0000u32..=0xE007F).prop_map(|c| char::from_u32(c).unwrap()),
                    ],
                    0..40,
                ),
                b in ".{0,40}",
            ) {
                let a: String = a.into_iter().collect();
                for line in all_lines(&a, &b).iter().chain(all_lines(&b, &a).iter()) {
                    assert_clean(line);
                }
                let cleaned = clean(&a);
                prop_assert_eq!(cleaned.chars().count(), a.chars().count());
                prop_assert_eq!(mm_common::text::find_forbidden(&cleaned), None);
            }
        }
    }

    #[test]
    fn secure_lines_are_marked_and_key_changes_are_loud() {
        let m = Event::Secure(E2eEvent::Message {
            peer: "alice".into(),
            text: "hi".into(),
        });
        assert_eq!(event_line(&m, Style::PLAIN).unwrap(), "[secure] <alice> hi");
        let changed = Event::Secure(E2eEvent::Failed {
            peer: "bob".into(),
            failure: Failure::KeyChanged {
                pinned: [1; 32],
                presented: [2; 32],
            },
            unsent: vec![],
        });
        let line = event_line(&changed, Style::PLAIN).unwrap();
        assert!(
            line.starts_with("!! WARNING: bob's key has CHANGED"),
            "{line}"
        );
        assert!(
            line.contains(&key_fingerprint(&[1; 32])) && line.contains(&key_fingerprint(&[2; 32]))
        );
        assert!(line.contains("/verify bob") && line.contains("/accept-key bob"));
        // An offer that did not come up in a plain conversation never claims it is secure.
        let offer = Event::Secure(E2eEvent::NotStarted {
            peer: "bob".into(),
            failure: Failure::Timeout,
            unsent: vec![],
        });
        let line = event_line(&offer, Style::PLAIN).unwrap();
        assert!(
            line.contains("still NOT end-to-end encrypted")
                && !line.contains("Nothing goes unencrypted"),
            "{line}"
        );
        let failed = Event::Secure(E2eEvent::Failed {
            peer: "bob".into(),
            failure: Failure::PeerLeft,
            unsent: vec![1, 2],
        });
        let line = event_line(&failed, Style::PLAIN).unwrap();
        assert!(
            line.contains("2 waiting messages were NOT sent") && line.contains("/insecure bob"),
            "{line}"
        );
        // Plain private lines never carry the secure marker.
        let p = Event::Private {
            id: 1,
            ts: 0,
            from: "x".into(),
            text: "[secure] fake".into(),
        };
        assert!(!event_line(&p, Style::PLAIN)
            .unwrap()
            .starts_with("[secure]"));
    }

    #[test]
    fn colours_are_stable_per_nick_and_off_when_plain() {
        let style = Style { color: true };
        assert_eq!(style.nick("Alice"), style.nick("Alice"));
        assert!(style.nick("alice").starts_with("\x1b["));
        assert_eq!(Style::PLAIN.nick("alice"), "alice");
    }

    /// The notice said its cause twice: `server shutting down: server is shutting down`.
    #[test]
    fn a_shutdown_notice_says_it_once() {
        let say = |reason: &str| {
            event_line(
                &Event::Shutdown {
                    reason: reason.into(),
                },
                Style::PLAIN,
            )
            .unwrap()
        };
        assert_eq!(say("server is shutting down"), "* server shutting down");
        assert_eq!(say(""), "* server shutting down");
        assert_eq!(
            say("upgrade to 0.2"),
            "* server shutting down: upgrade to 0.2"
        );
    }
}
