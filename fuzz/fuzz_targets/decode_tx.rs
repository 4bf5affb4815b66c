//! Any bytes: transactions and headers decode or refuse, never panic, and
//! whatever decodes re-encodes to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proofs::header::Header;
use proofs::tx::Transaction;

fuzz_target!(|data: &[u8]| {
    if let Ok(tx) = Transaction::decode(data) {
        assert_eq!(tx.encode(), data, "transaction encoding is not canonical");
    }
    if let Ok(h) = Header::decode(data) {
        assert_eq!(h.encode(), data, "header encoding is not canonical");
    }
});
