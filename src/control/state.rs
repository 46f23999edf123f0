//! The state file (`--state-file`): the last published ring snapshot, so
//! that a restarted control plane never publishes a lower version and
//! starts from the members it had.
//!
//! Format: the snapshot's JSON, exactly as `GET /api/v1/ring` serves it.
//! Invariant: a save is atomic and durable before it returns (write a
//! temporary file beside it, fsync, rename over, fsync the directory): a
//! crash leaves either the old snapshot or the new one, never a torn file.

use std::{
    fs::{self, File},
    io::{self, Write},
    path::{Path, PathBuf},
};

use thiserror::Error;

use crate::ring::{RingConfig, RingError};

/// A state file that could not be used at start-up.
#[derive(Debug, Error)]
pub enum StateError {
    /// It exists but cannot be read.
    #[error("cannot read state file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// It is not a ring snapshot.
    #[error("state file {path} is not a ring snapshot: {why}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Why.
        why: String,
    },
    /// It was written for another slot count: the table would change for
    /// every user.
    #[error("state file {path} has slots = {file}, but --slots is {flag}")]
    Slots {
        /// The file.
        path: PathBuf,
        /// Its slot count.
        file: u64,
        /// The configured one.
        flag: u64,
    },
}

/// Where the snapshot is kept.
#[derive(Debug, Clone)]
pub struct StateFile {
    path: PathBuf,
}

impl StateFile {
    /// The state file at `path` (not read yet).
    pub fn new(path: impl Into<PathBuf>) -> StateFile {
        StateFile { path: path.into() }
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The saved snapshot; `None` if the file does not exist yet. A
    /// snapshot whose slot count is not `slots` is an error.
    pub fn load(&self, slots: u64) -> Result<Option<RingConfig>, StateError> {
        let text = match fs::read(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(StateError::Read {
                    path: self.path.clone(),
                    source,
                })
            }
        };
        let parse = |why: String| StateError::Parse {
            path: self.path.clone(),
            why,
        };
        let snapshot: RingConfig =
            serde_json::from_slice(&text).map_err(|e| parse(e.to_string()))?;
        if snapshot.slots != slots {
            return Err(StateError::Slots {
                path: self.path.clone(),
                file: snapshot.slots,
                flag: slots,
            });
        }
        if !snapshot.nodes.is_empty() {
            snapshot
                .validate()
                .map_err(|e: RingError| parse(e.to_string()))?;
        }
        Ok(Some(snapshot))
    }

    /// Replaces the saved snapshot, atomically and durably.
    pub fn save(&self, snapshot: &RingConfig) -> io::Result<()> {
        let dir = match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
            _ => PathBuf::from("."),
        };
        let mut tmp = self.path.clone().into_os_string();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        {
            let mut f = File::create(&tmp)?;
            let json = serde_json::to_vec(snapshot).map_err(io::Error::other)?;
            f.write_all(&json)?;
            f.write_all(b"\n")?;
            f.sync_all()?;
        }
        fs::rename(&tmp, &self.path)?;
        File::open(&dir)?.sync_all()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ring::Node;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("shardcast-state-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn a_saved_snapshot_loads_back() {
        let d = dir("roundtrip");
        let file = StateFile::new(d.join("ctl.json"));
        assert!(file.load(64).unwrap().is_none());
        let mut node = Node::new("a", 2.0);
        node.addr = "ws://127.0.0.1:1/ws".into();
        let snap = RingConfig {
            version: 7,
            slots: 64,
            nodes: vec![node],
        };
        file.save(&snap).unwrap();
        assert_eq!(file.load(64).unwrap(), Some(snap.clone()));
        let empty = RingConfig {
            version: 8,
            slots: 64,
            nodes: vec![],
        };
        file.save(&empty).unwrap();
        assert_eq!(file.load(64).unwrap(), Some(empty));
        assert!(!d.join("ctl.json.tmp").exists());
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn a_bad_or_mismatched_file_is_refused() {
        let d = dir("bad");
        let path = d.join("ctl.json");
        fs::write(&path, "{\"version\":").unwrap();
        let file = StateFile::new(&path);
        assert!(matches!(file.load(64), Err(StateError::Parse { .. })));
        fs::write(
            &path,
            r#"{"version":1,"slots":64,"nodes":[{"id":"a","weight":-1}]}"#,
        )
        .unwrap();
        assert!(matches!(file.load(64), Err(StateError::Parse { .. })));
        fs::write(&path, r#"{"version":1,"slots":64,"nodes":[]}"#).unwrap();
        assert!(matches!(file.load(128), Err(StateError::Slots { .. })));
        let _ = fs::remove_dir_all(&d);
    }
}
