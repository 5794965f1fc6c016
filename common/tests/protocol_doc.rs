//! PROTOCOL.md's "Example bytes" cannot drift from the code: every example there is read from
//! the document, the message it states is built from its text, and the bytes it states are
//! compared with `frame::encode` of that message and decoded back to it.
//!
//! The format (documented in PROTOCOL.md): inside the fenced blocks of the "Example bytes"
//! section, an example starts with a line `client MESSAGE` or `server MESSAGE`; the message may
//! go on over the following lines; a line starting with `=` (after any indentation) ends it
//! and holds the frame's bytes as hex pairs (header included). `MESSAGE` is written like Rust's
//! `Debug` form: `Variant { field: value, ... }` or a bare `Variant`; values are `"strings"`
//! (escapes `\"` and `\\` only), unsigned numbers (an `ErrorCode` is its number), `true`,
//! `false`, `None`, `Some(value)`, `[lists]`, unit variants such as `Owner`, and structs such
//! as `Modes { ... }`. Every field must be written, in any order; an unknown or missing field
//! fails the test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;

use mm_common::frame;
use mm_common::protocol::{ClientMsg, ServerMsg};
use serde_json::{Map, Value};

/// One example: who sends it, the message as written, the bytes as written.
struct Example {
    line: usize,
    side: Side,
    text: String,
    bytes: Vec<u8>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Side {
    Client,
    Server,
}

fn protocol_md() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../PROTOCOL.md");
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

/// The examples in the fenced blocks of the "## Example bytes" section.
fn examples(doc: &str) -> Vec<Example> {
    let mut out = Vec::new();
    let mut in_section = false;
    let mut in_block = false;
    let mut current: Option<(usize, Side, String)> = None;
    for (i, raw) in doc.lines().enumerate() {
        let line_no = i + 1;
        if raw.starts_with("## ") {
            in_section = raw.trim() == "## Example bytes";
            continue;
        }
        if !in_section {
            continue;
        }
        if raw.trim_start().starts_with("```") {
            assert!(
                current.is_none(),
                "PROTOCOL.md:{line_no}: a block ends inside an example"
            );
            in_block = !in_block;
            continue;
        }
        if !in_block {
            continue;
        }
        let trimmed = raw.trim();
        if let Some(hex) = trimmed.strip_prefix('=') {
            let (start, side, text) = current
                .take()
                .unwrap_or_else(|| panic!("PROTOCOL.md:{line_no}: bytes without a message"));
            out.push(Example {
                line: start,
                side,
                text,
                bytes: parse_hex(hex, line_no),
            });
        } else if let Some(rest) = trimmed.strip_prefix("client ") {
            assert!(
                current.is_none(),
                "PROTOCOL.md:{line_no}: previous example has no bytes"
            );
            current = Some((line_no, Side::Client, rest.to_owned()));
        } else if let Some(rest) = trimmed.strip_prefix("server ") {
            assert!(
                current.is_none(),
                "PROTOCOL.md:{line_no}: previous example has no bytes"
            );
            current = Some((line_no, Side::Server, rest.to_owned()));
        } else if let Some((_, _, text)) = current.as_mut() {
            text.push(' ');
            text.push_str(trimmed);
        } else {
            assert!(
                trimmed.is_empty(),
                "PROTOCOL.md:{line_no}: not part of an example: {trimmed:?}"
            );
        }
    }
    assert!(
        current.is_none(),
        "PROTOCOL.md: the last example has no bytes"
    );
    out
}

fn parse_hex(hex: &str, line_no: usize) -> Vec<u8> {
    hex.split_whitespace()
        .map(|pair| {
            assert_eq!(
                pair.len(),
                2,
                "PROTOCOL.md:{line_no}: {pair:?} is not one hex byte"
            );
            u8::from_str_radix(pair, 16)
                .unwrap_or_else(|_| panic!("PROTOCOL.md:{line_no}: {pair:?} is not hex"))
        })
        .collect()
}

/// A tiny reader of the `Debug`-like message text, into serde's JSON form of the message
/// (externally tagged enums), so that `serde_json` builds the message itself.
struct Reader<'a> {
    s: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn fail(&self, what: &str) -> ! {
        panic!(
            "{what} at byte {} of {:?}",
            self.pos,
            String::from_utf8_lossy(self.s)
        )
    }

    fn skip_ws(&mut self) {
        while self.pos < self.s.len() && self.s[self.pos].is_ascii_whitespace() {
            self.pos += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.skip_ws();
        self.s.get(self.pos).copied()
    }

    fn expect(&mut self, c: u8) {
        if self.peek() != Some(c) {
            self.fail(&format!("expected {:?}", c as char));
        }
        self.pos += 1;
    }

    fn ident(&mut self) -> String {
        self.skip_ws();
        let start = self.pos;
        while self.pos < self.s.len()
            && (self.s[self.pos].is_ascii_alphanumeric() || self.s[self.pos] == b'_')
        {
            self.pos += 1;
        }
        if start == self.pos {
            self.fail("expected a name");
        }
        String::from_utf8(self.s[start..self.pos].to_vec()).unwrap()
    }

    /// `{ field: value, ... }` after a name.
    fn fields(&mut self) -> Map<String, Value> {
        self.expect(b'{');
        let mut map = Map::new();
        loop {
            if self.peek() == Some(b'}') {
                self.pos += 1;
                return map;
            }
            let name = self.ident();
            self.expect(b':');
            let value = self.value();
            if map.insert(name.clone(), value).is_some() {
                self.fail(&format!("field {name} twice"));
            }
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {}
                _ => self.fail("expected , or }"),
            }
        }
    }

    fn string(&mut self) -> String {
        self.expect(b'"');
        let mut out = Vec::new();
        loop {
            match self.s.get(self.pos).copied() {
                None => self.fail("unterminated string"),
                Some(b'"') => {
                    self.pos += 1;
                    return String::from_utf8(out).unwrap();
                }
                Some(b'\\') => {
                    match self.s.get(self.pos + 1).copied() {
                        Some(c @ (b'"' | b'\\')) => out.push(c),
                        _ => self.fail("unknown escape"),
                    }
                    self.pos += 2;
                }
                Some(c) => {
                    out.push(c);
                    self.pos += 1;
                }
            }
        }
    }

    fn value(&mut self) -> Value {
        match self.peek() {
            Some(b'"') => Value::String(self.string()),
            Some(b'[') => {
                self.pos += 1;
                let mut items = Vec::new();
                loop {
                    if self.peek() == Some(b']') {
                        self.pos += 1;
                        return Value::Array(items);
                    }
                    items.push(self.value());
                    match self.peek() {
                        Some(b',') => self.pos += 1,
                        Some(b']') => {}
                        _ => self.fail("expected , or ]"),
                    }
                }
            }
            Some(c) if c.is_ascii_digit() => {
                let start = self.pos;
                while self.pos < self.s.len() && self.s[self.pos].is_ascii_digit() {
                    self.pos += 1;
                }
                let digits = std::str::from_utf8(&self.s[start..self.pos]).unwrap();
                Value::from(
                    digits
                        .parse::<u64>()
                        .unwrap_or_else(|_| self.fail("bad number")),
                )
            }
            Some(_) => {
                let name = self.ident();
                match name.as_str() {
                    "true" => Value::Bool(true),
                    "false" => Value::Bool(false),
                    "None" => Value::Null,
                    "Some" => {
                        self.expect(b'(');
                        let v = self.value();
                        self.expect(b')');
                        v
                    }
                    // A struct field's struct (`Modes { ... }`): its name is not on the wire.
                    _ if self.peek() == Some(b'{') => Value::Object(self.fields()),
                    // A unit variant (`Owner`, `InviteOnly`, `Ban`).
                    _ => Value::String(name),
                }
            }
            None => self.fail("expected a value"),
        }
    }

    /// The whole message: `Variant { ... }` or `Variant`, in serde's externally tagged form.
    fn message(mut self) -> (String, Value) {
        let variant = self.ident();
        let value = if self.peek() == Some(b'{') {
            let mut outer = Map::new();
            outer.insert(variant.clone(), Value::Object(self.fields()));
            Value::Object(outer)
        } else {
            Value::String(variant.clone())
        };
        if self.peek().is_some() {
            self.fail("text after the message");
        }
        (variant, value)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Checks one side's example: the text builds exactly the message (no field left out or
/// unknown), the message encodes to the bytes, and the bytes decode to the message.
fn check<M>(ex: &Example, json: Value, decode: fn(&[u8]) -> Result<M, String>)
where
    M: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let at = format!("PROTOCOL.md:{}: {:?} {}", ex.line, ex.side, ex.text);
    let msg: M =
        serde_json::from_value(json.clone()).unwrap_or_else(|e| panic!("{at}: not a message: {e}"));
    assert_eq!(
        serde_json::to_value(&msg).unwrap(),
        json,
        "{at}: the text holds fields the message does not"
    );
    let encoded = frame::encode(&msg).unwrap();
    assert_eq!(
        hex(&ex.bytes),
        hex(&encoded),
        "{at}: the bytes in the document (left) are not the encoding (right)"
    );
    let len = frame::check(&ex.bytes).unwrap_or_else(|e| panic!("{at}: bad header: {e}"));
    assert_eq!(
        len + frame::HEADER_LEN,
        ex.bytes.len(),
        "{at}: length prefix"
    );
    let decoded =
        decode(&ex.bytes[frame::HEADER_LEN..]).unwrap_or_else(|e| panic!("{at}: decode: {e}"));
    assert_eq!(decoded, msg, "{at}: the bytes decode to another message");
}

#[test]
fn every_example_in_protocol_md_is_the_encoding_of_its_message() {
    let doc = protocol_md();
    let examples = examples(&doc);
    let mut seen = BTreeSet::new();
    for ex in &examples {
        let (variant, json) = Reader {
            s: ex.text.as_bytes(),
            pos: 0,
        }
        .message();
        match ex.side {
            Side::Client => check::<ClientMsg>(ex, json, |p| {
                ClientMsg::decode(p).map_err(|e| e.to_string())
            }),
            Side::Server => check::<ServerMsg>(ex, json, |p| {
                ServerMsg::decode(p).map_err(|e| e.to_string())
            }),
        }
        seen.insert(format!(
            "{} {variant}",
            if ex.side == Side::Client {
                "client"
            } else {
                "server"
            }
        ));
    }
    // The examples the document promises, at least.
    for needed in [
        "client Hello",
        "client Public",
        "client Join",
        "client Mode",
        "server RoomError",
        "server Entered",
        "server Names",
        "server Parted",
    ] {
        assert!(
            seen.contains(needed),
            "PROTOCOL.md's Example bytes has no {needed} (it has {seen:?})"
        );
    }
}

#[test]
fn the_hello_example_speaks_the_current_version() {
    let doc = protocol_md();
    let hello = examples(&doc)
        .into_iter()
        .find(|e| e.side == Side::Client && e.text.starts_with("Hello"))
        .expect("a Hello example");
    let (_, json) = Reader {
        s: hello.text.as_bytes(),
        pos: 0,
    }
    .message();
    assert_eq!(
        json["Hello"]["version"],
        Value::from(mm_common::protocol::PROTOCOL_VERSION),
        "PROTOCOL.md:{}: the Hello example should show the current protocol version",
        hello.line
    );
}

#[test]
fn the_reader_refuses_what_it_does_not_understand() {
    for bad in [
        "Join { room: \"#dev\" ",
        "Join { room: #dev }",
        "Join { room: \"#dev\" } x",
        "Join { room: \"#dev\", room: \"#x\" }",
        "Join { room: \"\\n\" }",
    ] {
        let result = std::panic::catch_unwind(|| {
            Reader {
                s: bad.as_bytes(),
                pos: 0,
            }
            .message()
        });
        assert!(result.is_err(), "{bad}");
    }
}
