//! Fills in and checks the label-derived test keys of a registry file.
//!
//! ```text
//! cargo run -p regions --example gen-test-keys -- regions/examples/yangtze-delta.toml
//! cargo run -p regions --example gen-test-keys -- --label nanjing.civil-affairs
//! ```
//!
//! In a registry file, write `"ed25519:<label>"` or `"x25519:<label>"` where a
//! key belongs; this tool replaces each such placeholder with the test key
//! derived from the label (see `regions::test_keys`), rewrites the file, and
//! then checks that every key in it is the test key of its label (endorsers:
//! `<city>/endorser/<n>`; members: their id). It exits non-zero on a mismatch.
//! With `--label`, it prints the two public keys of each label given.
//!
//! These keys are public knowledge: use them only for tests and demos.

use std::io::Write as _;
use std::process::ExitCode;

use regions::test_keys::{ed25519, x25519};

fn fill_placeholders(text: &str) -> (String, usize) {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut filled = 0;
    while let Some(start) = rest.find('"') {
        out.push_str(&rest[..=start]);
        rest = &rest[start + 1..];
        let Some(end) = rest.find('"') else { break };
        let inner = &rest[..end];
        let replaced = if let Some(label) = inner.strip_prefix("ed25519:") {
            Some(ed25519(label).to_hex())
        } else {
            inner
                .strip_prefix("x25519:")
                .map(|label| x25519(label).to_hex())
        };
        match replaced {
            Some(hex) => {
                out.push_str(&hex);
                filled += 1;
            }
            None => out.push_str(inner),
        }
        out.push('"');
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    (out, filled)
}

fn run() -> Result<bool, Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut out = std::io::stdout().lock();
    if args.first().map(String::as_str) == Some("--label") {
        for label in &args[1..] {
            writeln!(out, "{label}")?;
            writeln!(out, "  ed25519 {}", ed25519(label).to_hex())?;
            writeln!(out, "  x25519  {}", x25519(label).to_hex())?;
        }
        return Ok(true);
    }
    if args.is_empty() {
        writeln!(out, "usage: gen-test-keys FILE... | --label LABEL...")?;
        return Ok(false);
    }
    let mut all_ok = true;
    for path in &args {
        let text = std::fs::read_to_string(path)?;
        let (filled_text, filled) = fill_placeholders(&text);
        if filled > 0 {
            std::fs::write(path, &filled_text)?;
        }
        let registry = match regions::Registry::from_toml_str(&filled_text) {
            Ok(r) => r,
            Err(e) => {
                writeln!(
                    out,
                    "{path}: filled {filled} placeholder(s); cannot check keys: {e}"
                )?;
                all_ok = false;
                continue;
            }
        };
        let keys = registry.test_keys();
        let wrong: Vec<_> = keys.iter().filter(|k| !k.matches()).collect();
        writeln!(
            out,
            "{path}: filled {filled} placeholder(s); {} keys, {} not their label's test key",
            keys.len(),
            wrong.len()
        )?;
        for k in &wrong {
            writeln!(
                out,
                "  {:?} `{}`: listed {}, expected {}",
                k.slot,
                k.label,
                k.listed,
                k.expected_hex()
            )?;
        }
        all_ok &= wrong.is_empty();
    }
    Ok(all_ok)
}

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "error: {e}");
            ExitCode::FAILURE
        }
    }
}
