//! The key directory (schema 5, protocol 6): `prekeys` holds each account's identity key,
//! signed prekey and device token; `one_time_prekeys` its one-time prekeys, handed out once
//! (read and deleted in one transaction: the writer's batch).

use mm_common::identity::KEY_LEN;
use mm_common::prekeys::{
    KeyUpload, OneTimePrekey, PrekeyBundle, SignedPrekey, DEVICE_TOKEN_LEN, MAX_ONE_TIME_STORED,
};
use rusqlite::{params, Connection, OptionalExtension};

use super::accounts;
use crate::store::command::device_check;
use crate::store::{Published, Taken};

/// A stored blob as a fixed-size key; a wrong length is a damaged row.
fn fixed<const N: usize>(blob: Vec<u8>, column: usize) -> rusqlite::Result<[u8; N]> {
    let len = blob.len();
    <[u8; N]>::try_from(blob).map_err(|_| {
        rusqlite::Error::FromSqlConversionFailure(
            column,
            rusqlite::types::Type::Blob,
            format!("a stored key is {len} bytes, not {N}").into(),
        )
    })
}

fn count(n: i64) -> u32 {
    u32::try_from(n).unwrap_or(0)
}

/// How many one-time prekeys `key` has.
fn one_time_count(conn: &Connection, key: &str) -> rusqlite::Result<u32> {
    conn.prepare_cached("SELECT COUNT(*) FROM one_time_prekeys WHERE nick_key = ?1")?
        .query_row([key], |r| r.get(0))
        .map(count)
}

/// Stores an upload for the account `key` (see [`crate::store::Store::publish_keys`]).
/// `Ok(None)`: no such account, nothing stored.
pub(super) fn publish(
    tx: &Connection,
    key: &str,
    keys: &KeyUpload,
) -> rusqlite::Result<Option<Published>> {
    if !accounts::exists(tx, key)? {
        return Ok(None);
    }
    let stored: Option<(Vec<u8>, Vec<u8>)> = tx
        .prepare_cached("SELECT identity, device FROM prekeys WHERE nick_key = ?1")?
        .query_row([key], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let (other_device, drop_one_time) = device_check(
        stored.as_ref().map(|(i, d)| (i.as_slice(), d.as_slice())),
        keys,
    );
    if drop_one_time {
        forget_one_time(tx, key)?;
    }
    tx.prepare_cached(
        "INSERT INTO prekeys (nick_key, identity, signed_id, signed_key, signature, device)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (nick_key) DO UPDATE SET identity = excluded.identity,
             signed_id = excluded.signed_id, signed_key = excluded.signed_key,
             signature = excluded.signature, device = excluded.device",
    )?
    .execute(params![
        key,
        &keys.identity[..],
        keys.signed_prekey.id,
        &keys.signed_prekey.key[..],
        &keys.signed_prekey.signature,
        &keys.device.next[..],
    ])?;
    {
        // A one-time prekey whose id is stored replaces it (as the newest).
        let mut replace =
            tx.prepare_cached("DELETE FROM one_time_prekeys WHERE nick_key = ?1 AND id = ?2")?;
        let mut insert = tx.prepare_cached(
            "INSERT INTO one_time_prekeys (nick_key, id, key) VALUES (?1, ?2, ?3)",
        )?;
        for k in &keys.one_time {
            replace.execute(params![key, k.id])?;
            insert.execute(params![key, k.id, &k.key[..]])?;
        }
    }
    tx.prepare_cached(
        "DELETE FROM one_time_prekeys WHERE nick_key = ?1 AND seq NOT IN
             (SELECT seq FROM one_time_prekeys WHERE nick_key = ?1 ORDER BY seq DESC LIMIT ?2)",
    )?
    .execute(params![key, MAX_ONE_TIME_STORED as i64])?;
    Ok(Some(Published {
        one_time: one_time_count(tx, key)?,
        other_device,
    }))
}

/// Takes a bundle of `key` (see [`crate::store::Store::take_bundle`]): the one-time prekey
/// handed out is deleted here, in the batch's transaction.
pub(super) fn take(tx: &Connection, key: &str, one_time: bool) -> rusqlite::Result<Taken> {
    type Row = (Vec<u8>, u32, Vec<u8>, Vec<u8>);
    let stored: Option<Row> = tx
        .prepare_cached(
            "SELECT identity, signed_id, signed_key, signature FROM prekeys WHERE nick_key = ?1",
        )?
        .query_row([key], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .optional()?;
    let Some((identity, signed_id, signed_key, signature)) = stored else {
        return Ok(if accounts::exists(tx, key)? {
            Taken::NoKeys
        } else {
            Taken::NoSuchAccount
        });
    };
    let taken = if one_time {
        let oldest: Option<(i64, u32, Vec<u8>)> = tx
            .prepare_cached(
                "SELECT seq, id, key FROM one_time_prekeys WHERE nick_key = ?1
                 ORDER BY seq LIMIT 1",
            )?
            .query_row([key], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .optional()?;
        match oldest {
            Some((seq, id, k)) => {
                tx.prepare_cached("DELETE FROM one_time_prekeys WHERE seq = ?1")?
                    .execute([seq])?;
                Some(OneTimePrekey {
                    id,
                    key: fixed::<KEY_LEN>(k, 2)?,
                })
            }
            None => None,
        }
    } else {
        None
    };
    Ok(Taken::Bundle {
        bundle: PrekeyBundle {
            identity: fixed::<KEY_LEN>(identity, 0)?,
            signed_prekey: SignedPrekey {
                id: signed_id,
                key: fixed::<KEY_LEN>(signed_key, 2)?,
                signature,
            },
            one_time: taken,
        },
        remaining: one_time_count(tx, key)?,
    })
}

/// How many one-time prekeys `key` has; `None` without published keys.
pub(super) fn stored_count(conn: &Connection, key: &str) -> rusqlite::Result<Option<u32>> {
    let published = conn
        .prepare_cached("SELECT 1 FROM prekeys WHERE nick_key = ?1")?
        .query_row([key], |_| Ok(()))
        .optional()?
        .is_some();
    if !published {
        return Ok(None);
    }
    one_time_count(conn, key).map(Some)
}

fn forget_one_time(tx: &Connection, key: &str) -> rusqlite::Result<()> {
    tx.prepare_cached("DELETE FROM one_time_prekeys WHERE nick_key = ?1")?
        .execute([key])?;
    Ok(())
}

/// The account `key` is gone (or new): its keys go.
pub(super) fn forget(tx: &Connection, key: &str) -> rusqlite::Result<()> {
    forget_one_time(tx, key)?;
    tx.prepare_cached("DELETE FROM prekeys WHERE nick_key = ?1")?
        .execute([key])?;
    Ok(())
}

// The device token is stored as its bytes.
const _: () = assert!(DEVICE_TOKEN_LEN == 16);
