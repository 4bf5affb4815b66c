//! Malformed input is an error, never a panic.

use proptest::prelude::*;
use regions::Registry;

fn example_text() -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/yangtze-delta.toml");
    std::fs::read_to_string(path).unwrap()
}

#[test]
fn deep_nesting_is_refused() {
    for n in [1_000usize, 100_000] {
        assert!(Registry::from_toml_str(&format!("x = {}", "[".repeat(n))).is_err());
        assert!(Registry::from_toml_str(&format!("x = {}", "{a=".repeat(n))).is_err());
        let rule = format!("{}\"e\"{}", "{ not = ".repeat(n), " }".repeat(n));
        let text = example_text().replacen(
            "rule = { all = [\"founder-identity\", \"name-free\", \"founder-not-barred\"] }",
            &format!("rule = {rule}"),
            1,
        );
        assert!(Registry::from_toml_str(&text).is_err());
    }
}

#[test]
fn empty_and_garbage_input_are_errors() {
    for text in [
        "",
        "\u{0}",
        "[region]",
        "[[cities]]\nid = 1",
        "region = 5",
        "\"",
        "[a.b.c]\n[[a.b]]",
    ] {
        assert!(Registry::from_toml_str(text).is_err(), "{text:?}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any single-byte change to the example parses, validates and converts
    /// without panicking (whatever the verdict).
    #[test]
    fn mutated_registries_never_panic(pos in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let mut bytes = example_text().into_bytes();
        let i = pos.index(bytes.len());
        bytes[i] = byte;
        if let Ok(registry) = Registry::from_toml_bytes(&bytes) {
            let _ = registry.problems();
            let _ = registry.trust_roots(proofs::Hash::default());
        }
    }

    /// Deleting a line either fails to parse or validates to a definite verdict.
    #[test]
    fn deleted_lines_never_panic(line in any::<prop::sample::Index>()) {
        let text = example_text();
        let lines: Vec<&str> = text.lines().collect();
        let i = line.index(lines.len());
        let cut: String = lines.iter().enumerate().filter(|(j, _)| *j != i).map(|(_, l)| format!("{l}\n")).collect();
        if let Ok(registry) = Registry::from_toml_str(&cut) {
            let _ = registry.validate();
        }
    }
}
