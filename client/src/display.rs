//! Line mode's layout of [`Rendered`] items (what an event says is decided in
//! [`crate::render`]): one line each, with a prefix for its kind (`*` notices, `!` errors, `!!`
//! alarms, `[secure]`, `[private]`...) and, when asked, colour. Line mode prints them without
//! colour. Everything that came from the network goes through [`clean`]
//! first, so a hostile server or peer cannot send terminal escape sequences, break a line in
//! two (U+2028 and the like: a forged second line for whoever splits the output on Unicode line
//! ends), or reorder or hide text with Unicode bidi and format controls.

use crate::render::{self, Kind, Rendered, Target};
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

/// The line for `item`, or `None` for an item line mode does not show (one for a
/// conversation's tab only: [`Target::PeerTab`]). Everything in it is cleaned ([`clean`]).
pub fn format(item: &Rendered, style: Style) -> Option<String> {
    if matches!(item.target, Target::PeerTab(_)) {
        return None;
    }
    let text = clean(&item.text);
    let from = item.from.as_deref().unwrap_or_default();
    let ts = item.ts.unwrap_or(0);
    // Lines of a room other than the lobby say which: `[#dev] <alice> hi`.
    let room = match &item.target {
        Target::InRoom(room) => format!("[{}] ", clean(room)),
        _ => String::new(),
    };
    let line = match &item.kind {
        Kind::Public | Kind::OwnPublic => format!("{room}<{}> {text}", style.nick(from)),
        Kind::Action => format!("{room}* {} {text}", style.nick(from)),
        Kind::HistoryAction => style.notice(format!(
            "[history {}] {room}* {} {text}",
            clock(ts),
            clean(from)
        )),
        Kind::NewMarker => style.notice(format!("{room}{text}")),
        Kind::Private => format!("[private] <{}> {text}", style.nick(from)),
        Kind::History => style.notice(format!(
            "[history {}] {room}<{}> {text}",
            clock(ts),
            clean(from)
        )),
        Kind::Offline => format!(
            "[private, sent {}] <{}> {text}",
            clock(ts),
            style.nick(from)
        ),
        Kind::Secure => format!(
            "{} <{}> {text}",
            style.secure("[secure]".into()),
            style.nick(from)
        ),
        Kind::OwnPrivate => format!("[private] -> <{}> {text}", style.nick(recipient(item))),
        Kind::OwnSecure { queued } => {
            let waiting = if *queued {
                " (sent when the session is ready)"
            } else {
                ""
            };
            format!(
                "{} -> <{}> {text}{waiting}",
                style.secure("[secure]".into()),
                style.nick(recipient(item))
            )
        }
        Kind::Notice => style.notice(format!("* {text}")),
        Kind::Ready => style.secure(format!("* {text}")),
        Kind::Error => style.error(format!("! {text}")),
        Kind::Alarm => style.error(format!("!! {text}")),
        Kind::SafetyNumber {
            number,
            new_key: true,
        } => style.error(format!("! {text}: {}", clean(number))),
        Kind::SafetyNumber {
            number,
            new_key: false,
        } => style.notice(format!("* {text}: {}", clean(number))),
    };
    Some(line)
}

/// The recipient of our own private line (its target).
fn recipient(item: &Rendered) -> &str {
    match &item.target {
        Target::Peer(nick) | Target::PeerTab(nick) => nick,
        Target::Room | Target::InRoom(_) | Target::Here => "",
    }
}

/// The lines for an event (none for acknowledgements).
pub fn event_lines(event: &Event, style: Style) -> Vec<String> {
    render::event(event)
        .iter()
        .filter_map(|item| format(item, style))
        .collect()
}

/// The line shown after logging in.
pub fn welcome_line(server: &str, w: &Welcome, style: Style) -> String {
    format(&render::welcome(server, w), style).unwrap_or_default()
}

/// `MM-DD HH:MM UTC` of a server timestamp, for lines from the past: line mode's output is read
/// by scripts, the same wherever they run (the terminal UI shows local time).
pub fn clock(ts_ms: u64) -> String {
    format!(
        "{} UTC",
        crate::localtime::format_date_time(ts_ms, &jiff::tz::TimeZone::UTC)
    )
}

/// `n` and the word for it: "1 line", "2 lines".
pub(crate) fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ChatLine;
    use crate::Delivery;
    use mm_common::e2e::{E2eEvent, Failure};
    use mm_common::identity::key_fingerprint;
    use mm_common::protocol::{ErrorCode, LeaveReason};

    /// The one line line mode shows for `event`, if any.
    fn event_line(event: &Event, style: Style) -> Option<String> {
        let mut lines = event_lines(event, style);
        assert!(lines.len() <= 1, "{lines:?}");
        lines.pop()
    }

    #[test]
    fn lines_hold_the_nick_and_the_text_verbatim() {
        let p = Event::Public(ChatLine {
            room: String::new(),
            action: false,
            id: 1,
            ts: 0,
            from: "alice".into(),
            text: "hi  there ✓".into(),
        });
        assert_eq!(event_line(&p, Style::PLAIN).unwrap(), "<alice> hi  there ✓");
        let q = Event::Private(ChatLine {
            room: String::new(),
            action: false,
            id: 1,
            ts: 0,
            from: "bob".into(),
            text: "psst".into(),
        });
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
        let p = Event::Public(crate::ChatLine {
            room: String::new(),
            action: false,
            id: 1,
            ts: 0,
            from: "ev\u{1b}[2Jil".into(),
            text: "a\u{1b}]0;pwned\u{7}b\u{202E}cba\nx".into(),
        });
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
            Event::Public(ChatLine {
                room: String::new(),
                action: false,
                id: 1,
                ts: 0,
                from: a.clone(),
                text: b.clone(),
            }),
            Event::Private(ChatLine {
                room: String::new(),
                action: false,
                id: 1,
                ts: 0,
                from: a.clone(),
                text: b.clone(),
            }),
            Event::History(ChatLine {
                room: String::new(),
                action: false,
                id: 1,
                ts: 0,
                from: a.clone(),
                text: b.clone(),
            }),
            Event::Offline(ChatLine {
                room: String::new(),
                action: false,
                id: 1,
                ts: 0,
                from: a.clone(),
                text: b.clone(),
            }),
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
            Event::Secure(E2eEvent::Ready {
                peer: a.clone(),
                key: [3; 32],
                trust: mm_common::e2e::Trust::New,
                by_peer: true,
            }),
            Event::Secure(E2eEvent::Message {
                peer: a.clone(),
                id: 1,
                text: b.clone(),
            }),
            Event::Secure(E2eEvent::Ended {
                peer: b.clone(),
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
                failure: Failure::NoKeys,
                unsent: vec![],
            }),
            Event::Secure(E2eEvent::Unreadable { peer: a.clone() }),
            Event::Secure(E2eEvent::Replayed { peer: b.clone() }),
        ];
        let mut lines = Vec::new();
        for style in [Style::PLAIN, Style { color: true }] {
            lines.extend(events.iter().flat_map(|e| event_lines(e, style)));
            let welcome = Welcome {
                nick: a.clone(),
                server: b.clone(),
                max_text_len: 1,
                rate_burst: 1,
                rate_per_sec: 1,
                online: vec![a.clone(), b.clone()],
                online_count: 2,
            };
            lines.push(welcome_line(&b, &welcome, style));
            for own in [
                render::own_public(&a, &b),
                render::own_private(&b, &a, &b, Delivery::Plain),
                render::own_private(&b, &a, &b, Delivery::Queued),
            ] {
                lines.extend(format(&own, style));
            }
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
                id: 1,
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
            id: 1,
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
        let failed = Event::Secure(E2eEvent::Failed {
            peer: "bob".into(),
            failure: Failure::NoKeys,
            unsent: vec![1, 2],
        });
        let line = event_line(&failed, Style::PLAIN).unwrap();
        assert!(
            line.contains("2 waiting messages were NOT sent") && line.contains("/insecure bob"),
            "{line}"
        );
        // A failure to fetch keys never claims anything went plain.
        let timeout = Event::Secure(E2eEvent::Failed {
            peer: "bob".into(),
            failure: Failure::Timeout,
            unsent: vec![1],
        });
        let line = event_line(&timeout, Style::PLAIN).unwrap();
        assert!(
            line.contains("Nothing goes unencrypted") && line.contains("NOT sent"),
            "{line}"
        );
        // Plain private lines never carry the secure marker.
        let p = Event::Private(ChatLine {
            room: String::new(),
            action: false,
            id: 1,
            ts: 0,
            from: "x".into(),
            text: "[secure] fake".into(),
        });
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
