//! Key files: one secret per file, JSON, readable by its owner only.
//!
//! ```json
//! {"tongban_key": 1, "kind": "ed25519", "id": "nanjing.civil-affairs", "secret": "<64 hex>"}
//! ```
//!
//! `kind` is `ed25519` (signing), `x25519` (HPKE), `subject` (a city's
//! subject-reference key) or `data` (a gateway's key for record values at
//! rest, [`crate::datakey`]). Files are created with mode 0600 and never
//! overwritten; a key file that group or others can read is refused.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use proofs::SigningKey;
use proofs::seal::HpkeSecretKey;
use proofs::subject::SubjectKey;
use serde::{Deserialize, Serialize};

/// What a key file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyKind {
    /// An Ed25519 signing key (its seed).
    Ed25519,
    /// An X25519 HPKE key (its derivation input).
    X25519,
    /// A city's subject-reference key.
    Subject,
    /// A gateway's data key: record values are encrypted at rest under it.
    Data,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    tongban_key: u32,
    kind: KeyKind,
    id: String,
    secret: String,
}

/// Why a key file was refused.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// Reading or writing failed.
    #[error("key file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// Group or others may read it.
    #[error(
        "key file {path} is readable by group or others (mode {mode:o}); run `chmod 600 {path}`"
    )]
    Permissions {
        /// The file.
        path: String,
        /// Its mode.
        mode: u32,
    },
    /// Not a key file of the expected kind.
    #[error("key file {path}: {problem}")]
    Format {
        /// The file.
        path: String,
        /// What is wrong.
        problem: String,
    },
}

fn read(path: &Path, kind: KeyKind) -> Result<(String, [u8; 32]), KeyFileError> {
    let p = path.display().to_string();
    let meta = std::fs::metadata(path).map_err(|source| KeyFileError::Io {
        path: p.clone(),
        source,
    })?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(KeyFileError::Permissions { path: p, mode });
    }
    if meta.len() > 4096 {
        return Err(KeyFileError::Format {
            path: p,
            problem: "larger than 4 KiB".into(),
        });
    }
    let text = std::fs::read_to_string(path).map_err(|source| KeyFileError::Io {
        path: p.clone(),
        source,
    })?;
    let f: KeyFile = serde_json::from_str(&text).map_err(|e| KeyFileError::Format {
        path: p.clone(),
        problem: e.to_string(),
    })?;
    if f.tongban_key != 1 {
        return Err(KeyFileError::Format {
            path: p,
            problem: format!("unknown key file version {}", f.tongban_key),
        });
    }
    if f.kind != kind {
        return Err(KeyFileError::Format {
            path: p,
            problem: format!("holds a {:?} key, expected {kind:?}", f.kind),
        });
    }
    let secret =
        proofs::hash::parse_fixed_hex::<32>(&f.secret).map_err(|e| KeyFileError::Format {
            path: p,
            problem: format!("secret: {e}"),
        })?;
    Ok((f.id, secret))
}

/// Reads an Ed25519 signing key; returns the id it was made for and the key.
pub fn read_signing(path: &Path) -> Result<(String, SigningKey), KeyFileError> {
    read(path, KeyKind::Ed25519).map(|(id, s)| (id, SigningKey::from_seed(&s)))
}

/// Reads an X25519 HPKE key.
pub fn read_hpke(path: &Path) -> Result<(String, HpkeSecretKey), KeyFileError> {
    read(path, KeyKind::X25519).map(|(id, s)| (id, HpkeSecretKey::derive(&s)))
}

/// Reads a subject-reference key.
pub fn read_subject(path: &Path) -> Result<(String, SubjectKey), KeyFileError> {
    read(path, KeyKind::Subject).map(|(id, s)| (id, SubjectKey::from_bytes(s)))
}

/// Reads a data key (for [`crate::datakey::DataKeys`]).
pub fn read_data(path: &Path) -> Result<(String, [u8; 32]), KeyFileError> {
    read(path, KeyKind::Data)
}

/// Writes a new key file (mode 0600; an existing file is never overwritten).
pub fn write(path: &Path, kind: KeyKind, id: &str, secret: &[u8; 32]) -> Result<(), KeyFileError> {
    let p = path.display().to_string();
    let body = serde_json::to_string(&KeyFile {
        tongban_key: 1,
        kind,
        id: id.to_owned(),
        secret: hex::encode(secret),
    })
    .map_err(|e| KeyFileError::Format {
        path: p.clone(),
        problem: e.to_string(),
    })?;
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|source| KeyFileError::Io {
            path: p.clone(),
            source,
        })?;
    f.write_all(body.as_bytes())
        .and_then(|()| f.write_all(b"\n"))
        .and_then(|()| f.sync_all())
        .map_err(|source| KeyFileError::Io { path: p, source })
}

/// 32 bytes from the operating system's random source.
pub fn random_secret() -> [u8; 32] {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).expect("the OS random source is available");
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_permissions_and_kinds() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k.key");
        write(&p, KeyKind::Ed25519, "c.dept", &[7; 32]).unwrap();
        let (id, k) = read_signing(&p).unwrap();
        assert_eq!(
            (id.as_str(), k.public()),
            ("c.dept", SigningKey::from_seed(&[7; 32]).public())
        );
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        // Never overwritten.
        assert!(matches!(
            write(&p, KeyKind::Ed25519, "c.dept", &[8; 32]),
            Err(KeyFileError::Io { .. })
        ));
        // Wrong kind.
        assert!(matches!(read_hpke(&p), Err(KeyFileError::Format { .. })));
        // Readable by others: refused.
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            read_signing(&p),
            Err(KeyFileError::Permissions { mode: 0o644, .. })
        ));
        // Not JSON.
        let q = dir.path().join("bad.key");
        std::fs::write(&q, "nope").unwrap();
        std::fs::set_permissions(&q, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(matches!(read_subject(&q), Err(KeyFileError::Format { .. })));
    }
}
