//! Node leases and nick ownership in PostgreSQL: see CLUSTER.md. (Being written.)
