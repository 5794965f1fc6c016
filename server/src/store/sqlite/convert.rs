//! How ids and times are stored: SQLite integers are `i64`; ids and times (ms since the Unix
//! epoch) are `u64`, far below 2⁶³.

/// A `u64` as SQLite stores it; `i64::MAX` beyond (never reached).
pub(super) fn to_sql(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A stored integer as a `u64`; 0 if negative (never written).
pub(super) fn from_sql(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}
