//! The link to NATS: see CLUSTER.md. (Being written.)
