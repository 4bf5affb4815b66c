//! Any bytes as a registry file: parsing and validation refuse or accept, never
//! panic; an accepted registry always yields trust roots.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(reg) = regions::Registry::from_toml_bytes(data) {
        if reg.validate().is_ok() {
            assert!(reg.trust_roots(proofs::hash::sha256(data)).is_ok());
        }
    }
});
