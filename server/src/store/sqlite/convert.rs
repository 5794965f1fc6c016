//! How ids and times are stored: see [`crate::store::encode`].

pub(super) use crate::store::encode::{from_sql, to_sql};
