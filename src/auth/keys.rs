//! Loading JWT public keys from `--jwt-public-key` at start-up (the only
//! I/O of this module tree).
//!
//! Each value is a PEM file or a directory; a directory contributes every
//! `*.pem` file in it (not recursively). A key's `kid` is its file name
//! without `.pem` (`keys/2026-05.pem` answers to `"kid":"2026-05"`), so a
//! rotation is: add the new key's file, let issuers switch, remove the old
//! file, restart. A file holds one RSA public key (RS256; PKCS#1 or SPKI)
//! or one P-256 public key (ES256; SPKI).

use std::path::{Path, PathBuf};

use jsonwebtoken::DecodingKey;
use thiserror::Error;

use super::jwt::{KeyFamily, PublicKey};

/// A key file that could not be used.
#[derive(Debug, Error)]
pub enum KeyError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a PEM RSA or EC public key")]
    NotAKey { path: PathBuf },
    #[error("{path}: the file name gives no key id")]
    NoKid { path: PathBuf },
    #[error("two keys with kid `{kid}` ({path})")]
    DuplicateKid { kid: String, path: PathBuf },
}

/// Parses one PEM public key.
pub fn parse_public_key(kid: &str, pem: &[u8]) -> Option<PublicKey> {
    let (family, key) = if let Ok(k) = DecodingKey::from_rsa_pem(pem) {
        (KeyFamily::Rsa, k)
    } else if let Ok(k) = DecodingKey::from_ec_pem(pem) {
        (KeyFamily::Ec, k)
    } else {
        return None;
    };
    Some(PublicKey {
        kid: kid.to_owned(),
        family,
        key,
    })
}

fn load_file(path: &Path, out: &mut Vec<PublicKey>) -> Result<(), KeyError> {
    let pem = std::fs::read(path).map_err(|source| KeyError::Read {
        path: path.to_owned(),
        source,
    })?;
    let kid = path
        .file_name()
        .and_then(|n| n.to_str())
        .map(|n| n.strip_suffix(".pem").unwrap_or(n))
        .filter(|k| !k.is_empty())
        .ok_or_else(|| KeyError::NoKid {
            path: path.to_owned(),
        })?;
    if out.iter().any(|k| k.kid == kid) {
        return Err(KeyError::DuplicateKid {
            kid: kid.to_owned(),
            path: path.to_owned(),
        });
    }
    let key = parse_public_key(kid, &pem).ok_or_else(|| KeyError::NotAKey {
        path: path.to_owned(),
    })?;
    out.push(key);
    Ok(())
}

/// Loads every key named by `paths` (files, or directories of `*.pem`).
pub fn load_public_keys(paths: &[PathBuf]) -> Result<Vec<PublicKey>, KeyError> {
    let mut out = Vec::new();
    for path in paths {
        let read_err = |source| KeyError::Read {
            path: path.clone(),
            source,
        };
        if path.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(read_err)?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "pem"))
                .collect();
            files.sort();
            for file in files {
                load_file(&file, &mut out)?;
            }
        } else {
            load_file(path, &mut out)?;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/jwt");

    #[test]
    fn a_directory_loads_every_pem_by_file_name() {
        let keys = load_public_keys(&[PathBuf::from(FIXTURES).join("public")]).unwrap();
        let kids: Vec<(&str, KeyFamily)> =
            keys.iter().map(|k| (k.kid.as_str(), k.family)).collect();
        assert_eq!(
            kids,
            [
                ("es-a", KeyFamily::Ec),
                ("es-b", KeyFamily::Ec),
                ("rs-a", KeyFamily::Rsa)
            ]
        );
    }

    #[test]
    fn bad_files_are_clear_errors() {
        let public = PathBuf::from(FIXTURES).join("public");
        let dup = load_public_keys(&[public.join("es-a.pem"), public.clone()]);
        assert!(matches!(dup, Err(KeyError::DuplicateKid { kid, .. }) if kid == "es-a"));
        let readme = load_public_keys(&[PathBuf::from(FIXTURES).join("README.md")]);
        assert!(matches!(readme, Err(KeyError::NotAKey { .. })));
        let missing = load_public_keys(&[public.join("nope.pem")]);
        assert!(matches!(missing, Err(KeyError::Read { .. })));
        assert!(parse_public_key("x", b"garbage").is_none());
    }
}
