//! Reading a registry: from text, or from a file with its SHA-256.
//!
//! Loading only parses; [`Registry::validate`] is a separate step (a file
//! that parses may still name unknown members or carry weak keys).
//! [`load`] is the crate's one function that touches the filesystem.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use proofs::Hash;
use proofs::hash::sha256;
use thiserror::Error;

use crate::model::Registry;

/// The largest registry file accepted, checked before parsing (4 MiB).
pub const MAX_REGISTRY_BYTES: u64 = 4 * 1024 * 1024;

/// Why a registry could not be loaded.
#[derive(Debug, Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read registry `{path}`: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file or text is over [`MAX_REGISTRY_BYTES`].
    #[error("registry is over the size limit of {max} bytes (found at least {found})")]
    TooLarge {
        /// Bytes found (at least).
        found: u64,
        /// The limit.
        max: u64,
    },
    /// The file is not UTF-8.
    #[error("registry is not UTF-8 text: {0}")]
    NotUtf8(#[from] std::str::Utf8Error),
    /// The TOML does not parse into the registry model (syntax, unknown or
    /// missing fields, wrong types).
    #[error("registry does not parse: {0}")]
    Parse(#[from] Box<toml::de::Error>),
    /// The file's SHA-256 is not the pinned one.
    #[error("registry hash mismatch: pinned {expected}, file has {found}")]
    HashMismatch {
        /// The pinned hash.
        expected: Hash,
        /// The file's hash.
        found: Hash,
    },
}

impl Registry {
    /// Parses registry TOML (no validation; see [`Registry::validate`]).
    pub fn from_toml_str(text: &str) -> Result<Registry, LoadError> {
        let len = text.len() as u64;
        if len > MAX_REGISTRY_BYTES {
            return Err(LoadError::TooLarge {
                found: len,
                max: MAX_REGISTRY_BYTES,
            });
        }
        toml::from_str(text).map_err(|e| LoadError::Parse(Box::new(e)))
    }

    /// Parses registry bytes (UTF-8 TOML).
    pub fn from_toml_bytes(bytes: &[u8]) -> Result<Registry, LoadError> {
        Registry::from_toml_str(std::str::from_utf8(bytes)?)
    }
}

/// Reads a registry file, at most [`MAX_REGISTRY_BYTES`], and returns the
/// parsed registry with the SHA-256 of the file's exact bytes (the hash every
/// party pins). The registry is not validated.
pub fn load(path: impl AsRef<Path>) -> Result<(Registry, Hash), LoadError> {
    let bytes = read_limited(path.as_ref())?;
    let hash = sha256(&bytes);
    Ok((Registry::from_toml_bytes(&bytes)?, hash))
}

/// Like [`load`], but refuses a file whose SHA-256 is not `expected`, before
/// parsing it.
pub fn load_pinned(path: impl AsRef<Path>, expected: Hash) -> Result<Registry, LoadError> {
    let bytes = read_limited(path.as_ref())?;
    let found = sha256(&bytes);
    if found != expected {
        return Err(LoadError::HashMismatch { expected, found });
    }
    Registry::from_toml_bytes(&bytes)
}

fn read_limited(path: &Path) -> Result<Vec<u8>, LoadError> {
    let read_err = |source| LoadError::Read {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read_err)?;
    let size = file.metadata().map_err(read_err)?.len();
    if size > MAX_REGISTRY_BYTES {
        return Err(LoadError::TooLarge {
            found: size,
            max: MAX_REGISTRY_BYTES,
        });
    }
    let mut bytes = Vec::new();
    // Read one byte past the limit, in case the file grew after `metadata`.
    file.take(MAX_REGISTRY_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(read_err)?;
    if bytes.len() as u64 > MAX_REGISTRY_BYTES {
        return Err(LoadError::TooLarge {
            found: bytes.len() as u64,
            max: MAX_REGISTRY_BYTES,
        });
    }
    Ok(bytes)
}
