//! Tests of [`super`], with a stand-in for the connection ([`Fake`]).

use std::cell::RefCell;

use super::*;
use crate::display::{self, Style};
use crate::render::Kind;

/// A connection that records what it was asked and answers as told.
struct Fake {
    calls: RefCell<Vec<String>>,
    /// What private lines and session commands answer.
    refuse: Option<SendError>,
    delivery: Delivery,
    status: Status,
    number: Result<String, Refused>,
    max: usize,
    /// Where the next `/list` page starts.
    next: String,
}

impl Fake {
    fn new() -> Fake {
        Fake {
            calls: RefCell::new(Vec::new()),
            refuse: None,
            delivery: Delivery::Plain,
            status: Status::Plain,
            number: Ok("11111 22222 33333 44444 55555".into()),
            max: 4096,
            next: String::new(),
        }
    }

    fn call(&self, what: String) {
        self.calls.borrow_mut().push(what);
    }

    fn answer(&self) -> Result<(), SendError> {
        self.refuse.clone().map_or(Ok(()), Err)
    }
}

impl Chat for Fake {
    fn nick(&self) -> &str {
        "me"
    }
    fn max_text_len(&self) -> usize {
        self.max
    }
    async fn public(&self, text: &str) -> Result<LineId, NotConnected> {
        self.call(format!("public {text}"));
        match self.refuse {
            Some(SendError::NotConnected) => Err(NotConnected),
            _ => Ok(LineId::from_tag(1)),
        }
    }
    async fn private(&self, to: &str, text: &str) -> Result<(LineId, Delivery), SendError> {
        self.call(format!("private {to} {text}"));
        self.answer().map(|()| (LineId::from_tag(2), self.delivery))
    }
    async fn who(&self) -> Result<(), NotConnected> {
        self.call("who".into());
        self.answer().map_err(|_| NotConnected)
    }
    async fn secure(&self, peer: &str) -> Result<(), SendError> {
        self.call(format!("secure {peer}"));
        self.answer()
    }
    async fn insecure(&self, peer: &str) -> Result<(), SendError> {
        self.call(format!("insecure {peer}"));
        self.answer()
    }
    async fn accept_key(&self, peer: &str) -> Result<(), SendError> {
        self.call(format!("accept-key {peer}"));
        self.answer()
    }
    async fn mark_verified(&self, peer: &str) -> Result<(), SendError> {
        self.call(format!("verified {peer}"));
        self.answer()
    }
    fn safety_number(&self, peer: &str) -> Result<String, Refused> {
        self.call(format!("safety-number {peer}"));
        self.number.clone()
    }
    fn secure_status(&self, _peer: &str) -> Status {
        self.status.clone()
    }
    async fn say(&self, room: &str, text: &str, action: bool) -> Result<LineId, NotConnected> {
        self.call(format!("say {room} {text} {action}"));
        match self.refuse {
            Some(SendError::NotConnected) => Err(NotConnected),
            _ => Ok(LineId::from_tag(3)),
        }
    }
    async fn room_command(&self, msg: ClientMsg) -> Result<(), NotConnected> {
        self.call(format!("{msg:?}"));
        self.answer().map_err(|_| NotConnected)
    }
    fn list_next(&self) -> String {
        self.next.clone()
    }
    fn ignore(&self, nick: &str, on: bool) -> Result<bool, String> {
        self.call(format!("ignore {nick} {on}"));
        Ok(true)
    }
    fn ignored(&self) -> Vec<String> {
        vec!["eve".into()]
    }
}

/// What a command showed: items, and own lines with their handles.
#[derive(Default)]
struct Shown {
    items: Vec<Rendered>,
    own: Vec<(Rendered, LineId)>,
}

impl Sink for Shown {
    fn show(&mut self, item: Rendered) {
        self.items.push(item);
    }
    fn own(&mut self, item: Rendered, line: LineId) {
        self.own.push((item, line));
    }
}

impl Shown {
    /// The items as line mode prints them.
    fn lines(&self) -> Vec<String> {
        self.items
            .iter()
            .filter_map(|i| display::format(i, Style::PLAIN))
            .collect()
    }
}

fn run(fake: &Fake, command: Command) -> (Outcome, Shown) {
    let mut shown = Shown::default();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    let outcome = runtime.block_on(execute(fake, command, &mut shown));
    (outcome, shown)
}

#[test]
fn chat_lines_go_and_are_handed_back_as_own_lines() {
    let fake = Fake::new();
    let (outcome, shown) = run(&fake, Command::Say("hello".into()));
    assert_eq!(outcome, Outcome::Done);
    assert!(shown.items.is_empty());
    assert_eq!(
        shown.own,
        [(render::own_public("me", "hello"), LineId::from_tag(1))]
    );
    let mut fake = Fake::new();
    fake.delivery = Delivery::Queued;
    let (outcome, shown) = run(
        &fake,
        Command::Msg {
            to: "bob".into(),
            text: "psst".into(),
        },
    );
    assert_eq!(outcome, Outcome::Done);
    assert_eq!(
        shown.own,
        [(
            render::own_private("me", "bob", "psst", Delivery::Queued),
            LineId::from_tag(2)
        )]
    );
    assert_eq!(*fake.calls.borrow(), ["private bob psst"]);
}

#[test]
fn a_text_the_server_would_refuse_is_refused_before_sending() {
    let mut fake = Fake::new();
    fake.max = 10;
    for command in [
        Command::Say("x".repeat(11)),
        Command::Msg {
            to: "bob".into(),
            text: "bell\u{7}".into(),
        },
    ] {
        let (outcome, shown) = run(&fake, command);
        assert_eq!(outcome, Outcome::Refused);
        assert!(shown.own.is_empty());
        assert_eq!(shown.items.len(), 1);
        assert_eq!(shown.items[0].kind, Kind::Error);
    }
    assert!(fake.calls.borrow().is_empty(), "nothing sent");
    let (_, shown) = run(&fake, Command::Say("x".repeat(11)));
    assert_eq!(
        shown.lines(),
        ["! error (text-too-long): message of 11 bytes is over the limit of 10 bytes"]
    );
    assert_eq!(
        text_refusal("fine", 10),
        None,
        "what may be sent is not refused"
    );
}

#[test]
fn a_closed_connection_shows_nothing_and_says_so() {
    let mut fake = Fake::new();
    fake.refuse = Some(SendError::NotConnected);
    for command in [
        Command::Say("hi".into()),
        Command::Msg {
            to: "bob".into(),
            text: "hi".into(),
        },
        Command::Who,
        Command::Secure("bob".into()),
    ] {
        let (outcome, shown) = run(&fake, command);
        assert_eq!(outcome, Outcome::NotConnected);
        assert!(shown.items.is_empty() && shown.own.is_empty());
    }
}

#[test]
fn a_full_peer_table_is_refused_in_plain_words_for_msg_and_insecure() {
    let mut fake = Fake::new();
    fake.refuse = Some(SendError::Refused(Refused::TooManyPeers));
    for command in [
        Command::Msg {
            to: "newfriend".into(),
            text: "hi".into(),
        },
        Command::Insecure("newfriend".into()),
    ] {
        let (outcome, shown) = run(&fake, command);
        assert_eq!(outcome, Outcome::Refused);
        assert_eq!(
            shown.lines(),
            ["! too many end-to-end conversations (4096 people, the most kept): nothing was sent or changed"]
        );
        assert!(shown.own.is_empty());
    }
}

#[test]
fn a_refusal_of_the_end_to_end_layer_is_shown_as_worded() {
    let mut fake = Fake::new();
    let refused = Refused::KeyNotAccepted("bob".into());
    fake.refuse = Some(SendError::Refused(refused.clone()));
    let (outcome, shown) = run(
        &fake,
        Command::Msg {
            to: "bob".into(),
            text: "hi".into(),
        },
    );
    assert_eq!(outcome, Outcome::Refused);
    assert_eq!(shown.items, [Rendered::error(refused.to_string())]);
    assert!(shown.lines()[0].starts_with("! bob's key changed and nothing was sent"));
    let (outcome, _) = run(&fake, Command::Insecure("bob".into()));
    assert_eq!(outcome, Outcome::Refused);
}

#[test]
fn verify_shows_the_number_and_how_to_compare_it() {
    let fake = Fake::new();
    let (outcome, shown) = run(&fake, Command::Verify("bob".into()));
    assert_eq!(outcome, Outcome::Done);
    assert_eq!(
        shown.lines(),
        [
            "* safety number with bob: 11111 22222 33333 44444 55555",
            "* compare it with the one bob sees, in person or by phone; if they are the same: /verified bob",
        ]
    );
    let mut fake = Fake::new();
    fake.status = Status::Failed(Failure::KeyChanged {
        pinned: [1; 32],
        presented: [2; 32],
    });
    let (_, shown) = run(&fake, Command::Verify("bob".into()));
    assert_eq!(
        shown.items,
        verify_items("bob", "11111 22222 33333 44444 55555", true)
    );
    assert!(shown.lines()[1].ends_with("/accept-key bob, then /verified bob"));
    let mut fake = Fake::new();
    fake.number = Err(Refused::NoKey("bob".into()));
    let (outcome, shown) = run(&fake, Command::Verify("bob".into()));
    assert_eq!(outcome, Outcome::Refused);
    assert_eq!(
        shown.lines(),
        ["! no key known for bob yet; /secure bob fetches it"]
    );
}

#[test]
fn verified_accept_key_secure_insecure_and_who() {
    let fake = Fake::new();
    let (_, shown) = run(&fake, Command::Verified("bob".into()));
    assert_eq!(shown.lines(), ["* bob's key is now marked as verified"]);
    let (_, shown) = run(&fake, Command::AcceptKey("bob".into()));
    assert_eq!(
        shown.lines(),
        ["* accepted bob's new key (pinned, not verified); a new secure session starts. /verify bob to compare safety numbers"]
    );
    for command in [
        Command::Secure("bob".into()),
        Command::Insecure("bob".into()),
        Command::Who,
    ] {
        let (outcome, shown) = run(&fake, command);
        assert_eq!(outcome, Outcome::Done);
        assert!(shown.items.is_empty(), "the events say how it went");
    }
    assert_eq!(
        *fake.calls.borrow(),
        [
            "verified bob",
            "accept-key bob",
            "secure bob",
            "insecure bob",
            "who"
        ]
    );
}

#[test]
fn help_nothing_and_quit() {
    let fake = Fake::new();
    let (outcome, shown) = run(&fake, Command::Help);
    assert_eq!(outcome, Outcome::Done);
    assert_eq!(shown.items, render::help());
    assert_eq!(shown.lines()[0], "* commands:");
    assert_eq!(run(&fake, Command::Nothing).0, Outcome::Done);
    assert_eq!(run(&fake, Command::Quit).0, Outcome::Quit);
    assert!(fake.calls.borrow().is_empty());
}

fn parsed(line: &str) -> Command {
    command::parse(line).expect(line)
}

#[test]
fn room_commands_go_as_room_messages_and_need_a_room_in_line_mode() {
    let fake = Fake::new();
    let (outcome, shown) = run(&fake, parsed("/join #dev"));
    assert_eq!(outcome, Outcome::Done);
    assert!(shown.items.is_empty());
    let (outcome, shown) = run(&fake, parsed("/topic #dev friday"));
    assert_eq!(outcome, Outcome::Done);
    assert!(shown.items.is_empty());
    let (outcome, shown) = run(&fake, parsed("/kick bob"));
    assert_eq!(outcome, Outcome::Refused);
    assert_eq!(shown.lines(), ["! which room? /kick #ROOM NICK [REASON]"]);
    let (outcome, shown) = run(&fake, parsed("/list more"));
    assert_eq!(outcome, Outcome::Refused);
    assert_eq!(
        shown.lines(),
        ["! no more rooms to list (/list starts again)"]
    );
    // /names without a room in line mode lists who is online, as before.
    run(&fake, parsed("/names"));
    let (_, shown) = run(&fake, parsed("/me #dev waves"));
    assert_eq!(
        shown
            .own
            .iter()
            .map(|(i, _)| display::format(i, Style::PLAIN))
            .collect::<Vec<_>>(),
        [Some("[#dev] * me waves".to_owned())]
    );
    let (_, shown) = run(&fake, parsed("/me dances"));
    assert_eq!(
        shown
            .own
            .iter()
            .map(|(i, _)| display::format(i, Style::PLAIN))
            .collect::<Vec<_>>(),
        [Some("* me dances".to_owned())]
    );
    run(&fake, parsed("/msg #dev hello"));
    run(&fake, parsed("/mode #dev +i"));
    run(&fake, parsed("/away lunch"));
    assert_eq!(
        *fake.calls.borrow(),
        [
            "Join { room: \"#dev\" }",
            "Topic { room: \"#dev\", topic: Some(\"friday\") }",
            "who",
            "say #dev waves true",
            "say #lobby dances true",
            "say #dev hello false",
            "Mode { room: \"#dev\", mode: InviteOnly, on: true }",
            "Away { message: \"lunch\" }",
        ]
    );
}

/// A sink looking at a room tab.
#[derive(Default)]
struct InRoom(Shown);

impl Sink for InRoom {
    fn show(&mut self, item: Rendered) {
        self.0.show(item);
    }
    fn own(&mut self, item: Rendered, line: LineId) {
        self.0.own(item, line);
    }
    fn room(&self) -> Option<String> {
        Some("#dev".into())
    }
}

#[test]
fn in_a_room_tab_room_commands_default_to_it() {
    let fake = Fake::new();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    let mut sink = InRoom::default();
    for line in ["/kick bob", "/names", "/me waves", "/topic", "/part"] {
        let outcome = runtime.block_on(execute(&fake, parsed(line), &mut sink));
        assert_eq!(outcome, Outcome::Done, "{line}");
    }
    assert_eq!(
        *fake.calls.borrow(),
        [
            "Kick { room: \"#dev\", nick: \"bob\", reason: \"\" }",
            "Names { room: \"#dev\" }",
            "say #dev waves true",
            "Topic { room: \"#dev\", topic: None }",
            "Part { room: \"#dev\", reason: \"\" }",
        ]
    );
}

#[test]
fn ignore_lists_adds_and_removes() {
    let fake = Fake::new();
    let (_, shown) = run(&fake, parsed("/ignore"));
    assert_eq!(shown.lines(), ["* ignored (1): eve"]);
    let (_, shown) = run(&fake, parsed("/ignore bob"));
    assert_eq!(
        shown.lines(),
        ["* ignoring bob: their room and private lines are hidden (/unignore bob to undo)"]
    );
    let (_, shown) = run(&fake, parsed("/unignore bob"));
    assert_eq!(shown.lines(), ["* no longer ignoring bob"]);
}
