//! The differential check of the two inspectors, shared by
//! `inspectors_agree.rs` (the sample package) and `demo.rs` (the demo's
//! packages): corpus from scripts/inspect_py/corpus.py, both inspectors run
//! as real processes, verdicts compared.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Whether python3 can run the inspector; panics with what is missing.
pub fn python_ready() -> bool {
    let ok = Command::new("python3")
        .args([
            "-c",
            "import sys, tomllib; sys.exit(0 if sys.version_info >= (3, 11) else 1)",
        ])
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        return true;
    }
    if std::env::var_os("TONGBAN_SKIP_PYTHON").is_some() {
        eprintln!("TONGBAN_SKIP_PYTHON: the differential test of the inspectors is skipped");
        return false;
    }
    panic!(
        "the differential test needs python3 >= 3.11 (with tomllib) on PATH to run \
         scripts/inspect_py/verify_app.py; install it (CI has it), or set \
         TONGBAN_SKIP_PYTHON=1 to skip this test knowingly"
    );
}

struct Input {
    file: String,
    class: String,
    expect: Option<String>,
}

/// Runs both inspectors on every input; returns `file → (rust, python)`
/// verdicts (true = accepted) and each side's JSON report per file.
#[allow(clippy::type_complexity)]
fn verdicts(
    inputs: &[Input],
    registry: &Path,
) -> BTreeMap<String, ((bool, serde_json::Value), (bool, serde_json::Value))> {
    let files: Vec<&str> = inputs.iter().map(|i| i.file.as_str()).collect();
    let rust = Command::new(env!("CARGO_BIN_EXE_tongban"))
        .env("TONGBAN_LOG", "warn")
        .args(["inspect", "verify", "--json", "--registry"])
        .arg(registry)
        .args(&files)
        .output()
        .unwrap();
    assert!(
        matches!(rust.status.code(), Some(0 | 1)),
        "tongban inspect verify ended with {:?}:\n{}",
        rust.status,
        String::from_utf8_lossy(&rust.stderr)
    );
    let rust: serde_json::Value = serde_json::from_slice(&rust.stdout).unwrap();
    let python = Command::new("python3")
        .arg(repo().join("scripts/inspect_py/verify_app.py"))
        .args(["--json", "--registry"])
        .arg(registry)
        .args(&files)
        .output()
        .unwrap();
    assert!(
        matches!(python.status.code(), Some(0 | 1)),
        "the Python inspector ended with {:?} (a crash is not a verdict):\n{}",
        python.status,
        String::from_utf8_lossy(&python.stderr)
    );
    let python: serde_json::Value = serde_json::from_slice(&python.stdout).unwrap();
    let rs = rust["packages"].as_array().unwrap();
    let py = python["packages"].as_array().unwrap();
    assert_eq!(rs.len(), files.len());
    assert_eq!(py.len(), files.len());
    files
        .iter()
        .zip(rs.iter().zip(py))
        .map(|(f, (r, p))| {
            assert_eq!(r["package"], *f);
            assert_eq!(p["package"], *f);
            (
                f.to_string(),
                (
                    (r["ok"].as_bool().unwrap(), r["report"].clone()),
                    (p["valid"].as_bool().unwrap(), p["facts"].clone()),
                ),
            )
        })
        .collect()
}

/// The eight classes on which the inspectors once disagreed (corpus.py's names).
pub const CLASSES: [&str; 8] = [
    "rejection whose failing evidence was left out",
    "deep nesting",
    "duplicate keys",
    "lone surrogates",
    "upper-case hex",
    "explicit nulls",
    "a field disclosed twice",
    "a receipt's reason",
];

/// Makes the corpus of `packages` in `out` (seeded: `TONGBAN_DIFF_SEED`,
/// `random` mutations per package, or `TONGBAN_DIFF_N`), runs both
/// inspectors on it and asserts the same verdict on every input, the
/// expected verdict where the corpus states one, and the decision skipped
/// when a rejection's failing evidence is left out. Returns the number of
/// inputs and the classes seen.
pub fn agree(
    out: &Path,
    packages: &[PathBuf],
    registry: &Path,
    random: usize,
) -> (usize, std::collections::BTreeSet<String>) {
    let seed = std::env::var("TONGBAN_DIFF_SEED").unwrap_or_else(|_| "15".into());
    let n = std::env::var("TONGBAN_DIFF_N").unwrap_or_else(|_| random.to_string());
    let made = Command::new("python3")
        .arg(repo().join("scripts/inspect_py/corpus.py"))
        .arg(out)
        .args(packages)
        .arg("--registry")
        .arg(registry)
        .args(["--seed", &seed, "--random", &n, "--recommit"])
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "corpus.py: {}",
        String::from_utf8_lossy(&made.stderr)
    );
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(
        manifest["test_keys"], true,
        "the example registry's keys are no longer the public test keys"
    );
    let inputs: Vec<Input> = manifest["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| Input {
            file: i["file"].as_str().unwrap().to_owned(),
            class: i["class"].as_str().unwrap().to_owned(),
            expect: i["expect"].as_str().map(str::to_owned),
        })
        .collect();
    let v = verdicts(&inputs, registry);
    let word = |ok: bool| if ok { "accepted" } else { "refused" };
    let mut disagreements = Vec::new();
    let mut unexpected = Vec::new();
    for i in &inputs {
        let ((rust, _), (python, _)) = &v[&i.file];
        if rust != python {
            disagreements.push(format!(
                "{} ({}): Rust {}, Python {}",
                i.file,
                i.class,
                word(*rust),
                word(*python)
            ));
        }
        if let Some(e) = &i.expect
            && (word(*rust) != e || word(*python) != e)
        {
            unexpected.push(format!(
                "{} ({}): expected {e}, Rust {}, Python {}",
                i.file,
                i.class,
                word(*rust),
                word(*python)
            ));
        }
    }
    assert!(
        disagreements.is_empty() && unexpected.is_empty(),
        "seed {seed}: the inspectors disagree on {} of {} inputs:\n{}\nunexpected verdicts:\n{}",
        disagreements.len(),
        inputs.len(),
        disagreements.join("\n"),
        unexpected.join("\n")
    );

    // A rejection whose failing evidence is left out: both say the answer
    // is missing, and neither judges the decision (it is skipped).
    for i in inputs
        .iter()
        .filter(|i| i.class == "rejection whose failing evidence was left out")
    {
        let ((_, rust), (_, python)) = &v[&i.file];
        let rust_fact = |check: &str| {
            rust["facts"]
                .as_array()
                .unwrap()
                .iter()
                .find(|f| f["check"] == check)
                .map(|f| f["status"].as_str().unwrap().to_owned())
        };
        let python_fact = |name: &str| {
            python
                .as_array()
                .unwrap()
                .iter()
                .find(|f| f["name"] == name)
                .map(|f| f["status"].as_str().unwrap().to_owned())
        };
        assert_eq!(rust_fact("evidence.complete").as_deref(), Some("fails"));
        assert_eq!(python_fact("evidence.complete").as_deref(), Some("fails"));
        assert_eq!(
            rust_fact("application.decision").as_deref(),
            Some("skipped"),
            "{rust:#}"
        );
        assert_eq!(
            python_fact("application.decision").as_deref(),
            Some("skipped")
        );
    }
    (
        inputs.len(),
        inputs.iter().map(|i| i.class.clone()).collect(),
    )
}
