//! The gateway's test kit, shared by the integration tests.
#![allow(dead_code, unused_imports)]
pub use gateway::testkit::*;
