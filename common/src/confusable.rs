//! Look-alike names: the *skeleton* of a nick (and, next, of a room name), after the idea of
//! Unicode Technical Standard #39, "Unicode Security Mechanisms", section 4 (Confusable
//! Detection): two names that a reader can mistake for each other map to the same skeleton,
//! so a server refuses a new name whose skeleton another name already has.
//!
//! UTS #39 defines `skeleton(X)` over all of Unicode with the data file `confusables.txt`. Nicks
//! are ASCII only (`A-Z a-z 0-9 _ -`, see [`crate::protocol::validate_nick`]), and of that file
//! only four entries have a source and a prototype inside this alphabet: `0 → O`, `1 → l`,
//! `I → l` and `m → rn` (`|` and the quotes are not nick characters). A crate shipping the whole
//! table (e.g. `unicode-security`) would add a dependency for those four lines and would still
//! be wrong for us in two ways, so this module has its own small table:
//!
//! - **Case.** UTS #39 skeletons are case-sensitive (`I → l`, `i` unchanged), but nicks are
//!   compared case-insensitively and the spelling used at login is the one others see: the
//!   owner of `aiice` may log in as `aIice`, which looks like `alice`. The table is therefore
//!   closed under ASCII case: `i`, `I`, `l`, `L`, `1` share one prototype. It applies to the
//!   nick as typed, before any case folding (folding first would turn `aIice` into `aiice` and
//!   miss it), and its result is lowercase, so `skeleton(x)` is also the skeleton of every case
//!   spelling of `x`.
//! - **Sequences.** `confusables.txt` maps single code points only; two common ASCII look-alike
//!   sequences are added the same way as its `m → rn`: `w → vv` and `d → cl`.
//!
//! The classes, each written as its prototype:
//!
//! | prototype | characters | source |
//! |---|---|---|
//! | `l` | `i I l L 1` | UTS #39 (`1 → l`, `I → l`), closed under case |
//! | `o` | `o O 0` | UTS #39 (`0 → O`), closed under case |
//! | `rn` | `m M` | UTS #39 (`m → rn`), closed under case |
//! | `vv` | `w W` | added (a sequence look-alike) |
//! | `cl` | `d D` | added (a sequence look-alike) |
//!
//! Every other character maps to its ASCII lowercase form (non-ASCII characters, which no
//! valid nick holds, pass unchanged).

/// The prototype of `c`, for the characters in a look-alike class.
fn prototype(c: char) -> Option<&'static str> {
    Some(match c {
        'i' | 'I' | 'l' | 'L' | '1' => "l",
        'o' | 'O' | '0' => "o",
        'm' | 'M' => "rn",
        'w' | 'W' => "vv",
        'd' | 'D' => "cl",
        _ => return None,
    })
}

/// The confusable skeleton of a name: two names with the same skeleton look alike (`alice`,
/// `aIice`, `A1ICE` and `ALlCE` all give `allce`; `mallory` and `rnallory` give `rnallory`;
/// `b0b` and `BOB` give `bob`).
///
/// Defined for the nick alphabet (see the module documentation for the table and why it is
/// ours); total and panic-free on any input. The result is lowercase ASCII for a valid nick, at
/// most twice its length, and:
/// - `skeleton(skeleton(x)) == skeleton(x)`;
/// - `skeleton(x)` is the same for every ASCII case spelling of `x`;
/// - replacing a character or sequence by one of its look-alikes keeps the skeleton.
///
/// Source: Unicode Technical Standard #39, section 4, <https://www.unicode.org/reports/tr39/>,
/// and its data file `confusables.txt`.
pub fn skeleton(name: &str) -> String {
    let mut out = String::with_capacity(name.len() * 2);
    for c in name.chars() {
        match prototype(c) {
            Some(p) => out.push_str(p),
            None => out.push(c.to_ascii_lowercase()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_look_alikes_of_the_issue_share_a_skeleton() {
        for (a, b) in [
            ("alice", "aIice"),
            ("alice", "a1ice"),
            ("alice", "ALICE"),
            ("alice", "AL1CE"),
            ("alice", "aiice"),
            ("bob", "b0b"),
            ("bob", "BOB"),
            ("bob", "B0B"),
            ("mallory", "rnallory"),
            ("Mallory", "RNALLORY"),
            ("walter", "vvalter"),
            ("WALTER", "VValter"),
            ("dave", "clave"),
            ("dave", "cIave"),
            ("dave", "c1ave"),
            ("Emma", "Ernrna"),
        ] {
            assert_eq!(skeleton(a), skeleton(b), "{a} / {b}");
        }
    }

    #[test]
    fn different_names_keep_different_skeletons() {
        for (a, b) in [
            ("alice", "alica"),
            ("bob", "rob"),
            ("bob", "bob_"),
            ("bob-1", "bob_1"),
            ("carol", "caro"),
            ("sam", "5am"),
        ] {
            assert_ne!(skeleton(a), skeleton(b), "{a} / {b}");
        }
    }

    #[test]
    fn skeletons_are_lowercase_and_never_panic() {
        assert_eq!(skeleton("AlIce"), "allce");
        assert_eq!(skeleton("Mom"), "rnorn");
        assert_eq!(skeleton(""), "");
        assert_eq!(skeleton("é|x"), "é|x");
    }
}
