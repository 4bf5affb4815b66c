//! The differential test of the two inspectors (issue 15 item 22): the same
//! inputs give the same verdict from `tongban inspect verify` and from the
//! independent Python inspector (scripts/inspect_py/verify_app.py), both run
//! as real processes on the same files.
//!
//! The inputs come from scripts/inspect_py/corpus.py: the sample package of
//! docs/vectors, a rejection made from it with the example registry's public
//! test keys, each of the eight classes on which the inspectors once
//! disagreed (docs/encoding.md section 15.1), and seeded random mutations —
//! of the package's JSON, and of the application's JSON committed again with
//! the test keys, so that every signature holds and only the two readings of
//! the application decide (`TONGBAN_DIFF_SEED` picks another seed,
//! `TONGBAN_DIFF_N` another number per package).
//!
//! Needs python3 >= 3.11 (the package inspector uses the standard library
//! only; `cryptography` is for hpke_open.py). Without it the test fails and
//! says so, unless `TONGBAN_SKIP_PYTHON=1`.

mod inspectors;

use inspectors::{CLASSES, agree, python_ready, repo};

#[test]
fn the_rust_and_python_inspectors_give_the_same_verdicts() {
    if !python_ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (n, classes) = agree(
        &dir.path().join("corpus"),
        &[repo().join("docs/vectors/application-package-v1.json")],
        &repo().join("regions/examples/yangtze-delta.toml"),
        60,
    );
    for c in CLASSES {
        assert!(classes.contains(c), "no input of class {c}");
    }
    eprintln!("{n} inputs: the same verdict from both inspectors");
}
