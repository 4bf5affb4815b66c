//! The main job: `tongban demo --exit` runs the whole example region once (four
//! city gateways and the hub over loopback libp2p, every bundle end to end)
//! and its evidence packages are then checked from the files alone, by the
//! `tongban inspect verify` command and by the independent Python inspector
//! written from `docs/encoding.md`.

mod inspectors;

use std::path::Path;
use std::process::Command;

fn tongban() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tongban"));
    c.env("TONGBAN_LOG", "warn");
    c
}

#[test]
fn the_demo_runs_every_bundle_and_its_packages_verify_offline() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("demo");
    let out = tongban()
        .args(["demo", "--exit", "--subjects", "240", "--applications", "2"])
        .args(["--http-port", "0", "--out"])
        .arg(&out_dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("RESULT: every application ended as expected"),
        "{stdout}"
    );

    // The summary: every bundle ran, with the expected outcomes.
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out_dir.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["ok"], true);
    let apps = summary["applications"].as_array().unwrap();
    let count = |bundle: &str, phase: &str| {
        apps.iter()
            .filter(|a| a["bundle"] == bundle && a["phase"] == phase)
            .count()
    };
    assert_eq!(count("house-transfer", "completed"), 2, "{summary:#}");
    assert_eq!(count("house-transfer", "rejected"), 1, "{summary:#}");
    assert_eq!(count("newborn", "completed"), 2, "{summary:#}");
    assert_eq!(count("business-opening", "completed"), 2, "{summary:#}");
    assert_eq!(count("business-opening", "rejected"), 1, "{summary:#}");
    let rejected = apps
        .iter()
        .find(|a| a["bundle"] == "house-transfer" && a["phase"] == "rejected")
        .unwrap();
    assert!(
        rejected["reason"].as_str().unwrap().contains("buyer-homes"),
        "{rejected:#}"
    );
    for c in ["shanghai", "nanjing", "hangzhou", "hefei"] {
        assert!(summary["records"][c].as_u64().unwrap() >= 240 * 4, "{c}");
    }

    // Each package on disk, checked by a separate inspector process with the
    // registry file alone; then one mutated package must be refused.
    let registry = out_dir.join("registry.toml");
    let packages: Vec<_> = std::fs::read_dir(out_dir.join("packages"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(packages.len(), apps.len());
    let python = Command::new("python3").arg("--version").output().is_ok();
    for p in &packages {
        let check = tongban()
            .args(["inspect", "verify"])
            .arg(p)
            .arg("--registry")
            .arg(&registry)
            .output()
            .unwrap();
        assert!(
            check.status.success(),
            "{}: {}",
            p.display(),
            String::from_utf8_lossy(&check.stdout)
        );
        assert!(String::from_utf8_lossy(&check.stdout).contains("VERIFIED: every fact holds"));
        if python {
            independent(p, &registry);
        }
    }
    // Both inspectors give the same verdicts on one package per bundle and
    // outcome and on its mutations (docs/encoding.md section 15.1).
    let tomllib = Command::new("python3")
        .args(["-c", "import tomllib"])
        .status()
        .is_ok_and(|s| s.success());
    if tomllib {
        let mut picked = std::collections::BTreeMap::new();
        for a in apps {
            let key = format!("{}/{}", a["bundle"], a["phase"]);
            picked
                .entry(key)
                .or_insert_with(|| std::path::PathBuf::from(a["package"].as_str().unwrap()));
        }
        let picked: Vec<_> = picked.into_values().collect();
        let (n, classes) = inspectors::agree(&dir.path().join("corpus"), &picked, &registry, 3);
        assert!(
            classes.contains("rejection whose failing evidence was left out"),
            "{classes:?}"
        );
        eprintln!(
            "{n} inputs from {} demo packages: the same verdict from both inspectors",
            picked.len()
        );
    } else {
        eprintln!("python3 >= 3.11 missing: the differential check of the inspectors is skipped");
    }

    // A completed application whose package claims it was rejected.
    let completed = apps.iter().find(|a| a["phase"] == "completed").unwrap();
    let mut pkg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(completed["package"].as_str().unwrap()).unwrap())
            .unwrap();
    let text = pkg["application"].as_str().unwrap().to_owned();
    let changed = text.replacen("\"phase\":\"completed\"", "\"phase\":\"rejected\"", 1);
    assert_ne!(text, changed, "{text}");
    pkg["application"] = changed.into();
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, serde_json::to_vec(&pkg).unwrap()).unwrap();
    let check = tongban()
        .args(["inspect", "verify"])
        .arg(&bad)
        .arg("--registry")
        .arg(&registry)
        .output()
        .unwrap();
    assert!(!check.status.success(), "a changed package verified");
}

/// The Python inspector (scripts/inspect_py/verify_app.py), when Python and
/// its `cryptography` package are there (CI installs them).
fn independent(package: &Path, registry: &Path) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/inspect_py/verify_app.py");
    let has_crypto = Command::new("python3")
        .args(["-c", "import cryptography"])
        .status()
        .is_ok_and(|s| s.success());
    if !has_crypto {
        eprintln!("python3 without `cryptography`: the independent inspector is skipped");
        return;
    }
    let out = Command::new("python3")
        .arg(script)
        .arg(package)
        .arg("--registry")
        .arg(registry)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the Python inspector refused {}:\n{}{}",
        package.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
