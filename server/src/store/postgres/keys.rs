//! The key directory in PostgreSQL: `prekeys` and `one_time_prekeys` (public keys only); a
//! one-time prekey is read and deleted in the batch's transaction.

use mm_common::identity::KEY_LEN;
use mm_common::prekeys::{
    KeyUpload, OneTimePrekey, PrekeyBundle, SignedPrekey, MAX_ONE_TIME_STORED,
};
use postgres::{Error, GenericClient, Transaction};

use super::accounts;
use crate::store::command::device_check;
use crate::store::{Published, Taken};

/// A stored key of the wrong length (a damaged row): answered as that operation's failure.
#[derive(Debug, thiserror::Error)]
#[error("a stored key is {0} bytes, not {1}")]
pub(super) struct BadKey(usize, usize);

fn fixed<const N: usize>(blob: Vec<u8>) -> Result<[u8; N], KeyError> {
    let len = blob.len();
    <[u8; N]>::try_from(blob).map_err(|_| KeyError::Bad(BadKey(len, N)))
}

/// A failure reading keys: the database's, or a damaged row.
#[derive(Debug, thiserror::Error)]
pub(super) enum KeyError {
    #[error(transparent)]
    Db(#[from] Error),
    #[error(transparent)]
    Bad(BadKey),
}

impl super::Failure for KeyError {
    fn split(self) -> Result<Self, Error> {
        match self {
            KeyError::Db(e) => e.split().map(KeyError::Db),
            bad => Ok(bad),
        }
    }
}

fn small(v: i64) -> u32 {
    u32::try_from(v).unwrap_or(0)
}

fn one_time_count<C: GenericClient>(c: &mut C, key: &str) -> Result<u32, Error> {
    c.query_one(
        "SELECT COUNT(*) FROM one_time_prekeys WHERE nick_key = $1",
        &[&key],
    )?
    .try_get(0)
    .map(small)
}

/// Stores an upload for the account `key`; `None`: no such account, nothing stored.
pub(super) fn publish(
    tx: &mut Transaction<'_>,
    key: &str,
    keys: &KeyUpload,
) -> Result<Option<Published>, Error> {
    if !accounts::exists(tx, key)? {
        return Ok(None);
    }
    let stored: Option<(Vec<u8>, Vec<u8>)> = tx
        .query_opt(
            "SELECT identity, device FROM prekeys WHERE nick_key = $1",
            &[&key],
        )?
        .map(|r| Ok::<_, Error>((r.try_get(0)?, r.try_get(1)?)))
        .transpose()?;
    let (other_device, drop_one_time) = device_check(
        stored.as_ref().map(|(i, d)| (i.as_slice(), d.as_slice())),
        keys,
    );
    if drop_one_time {
        forget_one_time(tx, key)?;
    }
    tx.execute(
        "INSERT INTO prekeys (nick_key, identity, signed_id, signed_key, signature, device)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (nick_key) DO UPDATE SET identity = excluded.identity,
             signed_id = excluded.signed_id, signed_key = excluded.signed_key,
             signature = excluded.signature, device = excluded.device",
        &[
            &key,
            &&keys.identity[..],
            &i64::from(keys.signed_prekey.id),
            &&keys.signed_prekey.key[..],
            &keys.signed_prekey.signature,
            &&keys.device.next[..],
        ],
    )?;
    for k in &keys.one_time {
        // A one-time prekey whose id is stored replaces it (as the newest).
        tx.execute(
            "DELETE FROM one_time_prekeys WHERE nick_key = $1 AND id = $2",
            &[&key, &i64::from(k.id)],
        )?;
        tx.execute(
            "INSERT INTO one_time_prekeys (nick_key, id, key) VALUES ($1, $2, $3)",
            &[&key, &i64::from(k.id), &&k.key[..]],
        )?;
    }
    tx.execute(
        "DELETE FROM one_time_prekeys WHERE nick_key = $1 AND seq NOT IN
             (SELECT seq FROM one_time_prekeys WHERE nick_key = $1 ORDER BY seq DESC LIMIT $2)",
        &[&key, &(MAX_ONE_TIME_STORED as i64)],
    )?;
    Ok(Some(Published {
        one_time: one_time_count(tx, key)?,
        other_device,
    }))
}

/// Takes a bundle of `key`; the one-time prekey handed out is deleted in the transaction.
pub(super) fn take(tx: &mut Transaction<'_>, key: &str, one_time: bool) -> Result<Taken, KeyError> {
    let Some(row) = tx.query_opt(
        "SELECT identity, signed_id, signed_key, signature FROM prekeys WHERE nick_key = $1",
        &[&key],
    )?
    else {
        return Ok(if accounts::exists(tx, key)? {
            Taken::NoKeys
        } else {
            Taken::NoSuchAccount
        });
    };
    let identity: Vec<u8> = row.try_get(0)?;
    let signed_id: i64 = row.try_get(1)?;
    let signed_key: Vec<u8> = row.try_get(2)?;
    let signature: Vec<u8> = row.try_get(3)?;
    let taken = if one_time {
        match tx.query_opt(
            "DELETE FROM one_time_prekeys WHERE seq = (
                 SELECT seq FROM one_time_prekeys WHERE nick_key = $1 ORDER BY seq LIMIT 1)
             RETURNING id, key",
            &[&key],
        )? {
            Some(r) => Some(OneTimePrekey {
                id: small(r.try_get(0)?),
                key: fixed::<KEY_LEN>(r.try_get(1)?)?,
            }),
            None => None,
        }
    } else {
        None
    };
    Ok(Taken::Bundle {
        bundle: PrekeyBundle {
            identity: fixed::<KEY_LEN>(identity)?,
            signed_prekey: SignedPrekey {
                id: small(signed_id),
                key: fixed::<KEY_LEN>(signed_key)?,
                signature,
            },
            one_time: taken,
        },
        remaining: one_time_count(tx, key)?,
    })
}

/// How many one-time prekeys `key` has; `None` without published keys.
pub(super) fn stored_count<C: GenericClient>(c: &mut C, key: &str) -> Result<Option<u32>, Error> {
    if c.query_opt("SELECT 1 FROM prekeys WHERE nick_key = $1", &[&key])?
        .is_none()
    {
        return Ok(None);
    }
    one_time_count(c, key).map(Some)
}

fn forget_one_time(tx: &mut Transaction<'_>, key: &str) -> Result<(), Error> {
    tx.execute("DELETE FROM one_time_prekeys WHERE nick_key = $1", &[&key])?;
    Ok(())
}

/// The account `key` is gone (or new): its keys go.
pub(super) fn forget(tx: &mut Transaction<'_>, key: &str) -> Result<(), Error> {
    forget_one_time(tx, key)?;
    tx.execute("DELETE FROM prekeys WHERE nick_key = $1", &[&key])?;
    Ok(())
}
