//! Pinned peer keys (trust on first use) and which of them the user verified.
//!
//! Pure data: the client reads and writes the file (`to_text`/`from_text`).

use std::collections::BTreeMap;

use crate::identity::{hex, parse_key, KEY_LEN};
use crate::protocol::nick_key;

/// What the user knows about one peer's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pin {
    /// The pinned public key.
    pub key: [u8; KEY_LEN],
    /// Whether the user compared the safety number and said it matched.
    pub verified: bool,
}

/// How a presented key compares with the pin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinCheck {
    /// Never seen this peer: the key will be pinned (trust on first use).
    New,
    /// Matches the pin.
    Pinned {
        /// Whether the user verified it.
        verified: bool,
    },
    /// Differs from the pin: possibly an attack.
    Changed {
        /// The pinned key.
        pinned: [u8; KEY_LEN],
    },
}

/// Pins by nick (case-insensitive).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pins {
    by_nick: BTreeMap<String, Pin>,
}

impl Pins {
    /// Compares `key` with the pin for `nick`.
    pub fn check(&self, nick: &str, key: &[u8; KEY_LEN]) -> PinCheck {
        match self.by_nick.get(&nick_key(nick)) {
            None => PinCheck::New,
            Some(pin) if pin.key == *key => PinCheck::Pinned {
                verified: pin.verified,
            },
            Some(pin) => PinCheck::Changed { pinned: pin.key },
        }
    }

    /// The pin for `nick`.
    pub fn get(&self, nick: &str) -> Option<Pin> {
        self.by_nick.get(&nick_key(nick)).copied()
    }

    /// Pins `key` for `nick` if it has no pin yet; returns whether it did.
    pub fn pin_new(&mut self, nick: &str, key: &[u8; KEY_LEN]) -> bool {
        let key_name = nick_key(nick);
        if self.by_nick.contains_key(&key_name) {
            return false;
        }
        self.by_nick.insert(
            key_name,
            Pin {
                key: *key,
                verified: false,
            },
        );
        true
    }

    /// How many keys are pinned.
    pub fn len(&self) -> usize {
        self.by_nick.len()
    }

    /// Whether no key is pinned.
    pub fn is_empty(&self) -> bool {
        self.by_nick.is_empty()
    }

    /// The pins, by folded nick, in nick order.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Pin)> {
        self.by_nick.iter()
    }

    /// Drops the pin for `nick` (to make room); returns whether there was one.
    pub fn remove(&mut self, nick: &str) -> bool {
        self.by_nick.remove(&nick_key(nick)).is_some()
    }

    /// Replaces the pin (after the user accepted a changed key). Clears "verified".
    pub fn replace(&mut self, nick: &str, key: &[u8; KEY_LEN]) {
        self.by_nick.insert(
            nick_key(nick),
            Pin {
                key: *key,
                verified: false,
            },
        );
    }

    /// Marks the pinned key as verified; false if there is no pin.
    pub fn mark_verified(&mut self, nick: &str) -> bool {
        match self.by_nick.get_mut(&nick_key(nick)) {
            Some(pin) => {
                pin.verified = true;
                true
            }
            None => false,
        }
    }

    /// The file form: one line per peer, `nick hexkey verified|unverified`.
    pub fn to_text(&self) -> String {
        let mut out =
            String::from("# multi-messenger pinned keys: nick, X25519 public key, verified?\n");
        for (nick, pin) in &self.by_nick {
            let state = if pin.verified {
                "verified"
            } else {
                "unverified"
            };
            out.push_str(&format!("{nick} {} {state}\n", hex(&pin.key)));
        }
        out
    }

    /// Parses [`Pins::to_text`]'s format.
    ///
    /// # Errors
    /// The 1-based number of the first damaged line. A damaged pins file must not be half-read:
    /// a lost pin would silently turn a key change into a "new" key.
    pub fn from_text(text: &str) -> Result<Pins, usize> {
        let mut pins = Pins::default();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (nick, key, state) = match fields.as_slice() {
                [nick, key, state] => (*nick, *key, *state),
                _ => return Err(i + 1),
            };
            let key = parse_key(key).ok_or(i + 1)?;
            let verified = match state {
                "verified" => true,
                "unverified" => false,
                _ => return Err(i + 1),
            };
            pins.by_nick.insert(nick_key(nick), Pin { key, verified });
        }
        Ok(pins)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trust_on_first_use_then_change_detection() {
        let mut pins = Pins::default();
        assert_eq!(pins.check("Bob", &[1; 32]), PinCheck::New);
        assert!(pins.pin_new("Bob", &[1; 32]));
        assert!(
            !pins.pin_new("bob", &[2; 32]),
            "an existing pin is never overwritten silently"
        );
        assert_eq!(
            pins.check("bob", &[1; 32]),
            PinCheck::Pinned { verified: false }
        );
        assert_eq!(
            pins.check("BOB", &[2; 32]),
            PinCheck::Changed { pinned: [1; 32] }
        );
        assert!(pins.mark_verified("bob"));
        assert_eq!(
            pins.check("bob", &[1; 32]),
            PinCheck::Pinned { verified: true }
        );
        pins.replace("bob", &[2; 32]);
        assert_eq!(
            pins.check("bob", &[2; 32]),
            PinCheck::Pinned { verified: false },
            "accepting a new key clears verified"
        );
        assert!(!pins.mark_verified("carol"));
    }

    #[test]
    fn text_round_trip_and_damage_is_an_error() {
        let mut pins = Pins::default();
        pins.pin_new("alice", &[7; 32]);
        pins.pin_new("bob", &[9; 32]);
        pins.mark_verified("bob");
        assert_eq!(Pins::from_text(&pins.to_text()).unwrap(), pins);
        assert_eq!(Pins::from_text("# c\nbob 0707 verified\n"), Err(2));
        assert_eq!(
            Pins::from_text(&format!("bob {} maybe\n", "07".repeat(32))),
            Err(1)
        );
        assert_eq!(Pins::from_text("bob\n"), Err(1));
    }
}
