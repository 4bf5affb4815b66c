//! Every fixture under `tests/fixtures/invalid/` fails with exactly the error its
//! first line names:
//!
//! * `# error: <message>` — the file parses, and `validate()` returns an error
//!   whose text is exactly `<message>`;
//! * `# parse-error: <text>` — parsing fails with an error containing `<text>`.

use std::path::{Path, PathBuf};

use regions::{LoadError, Registry, ValidationError};

fn fixtures(dir: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(dir);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    files
}

fn parse(path: &Path) -> Result<Registry, LoadError> {
    regions::load(path).map(|(r, _)| r)
}

#[test]
fn minimal_fixture_is_valid() {
    for path in fixtures("valid") {
        let registry = parse(&path).unwrap();
        assert_eq!(
            registry.problems(),
            Vec::<ValidationError>::new(),
            "{}",
            path.display()
        );
    }
}

#[test]
fn every_invalid_fixture_fails_with_its_named_error() {
    let files = fixtures("invalid");
    assert!(
        files.len() >= 25,
        "expected the invalid fixtures, found {}",
        files.len()
    );
    let mut failures = Vec::new();
    for path in &files {
        let text = std::fs::read_to_string(path).unwrap();
        let first = text.lines().next().unwrap_or_default();
        let name = path.file_name().unwrap().to_string_lossy();
        if let Some(expected) = first.strip_prefix("# error: ") {
            match parse(path) {
                Err(e) => failures.push(format!("{name}: expected to parse, got {e}")),
                Ok(r) => match r.validate() {
                    Ok(()) => failures.push(format!("{name}: validated, expected `{expected}`")),
                    Err(e) if e.to_string() == expected => {}
                    Err(e) => failures.push(format!("{name}: expected `{expected}`, got `{e}`")),
                },
            }
        } else if let Some(expected) = first.strip_prefix("# parse-error: ") {
            match parse(path) {
                Ok(_) => failures.push(format!(
                    "{name}: parsed, expected a parse error `{expected}`"
                )),
                Err(e @ LoadError::Parse(_)) if e.to_string().contains(expected) => {}
                Err(e) => failures.push(format!(
                    "{name}: expected parse error `{expected}`, got `{e}`"
                )),
            }
        } else {
            failures.push(format!("{name}: first line names no expected error"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn fixtures_fail_with_the_right_variants() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/invalid");
    let first_error = |name: &str| parse(&dir.join(name)).unwrap().validate().unwrap_err();
    assert_eq!(
        first_error("threshold-above-keys.toml"),
        ValidationError::ThresholdAboveKeys {
            city: "nanjing".into(),
            threshold: 5,
            count: 4
        }
    );
    assert!(matches!(
        first_error("duplicate-member.toml"),
        ValidationError::DuplicateId { what, id } if what == "member" && id == "nanjing.civil-affairs"
    ));
    assert!(matches!(
        first_error("weak-signing-key.toml"),
        ValidationError::BadKey {
            source: proofs::keys::KeyError::Weak,
            ..
        }
    ));
    assert!(matches!(
        first_error("weak-hpke-key.toml"),
        ValidationError::BadKey {
            source: proofs::keys::KeyError::WeakX25519,
            ..
        }
    ));
    assert!(matches!(
        first_error("bad-key-not-hex.toml"),
        ValidationError::BadKey {
            source: proofs::keys::KeyError::Encoding(_),
            ..
        }
    ));
    assert!(matches!(
        first_error("unknown-provider.toml"),
        ValidationError::UnknownReference { what, id, .. } if what == "provider department" && id == "nanjing.registry"
    ));
    assert!(matches!(
        first_error("duplicate-endorser.toml"),
        ValidationError::DuplicateEndorser {
            first: 2,
            second: 4,
            ..
        }
    ));
}
