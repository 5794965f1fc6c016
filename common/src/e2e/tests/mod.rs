//! Tests of the end-to-end layer.
