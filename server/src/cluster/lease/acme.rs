//! ACME work shared by the nodes of a cluster, in PostgreSQL (CLUSTER.md, "Certificates"):
//! which node orders now (`cluster_acme_order`, a lease by the database's clock, so that one
//! order runs at a time and a node that dies mid-order frees it), the pending TLS-ALPN-01
//! challenges every node answers (`cluster_acme_challenges`: the name and the digest of the
//! key authorization, from which each node makes the challenge certificate), and the newest
//! certificate (`cluster_acme_certificate`: its chain and key as PEM, with the ACME directory
//! it came from).

use std::time::Duration;

use super::{LeaseError, Membership};

/// Longest one node may hold the order before another may take it over (an attempt is bounded
/// by 5 minutes in `acme`).
pub const ORDER_HOLD: Duration = Duration::from_secs(10 * 60);

/// Most pending challenges read (one per domain: `acme::MAX_DOMAINS`).
const MAX_CHALLENGES: i64 = 100;

/// Largest certificate file accepted from the database (chain and key, PEM).
pub const MAX_PEM: usize = 64 * 1024;

impl Membership {
    /// Takes the ACME order for this node for [`ORDER_HOLD`], if no other live node holds it.
    /// Answers whether this node holds it now.
    ///
    /// # Errors
    /// The database failed or did not answer.
    pub async fn acme_claim(&self) -> Result<bool, LeaseError> {
        let rows = self
            .query(
                "INSERT INTO cluster_acme_order (id, epoch, until)
                 VALUES (1, $1, now() + make_interval(secs => $2))
                 ON CONFLICT (id) DO UPDATE SET epoch = excluded.epoch, until = excluded.until
                 WHERE cluster_acme_order.until < now()
                    OR cluster_acme_order.epoch = excluded.epoch
                    OR NOT EXISTS (SELECT 1 FROM cluster_nodes
                                   WHERE epoch = cluster_acme_order.epoch AND expires_at > now())
                 RETURNING epoch",
                &[&self.node.epoch, &ORDER_HOLD.as_secs_f64()],
            )
            .await?;
        Ok(!rows.is_empty())
    }

    /// Gives the ACME order up (if this node holds it).
    ///
    /// # Errors
    /// The database failed or did not answer (the hold then ends by itself).
    pub async fn acme_release(&self) -> Result<(), LeaseError> {
        self.execute(
            "DELETE FROM cluster_acme_order WHERE id = 1 AND epoch = $1",
            &[&self.node.epoch],
        )
        .await
        .map(drop)
    }

    /// Keeps the ACME order held by this node for `wait` from now (an order failed: no node
    /// orders again before its backoff ends).
    ///
    /// # Errors
    /// The database failed or did not answer.
    pub async fn acme_hold(&self, wait: Duration) -> Result<(), LeaseError> {
        self.execute(
            "UPDATE cluster_acme_order SET until = now() + make_interval(secs => $2)
             WHERE id = 1 AND epoch = $1",
            &[&self.node.epoch, &wait.as_secs_f64()],
        )
        .await
        .map(drop)
    }

    /// Posts a pending challenge for `domain` (`digest`: SHA-256 of the key authorization) for
    /// every node to answer.
    ///
    /// # Errors
    /// The database failed or did not answer.
    pub async fn acme_post(&self, domain: &str, digest: &[u8]) -> Result<(), LeaseError> {
        self.execute(
            "INSERT INTO cluster_acme_challenges (domain, digest, epoch) VALUES ($1, $2, $3)
             ON CONFLICT (domain) DO UPDATE SET digest = excluded.digest, epoch = excluded.epoch",
            &[&domain, &digest, &self.node.epoch],
        )
        .await
        .map(drop)
    }

    /// Removes this node's posted challenges (its order is over).
    ///
    /// # Errors
    /// The database failed or did not answer.
    pub async fn acme_clear(&self) -> Result<(), LeaseError> {
        self.execute(
            "DELETE FROM cluster_acme_challenges WHERE epoch = $1",
            &[&self.node.epoch],
        )
        .await
        .map(drop)
    }

    /// The pending challenges of live nodes: (domain, digest), at most 100.
    ///
    /// # Errors
    /// The database failed or did not answer.
    pub async fn acme_challenges(&self) -> Result<Vec<(String, Vec<u8>)>, LeaseError> {
        let rows = self
            .query(
                "SELECT c.domain, c.digest FROM cluster_acme_challenges c
                 JOIN cluster_nodes n ON n.epoch = c.epoch AND n.expires_at > now()
                 ORDER BY c.domain LIMIT $1",
                &[&MAX_CHALLENGES],
            )
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect::<Result<_, tokio_postgres::Error>>()
            .map_err(LeaseError::from)
    }

    /// Stores `pem` (chain and key) as the cluster's certificate from `directory`.
    ///
    /// # Errors
    /// The database failed or did not answer.
    pub async fn acme_store(&self, directory: &str, pem: &str) -> Result<(), LeaseError> {
        self.execute(
            "INSERT INTO cluster_acme_certificate (id, directory, pem) VALUES (1, $1, $2)
             ON CONFLICT (id) DO UPDATE SET directory = excluded.directory, pem = excluded.pem",
            &[&directory, &pem],
        )
        .await
        .map(drop)
    }

    /// The cluster's certificate (chain and key, PEM), if one from `directory` is stored and it
    /// is at most [`MAX_PEM`] bytes.
    ///
    /// # Errors
    /// The database failed or did not answer.
    pub async fn acme_stored(&self, directory: &str) -> Result<Option<String>, LeaseError> {
        let rows = self
            .query(
                "SELECT pem FROM cluster_acme_certificate
                 WHERE id = 1 AND directory = $1 AND length(pem) <= $2",
                &[&directory, &i32::try_from(MAX_PEM).unwrap_or(i32::MAX)],
            )
            .await?;
        rows.first()
            .map(|r| r.try_get(0))
            .transpose()
            .map_err(LeaseError::from)
    }
}
