//! How values are stored, the same in every backend: ids and times as signed 64-bit integers,
//! modes as bit flags, standings as small numbers, and the kinds of `mm-server rooms` requests.

use mm_common::protocol::{Modes, Role};
use tracing::warn;

use crate::store::RoomRequest;

/// A `u64` (an id, or ms since the Unix epoch, far below 2⁶³) as stored; `i64::MAX` beyond
/// (never reached).
pub(crate) fn to_sql(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A stored integer as a `u64`; 0 if negative (never written).
pub(crate) fn from_sql(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// `modes` bit: `+i`, invite-only.
const INVITE_ONLY: i64 = 1;
/// `modes` bit: `+t`, topic settable by operators only.
const TOPIC_OPS: i64 = 2;
/// `modes` bit: `+m`, moderated.
const MODERATED: i64 = 4;

/// `room_requests.kind` of a deletion.
pub(crate) const KIND_DELETE: &str = "delete";
/// `room_requests.kind` of a change of owner.
pub(crate) const KIND_SET_OWNER: &str = "set-owner";

/// `modes` as stored: bit flags.
pub(crate) fn modes_bits(modes: Modes) -> i64 {
    let mut bits = 0;
    if modes.invite_only {
        bits |= INVITE_ONLY;
    }
    if modes.topic_ops {
        bits |= TOPIC_OPS;
    }
    if modes.moderated {
        bits |= MODERATED;
    }
    bits
}

/// Stored bit flags as modes; unknown bits are ignored.
pub(crate) fn modes_from_bits(bits: i64) -> Modes {
    Modes {
        invite_only: bits & INVITE_ONLY != 0,
        topic_ops: bits & TOPIC_OPS != 0,
        moderated: bits & MODERATED != 0,
    }
}

/// A standing as stored: 0 member, 1 voiced, 2 operator, 3 owner.
pub(crate) fn role_to_sql(role: Role) -> i64 {
    match role {
        Role::Member => 0,
        Role::Voiced => 1,
        Role::Op => 2,
        Role::Owner => 3,
    }
}

/// A stored standing; a value this build does not know (never written) is the lowest, a member.
pub(crate) fn role_from_sql(v: i64) -> Role {
    match v {
        1 => Role::Voiced,
        2 => Role::Op,
        3 => Role::Owner,
        _ => Role::Member,
    }
}

/// A stored request (`room_requests`: id, kind, room key, nick) as the hub takes it; one of a
/// kind this build does not know (never written by it) is logged and dropped.
pub(crate) fn request_from_row(
    id: i64,
    kind: &str,
    room_key: String,
    nick: String,
) -> Option<RoomRequest> {
    match kind {
        KIND_DELETE => Some(RoomRequest::Delete { room_key }),
        KIND_SET_OWNER => Some(RoomRequest::SetOwner { room_key, nick }),
        _ => {
            warn!(
                id,
                kind, "store: a room request of an unknown kind is dropped"
            );
            None
        }
    }
}
