//! The changing-cluster verdict (`loadgen-cluster-report`, used by
//! `scripts/cluster-scenario.sh` and the cluster test): for each change a
//! run went through (a node joined, drained, was killed, came back), the
//! **optimum** (the run's users whose owner differs between the ring before
//! and the ring after, by `shardcast::ring`), the users that actually moved
//! (from the event log), whether the two sets are equal, and for a kill the
//! failover time (kill → 99 % / 100 % of the node's users welcomed again).
//!
//! Attribution: a move belongs to the change whose window holds its
//! disconnect, a window running from the change to the next one (or the
//! end of the log). Changes must therefore be spaced by more than the
//! nodes' `--rebalance-secs` plus a reconnect, which the script does.
//!
//! Pure: files in, a [`Verdict`] out; the binary does the reading and the
//! exit code.

use crate::events::Move;
use crate::probe::UserNames;
use serde::{Deserialize, Serialize};
use shardcast::ring::Ring;
use std::collections::{BTreeMap, BTreeSet};

/// One change of the cluster, as the script recorded it.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Change {
    /// `join`, `drain`, `kill` or `restart`.
    pub event: String,
    /// The node it concerns.
    pub node: String,
    /// When the script acted (unix ms): started the node, sent the signal.
    pub at_ms: u64,
    /// When the control plane's ring first showed the change (unix ms).
    #[serde(default)]
    pub ring_at_ms: Option<u64>,
    /// The ring before (`GET /api/v1/ring` just before acting).
    pub ring_before: Ring,
    /// The ring after (the first one showing the change).
    pub ring_after: Ring,
}

/// The verdict on one change.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChangeVerdict {
    /// `join n3`, `kill n1`, …
    pub change: String,
    /// Ring versions before and after.
    pub versions: (u64, u64),
    /// Milliseconds from the action to the ring showing it.
    pub ring_after_ms: Option<u64>,
    /// Users whose owner changed between the two rings.
    pub optimum: usize,
    /// Distinct users that moved in this change's window.
    pub moved: usize,
    /// `moved / optimum` (1.00 is the goal; absent when the optimum is 0).
    pub ratio: Option<f64>,
    /// Moved and in the optimum with the new owner reached.
    pub moved_to_new_owner: usize,
    /// In the optimum but never moved.
    pub missing: Vec<String>,
    /// Moved but not in the optimum.
    pub extra: Vec<String>,
    /// Moved to a node other than the ring's new owner.
    pub wrong_owner: Vec<String>,
    /// The two sets are equal and every mover reached its new owner.
    pub exact: bool,
    /// Moves in the window (a user may move more than once).
    pub moves: usize,
    /// Moves by cause.
    pub causes: BTreeMap<String, usize>,
    /// Ring versions in this change's window that no scripted change made
    /// (a node expired and came back, …): the moves then include theirs,
    /// so the sets cannot be equal. `None` when the window's end is unknown.
    pub unscripted_versions: Option<u64>,
    /// A kill: the failover.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failover: Option<Failover>,
}

/// How long a killed node's users took to be welcomed again.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Failover {
    /// The killed node's users (the optimum).
    pub users: usize,
    /// Of them, welcomed again before the run ended.
    pub resumed: usize,
    /// Kill → 99 % of them welcomed again (ms); absent if never reached.
    pub p99_ms: Option<u64>,
    /// Kill → all of them welcomed again (ms).
    pub all_ms: Option<u64>,
    /// Where the time goes (medians over the users, ms after the kill):
    /// their connection seen ending.
    pub detected_ms: Option<u64>,
    /// The first ask whose answer no longer named the killed node.
    pub first_good_answer_ms: Option<u64>,
    /// Median number of asks and of connects per user.
    pub asks_median: Option<u64>,
    /// See `asks_median`.
    pub connects_median: Option<u64>,
    /// Failed steps by cause over these users' moves.
    pub failed_steps: BTreeMap<String, usize>,
}

/// The whole verdict.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Verdict {
    /// One entry per change, in order.
    pub changes: Vec<ChangeVerdict>,
    /// Every change exact.
    pub all_exact: bool,
}

/// The run's users: `users` names of `run_id`.
pub fn run_users(run_id: &str, users: u64) -> Vec<String> {
    let names = UserNames::new(run_id);
    (0..users).map(|i| names.name(i)).collect()
}

/// Users whose owner differs between `before` and `after`, with the new
/// owner's id.
pub fn owner_changes(before: &Ring, after: &Ring, users: &[String]) -> BTreeMap<String, String> {
    users
        .iter()
        .filter_map(|u| {
            let (a, b) = (&before.lookup(u).id, &after.lookup(u).id);
            (a != b).then(|| (u.clone(), b.clone()))
        })
        .collect()
}

fn median(mut v: Vec<u64>) -> Option<u64> {
    v.sort_unstable();
    v.get(v.len() / 2).copied()
}

/// The time by which `fraction` of `n` users were back, from sorted
/// per-user delays; `None` if fewer came back.
fn quantile_time(sorted: &[u64], n: usize, fraction: f64) -> Option<u64> {
    let need = ((n as f64 * fraction).ceil() as usize).max(1);
    sorted.get(need - 1).copied()
}

/// Judges `changes` (in time order) against `moves` for `users`;
/// `initial_version` is the ring version the run started on (versions
/// between it and the first change count against the first change: their
/// moves, spread over the nodes' `--rebalance-secs`, spill into its
/// window), `final_version` the one after the run (the end of the last
/// change's window).
pub fn judge(
    changes: &[Change],
    moves: &[Move],
    users: &[String],
    initial_version: Option<u64>,
    final_version: Option<u64>,
) -> Verdict {
    let mut out = Vec::new();
    for (i, c) in changes.iter().enumerate() {
        let end = changes.get(i + 1).map_or(u64::MAX, |n| n.at_ms);
        let window_end_version = changes
            .get(i + 1)
            .map(|n| n.ring_before.version())
            .or(final_version);
        let (v0, v1) = (c.ring_before.version(), c.ring_after.version());
        let before = match i {
            0 => initial_version.map_or(0, |iv| v0.saturating_sub(iv)),
            _ => 0,
        };
        let unscripted_versions = window_end_version
            .map(|e| before + v1.saturating_sub(v0).saturating_sub(1) + e.saturating_sub(v1));
        let optimum = owner_changes(&c.ring_before, &c.ring_after, users);
        let window: Vec<&Move> = moves
            .iter()
            .filter(|m| m.disconnect_ms >= c.at_ms && m.disconnect_ms < end)
            .collect();
        let moved: BTreeSet<&str> = window.iter().map(|m| m.user.as_str()).collect();
        let mut causes = BTreeMap::new();
        for m in &window {
            *causes.entry(m.cause.clone()).or_default() += 1;
        }
        // Where each mover ended up: its last move in the window.
        let mut last_to: BTreeMap<&str, Option<&str>> = BTreeMap::new();
        for m in &window {
            last_to.insert(&m.user, m.to.as_deref());
        }
        let missing: Vec<String> = optimum
            .keys()
            .filter(|u| !moved.contains(u.as_str()))
            .cloned()
            .collect();
        let extra: Vec<String> = moved
            .iter()
            .filter(|u| !optimum.contains_key(**u))
            .map(|u| u.to_string())
            .collect();
        let wrong_owner: Vec<String> = optimum
            .iter()
            .filter(|(u, owner)| {
                matches!(last_to.get(u.as_str()), Some(to) if *to != Some(owner.as_str()))
            })
            .map(|(u, _)| u.clone())
            .collect();
        let failover = (c.event == "kill").then(|| failover(c, &window, &optimum));
        out.push(ChangeVerdict {
            change: format!("{} {}", c.event, c.node),
            versions: (c.ring_before.version(), c.ring_after.version()),
            ring_after_ms: c.ring_at_ms.map(|t| t.saturating_sub(c.at_ms)),
            optimum: optimum.len(),
            moved: moved.len(),
            ratio: (!optimum.is_empty())
                .then(|| (moved.len() as f64 / optimum.len() as f64 * 100.0).round() / 100.0),
            moved_to_new_owner: optimum.len() - missing.len() - wrong_owner.len(),
            exact: missing.is_empty() && extra.is_empty() && wrong_owner.is_empty(),
            missing,
            extra,
            wrong_owner,
            moves: window.len(),
            causes,
            unscripted_versions,
            failover,
        });
    }
    Verdict {
        all_exact: out.iter().all(|c| c.exact),
        changes: out,
    }
}

fn failover(c: &Change, window: &[&Move], optimum: &BTreeMap<String, String>) -> Failover {
    let mine: Vec<&&Move> = window
        .iter()
        .filter(|m| optimum.contains_key(&m.user))
        .collect();
    // Each user's first move in the window is the one the kill caused.
    let mut first: BTreeMap<&str, &Move> = BTreeMap::new();
    for m in &mine {
        first.entry(m.user.as_str()).or_insert(m);
    }
    let mut back: Vec<u64> = first
        .values()
        .filter_map(|m| m.resumed_ms.map(|r| r.saturating_sub(c.at_ms)))
        .collect();
    back.sort_unstable();
    let n = optimum.len();
    let mut failed_steps = BTreeMap::new();
    let mut good_answer = Vec::new();
    let mut asks = Vec::new();
    let mut connects = Vec::new();
    for m in first.values() {
        let mut a = 0;
        let mut k = 0;
        let mut good = None;
        for s in &m.steps {
            if s.result != "ok" {
                *failed_steps.entry(s.result.clone()).or_default() += 1;
            }
            if s.kind == "ask" {
                a += 1;
                if good.is_none() && s.result == "ok" && s.node.as_deref() != Some(&c.node) {
                    good = Some(s.at_ms.saturating_sub(c.at_ms));
                }
            } else {
                k += 1;
            }
        }
        asks.push(a);
        connects.push(k);
        good_answer.extend(good);
    }
    Failover {
        users: n,
        resumed: back.len(),
        p99_ms: quantile_time(&back, n, 0.99),
        all_ms: (back.len() == n && n > 0).then(|| *back.last().expect("n > 0")),
        detected_ms: median(
            first
                .values()
                .map(|m| m.disconnect_ms.saturating_sub(c.at_ms))
                .collect(),
        ),
        first_good_answer_ms: median(good_answer),
        asks_median: median(asks),
        connects_median: median(connects),
        failed_steps,
    }
}

/// The verdict as a table for humans.
pub fn table(v: &Verdict) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<12} {:>9} {:>8} {:>7} {:>6} {:>6}  exact  causes",
        "change", "versions", "ring ms", "optimum", "moved", "ratio"
    );
    for c in &v.changes {
        let _ = writeln!(
            s,
            "{:<12} {:>4}→{:<4} {:>8} {:>7} {:>6} {:>6}  {:<5}  {:?}",
            c.change,
            c.versions.0,
            c.versions.1,
            c.ring_after_ms.map_or("-".into(), |v| v.to_string()),
            c.optimum,
            c.moved,
            c.ratio.map_or("-".into(), |r| format!("{r:.2}")),
            if c.exact { "yes" } else { "NO" },
            c.causes
        );
        if let Some(n) = c.unscripted_versions.filter(|n| *n > 0) {
            let _ = writeln!(
                s,
                "    the ring changed {n} more time(s) in or just before this window without a scripted change (a node expired and rejoined?): the moves include theirs"
            );
        }
        for (what, list) in [
            ("missing", &c.missing),
            ("extra", &c.extra),
            ("wrong owner", &c.wrong_owner),
        ] {
            if !list.is_empty() {
                let _ = writeln!(s, "    {what}: {}", list.join(" "));
            }
        }
        if let Some(f) = &c.failover {
            let ms = |v: Option<u64>| v.map_or("never".into(), |v| format!("{v} ms"));
            let _ = writeln!(
                s,
                "    failover: {} users, {} back; kill → 99 % {}, → 100 % {}; detected {}, first answer without the node {}, asks {} / connects {} per user (median); failed steps {:?}",
                f.users,
                f.resumed,
                ms(f.p99_ms),
                ms(f.all_ms),
                ms(f.detected_ms),
                ms(f.first_good_answer_ms),
                f.asks_median.unwrap_or(0),
                f.connects_median.unwrap_or(0),
                f.failed_steps
            );
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Step;
    use shardcast::ring::{Node, RingConfig};

    fn ring(version: u64, ids: &[&str]) -> Ring {
        Ring::new(RingConfig {
            version,
            slots: 4096,
            nodes: ids.iter().map(|i| Node::new(*i, 1.0)).collect(),
        })
        .unwrap()
    }

    fn mv(user: &str, at: u64, to: &str, back: Option<u64>, steps: Vec<Step>) -> Move {
        Move {
            user: user.into(),
            cause: "eof".into(),
            from: Some("n1".into()),
            reconnect_ws_url: None,
            disconnect_ms: at,
            steps,
            to: back.map(|_| to.into()),
            resumed_ms: back,
            with_resume_token: true,
        }
    }

    fn ask(at: u64, node: &str) -> Step {
        Step {
            at_ms: at,
            kind: "ask".into(),
            node: Some(node.into()),
            url: None,
            unreachable: None,
            ring_version: None,
            result: "ok".into(),
        }
    }

    #[test]
    fn a_kill_is_exact_when_exactly_the_nodes_users_move_to_their_new_owners() {
        let users = run_users("t", 200);
        let before = ring(3, &["n0", "n1", "n2"]);
        let after = ring(4, &["n0", "n2"]);
        let optimum = owner_changes(&before, &after, &users);
        // Removing a node moves exactly its users.
        assert!(optimum.keys().all(|u| before.lookup(u).id == "n1"));
        let n1_users = users.iter().filter(|u| before.lookup(u).id == "n1").count();
        assert_eq!(optimum.len(), n1_users);
        let kill = Change {
            event: "kill".into(),
            node: "n1".into(),
            at_ms: 10_000,
            ring_at_ms: Some(10_400),
            ring_before: before,
            ring_after: after,
        };
        let moves: Vec<Move> = optimum
            .iter()
            .enumerate()
            .map(|(i, (u, to))| {
                mv(
                    u,
                    10_001,
                    to,
                    Some(10_500 + i as u64),
                    vec![ask(10_100, "n1"), ask(10_300, to)],
                )
            })
            .collect();
        let v = judge(
            std::slice::from_ref(&kill),
            &moves,
            &users,
            Some(3),
            Some(4),
        );
        let c = &v.changes[0];
        assert!(v.all_exact, "{}", table(&v));
        assert_eq!(c.unscripted_versions, Some(0));
        assert_eq!((c.versions, c.ratio), ((3, 4), Some(1.0)));
        assert_eq!(c.ring_after_ms, Some(400));
        let f = c.failover.as_ref().unwrap();
        assert_eq!((f.users, f.resumed), (n1_users, n1_users));
        assert_eq!(f.all_ms, Some(500 + n1_users as u64 - 1));
        assert_eq!(f.detected_ms, Some(1));
        assert_eq!(f.first_good_answer_ms, Some(300));
        assert_eq!(f.asks_median, Some(2));

        // One user of another node moving too, one of n1's never: not exact.
        let other = users
            .iter()
            .find(|u| !optimum.contains_key(*u))
            .unwrap()
            .clone();
        let mut wrong = moves.clone();
        let dropped = wrong.pop().unwrap().user;
        wrong.push(mv(&other, 10_002, "n0", Some(10_600), vec![]));
        let v = judge(
            std::slice::from_ref(&kill),
            &wrong,
            &users,
            Some(2),
            Some(6),
        );
        assert_eq!(v.changes[0].unscripted_versions, Some(3));
        assert!(table(&v).contains("3 more time(s)"));
        let c = &v.changes[0];
        assert!(!v.all_exact);
        assert_eq!(c.missing, vec![dropped]);
        assert_eq!(c.extra, vec![other]);
        assert_eq!(c.failover.as_ref().unwrap().all_ms, None);
        assert!(table(&v).contains("NO"));
    }

    #[test]
    fn moves_belong_to_the_window_of_their_change_and_must_reach_the_new_owner() {
        let users = run_users("w", 100);
        let r3 = ring(1, &["n0", "n1", "n2"]);
        let r4 = ring(2, &["n0", "n1", "n2", "n3"]);
        let join = Change {
            event: "join".into(),
            node: "n3".into(),
            at_ms: 1_000,
            ring_at_ms: None,
            ring_before: r3.clone(),
            ring_after: r4.clone(),
        };
        let leave = Change {
            event: "drain".into(),
            node: "n3".into(),
            at_ms: 5_000,
            ring_at_ms: None,
            ring_before: r4,
            ring_after: r3,
        };
        let opt = owner_changes(&join.ring_before, &join.ring_after, &users);
        assert!(!opt.is_empty() && opt.values().all(|o| o == "n3"));
        let mut moves: Vec<Move> = opt
            .keys()
            .map(|u| mv(u, 2_000, "n3", Some(2_100), vec![]))
            .collect();
        // The same users move back in the drain's window.
        moves.extend(opt.keys().map(|u| {
            let back = join.ring_before.lookup(u).id.clone();
            mv(u, 6_000, &back, Some(6_100), vec![])
        }));
        let v = judge(&[join.clone(), leave.clone()], &moves, &users, None, None);
        assert!(v.all_exact, "{}", table(&v));
        assert_eq!(v.changes[1].unscripted_versions, None);
        // A mover that ended on the wrong node is caught.
        moves[0].to = Some("n0".into());
        let v = judge(&[join, leave], &moves, &users, None, None);
        assert_eq!(v.changes[0].wrong_owner.len(), 1);
        assert!(!v.changes[0].exact && v.changes[1].exact);
    }
}
