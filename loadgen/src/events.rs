//! The event log of `--control` runs (`--events FILE`): one JSON line per
//! move of a user, from the moment its connection ended without loadgen
//! asking to the welcome on its next node, with every step in between.
//!
//! Times are unix milliseconds (wall clock), so they line up with what a
//! script records around the run (`date +%s%3N` when it kills a node).
//! Cores keep their moves in memory and append them to the file when they
//! finish (one `write` per line on an `O_APPEND` descriptor, so the cores of
//! several workers never interleave within a line); the coordinator creates
//! the file before the run and reads it back after it for the report's
//! [`MovesSummary`].

use crate::report::Percentiles;
use crate::stats::Hist;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, Write};
use std::path::Path;

/// The wall clock in unix milliseconds.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// One step of a move: an ask to the control plane or a connect.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Step {
    /// When the step started (unix ms).
    pub at_ms: u64,
    /// `ask` (control plane), `connect` (a URL from the control plane or a
    /// `reconnect`), or `redirect` (following a 307 `wrong_node`).
    pub kind: String,
    /// The node the step went to (for an ask: the node the answer named).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// The WebSocket URL connected to (connect and redirect steps).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// An ask's `unreachable=` parameter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unreachable: Option<String>,
    /// An ask's ring version; on a connect or redirect, the `ring=V` hint
    /// it carried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ring_version: Option<u64>,
    /// `ok`, or the failure's cause (`refused`, `http_307`, `ctl_no_nodes`…).
    pub result: String,
}

/// One move of one user.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Move {
    /// The user.
    pub user: String,
    /// Why the connection ended: `reconnect` (a `reconnect` envelope, then
    /// the close), `close_<code>` (closed without one), `eof`, `reset`,
    /// `protocol`.
    pub cause: String,
    /// The node the user was on (its welcome's `node`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// The `reconnect` envelope's `wsUrl`, if it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reconnect_ws_url: Option<String>,
    /// When loadgen saw the connection end (unix ms).
    pub disconnect_ms: u64,
    /// Every ask and connect until the welcome, in order.
    pub steps: Vec<Step>,
    /// The node that welcomed the user back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// When the welcome arrived (unix ms); absent if the run ended first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resumed_ms: Option<u64>,
    /// The reconnect presented a resume token.
    pub with_resume_token: bool,
}

impl Move {
    /// A move that starts now.
    pub fn start(user: String, cause: String, from: Option<String>, url: Option<String>) -> Self {
        Self {
            user,
            cause,
            from,
            reconnect_ws_url: url,
            disconnect_ms: unix_ms(),
            steps: Vec::new(),
            to: None,
            resumed_ms: None,
            with_resume_token: false,
        }
    }
}

/// Creates (truncates) the event log before a run.
pub fn create(path: &Path) -> std::io::Result<()> {
    std::fs::File::create(path).map(drop)
}

/// Appends `moves` to the log, one line each.
pub fn append(path: &Path, moves: &[Move]) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new().append(true).open(path)?;
    for m in moves {
        let mut line = serde_json::to_vec(m).expect("moves encode");
        line.push(b'\n');
        f.write_all(&line)?;
    }
    Ok(())
}

/// Reads a log back (lines that are not moves are an error).
pub fn read(path: &Path) -> std::io::Result<Vec<Move>> {
    let f = std::io::BufReader::new(std::fs::File::open(path)?);
    let mut out = Vec::new();
    for (i, line) in f.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        out.push(serde_json::from_str(&line).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}:{}: {e}", path.display(), i + 1),
            )
        })?);
    }
    Ok(out)
}

/// `moves.*` in the report: what the event log says, summed.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MovesSummary {
    /// Moves (connections ended without loadgen asking).
    pub total: u64,
    /// Distinct users that moved.
    pub users: u64,
    /// Moves that reached a welcome again before the run ended.
    pub resumed: u64,
    /// Moves by cause.
    pub by_cause: BTreeMap<String, u64>,
    /// Moves by (from → to) node, `from>to`.
    pub by_route: BTreeMap<String, u64>,
    /// Asks to the control plane during moves.
    pub ctl_asks: u64,
    /// 307 `wrong_node` answers followed.
    pub redirects: u64,
    /// Steps that failed, by cause.
    pub failed_steps: BTreeMap<String, u64>,
    /// Disconnect → welcome, in milliseconds.
    pub time_to_resume_ms: Percentiles,
}

impl MovesSummary {
    /// Sums `moves`.
    pub fn of(moves: &[Move]) -> Self {
        let mut s = Self::default();
        let mut users = BTreeSet::new();
        let mut hist = Hist::default();
        for m in moves {
            s.total += 1;
            users.insert(m.user.as_str());
            *s.by_cause.entry(m.cause.clone()).or_default() += 1;
            let route = format!(
                "{}>{}",
                m.from.as_deref().unwrap_or("?"),
                m.to.as_deref().unwrap_or("?")
            );
            *s.by_route.entry(route).or_default() += 1;
            for st in &m.steps {
                s.ctl_asks += u64::from(st.kind == "ask");
                s.redirects += u64::from(st.kind == "redirect");
                if st.result != "ok" {
                    *s.failed_steps.entry(st.result.clone()).or_default() += 1;
                }
            }
            if let Some(r) = m.resumed_ms {
                s.resumed += 1;
                hist.record(r.saturating_sub(m.disconnect_ms));
            }
        }
        s.users = users.len() as u64;
        s.time_to_resume_ms = Percentiles::of(Some(&hist));
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mv(user: &str, cause: &str, from: &str, to: Option<&str>, d: u64, r: Option<u64>) -> Move {
        Move {
            user: user.into(),
            cause: cause.into(),
            from: Some(from.into()),
            reconnect_ws_url: None,
            disconnect_ms: d,
            steps: vec![
                Step {
                    at_ms: d + 100,
                    kind: "ask".into(),
                    node: Some("n2".into()),
                    url: None,
                    unreachable: Some(from.into()),
                    ring_version: Some(4),
                    result: "ok".into(),
                },
                Step {
                    at_ms: d + 101,
                    kind: "connect".into(),
                    node: Some("n2".into()),
                    url: Some("ws://127.0.0.1:1/ws".into()),
                    unreachable: None,
                    ring_version: None,
                    result: "refused".into(),
                },
            ],
            to: to.map(Into::into),
            resumed_ms: r,
            with_resume_token: true,
        }
    }

    #[test]
    fn the_log_round_trips_and_sums() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        create(&path).unwrap();
        let a = mv("u1", "eof", "n1", Some("n2"), 1_000, Some(1_300));
        let b = mv("u2", "reconnect", "n0", None, 2_000, None);
        append(&path, std::slice::from_ref(&a)).unwrap();
        append(&path, &[b.clone(), a.clone()]).unwrap();
        let back = read(&path).unwrap();
        assert_eq!(back, vec![a.clone(), b, a]);
        let s = MovesSummary::of(&back);
        assert_eq!((s.total, s.users, s.resumed), (3, 2, 2));
        assert_eq!(s.by_cause["eof"], 2);
        assert_eq!(s.by_route["n1>n2"], 2);
        assert_eq!(s.by_route["n0>?"], 1);
        assert_eq!((s.ctl_asks, s.redirects), (3, 0));
        assert_eq!(s.failed_steps["refused"], 3);
        assert_eq!(s.time_to_resume_ms.count, 2);
        assert_eq!(s.time_to_resume_ms.max, 300);
        std::fs::write(&path, "not json\n").unwrap();
        assert!(read(&path).is_err());
    }
}
