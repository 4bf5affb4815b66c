//! The example registry loads, validates, and converts to trust roots.

use std::path::PathBuf;

fn example_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/yangtze-delta.toml")
}

#[test]
fn example_validates() {
    let (registry, _hash) = regions::load(example_path()).unwrap();
    let problems = registry.problems();
    assert!(
        problems.is_empty(),
        "{:#?}",
        problems.iter().map(|p| p.to_string()).collect::<Vec<_>>()
    );
}
