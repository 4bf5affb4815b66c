//! Shared helpers for Tongban's cross-crate tests.
