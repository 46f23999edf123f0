use std::sync::{Arc, Mutex};

use super::*;

const GRACE: Duration = Duration::from_secs(2);

fn hb(id: &str) -> Heartbeat {
    Heartbeat {
        node_id: id.into(),
        ws_url: format!("ws://{id}.test:8080/ws"),
        weight: 1.0,
        zone: "z1".into(),
        connections: 0,
        mps: 0.0,
        p95_ms: 0.0,
        draining: false,
        ring_version: 0,
    }
}

/// A membership whose persisted snapshots are recorded.
fn membership() -> (Membership, Arc<Mutex<Vec<RingConfig>>>) {
    let saved = Arc::new(Mutex::new(Vec::new()));
    let s = Arc::clone(&saved);
    let m = Membership::new(
        64,
        GRACE,
        0,
        Box::new(move |c| {
            s.lock().unwrap().push(c.clone());
            Ok(())
        }),
    );
    (m, saved)
}

fn ids(m: &Membership) -> Vec<String> {
    m.snapshot().nodes.into_iter().map(|n| n.id).collect()
}

#[test]
fn a_first_heartbeat_joins_and_takes_a_new_version() {
    let (mut m, saved) = membership();
    let t0 = Instant::now();
    let beat = m.heartbeat(&hb("a"), t0).unwrap();
    assert!(beat.member);
    assert_eq!(beat.changes.len(), 1);
    assert_eq!(beat.changes[0].reason, ChangeReason::Joined);
    assert_eq!(m.version(), 1);
    let beat = m.heartbeat(&hb("b"), t0).unwrap();
    assert_eq!(beat.changes[0].version, 2);
    assert_eq!(ids(&m), ["a", "b"]);
    // The same heartbeat again changes nothing.
    assert!(m.heartbeat(&hb("a"), t0).unwrap().changes.is_empty());
    assert_eq!(m.version(), 2);
    // Each version was persisted, in order, before it was current.
    let versions: Vec<u64> = saved.lock().unwrap().iter().map(|c| c.version).collect();
    assert_eq!(versions, [1, 2]);
    let snap = m.snapshot();
    assert_eq!(snap.nodes[0].addr, "ws://a.test:8080/ws");
    assert_eq!(snap.nodes[0].zone, "z1");
}

#[test]
fn incremental_changes_equal_full_builds() {
    let (mut m, _) = membership();
    let t0 = Instant::now();
    for id in ["a", "b", "c", "d"] {
        m.heartbeat(&hb(id), t0).unwrap();
    }
    let mut heavier = hb("c");
    heavier.weight = 3.0;
    m.heartbeat(&heavier, t0).unwrap();
    let mut drained = hb("b");
    drained.draining = true;
    m.heartbeat(&drained, t0).unwrap();
    let ring = m.ring().unwrap();
    assert_eq!(**ring, Ring::new(m.snapshot()).unwrap());
    assert_eq!(ring.version(), 6);
}

#[test]
fn draining_leaves_and_later_draining_beats_are_answered() {
    let (mut m, _) = membership();
    let t0 = Instant::now();
    m.heartbeat(&hb("a"), t0).unwrap();
    m.heartbeat(&hb("b"), t0).unwrap();
    let mut d = hb("a");
    d.draining = true;
    let beat = m.heartbeat(&d, t0).unwrap();
    assert!(!beat.member);
    assert_eq!(beat.changes[0].reason, ChangeReason::Drained);
    assert_eq!((m.version(), ids(&m)), (3, vec!["b".to_owned()]));
    // Still draining: no change, not refused.
    let beat = m.heartbeat(&d, t0).unwrap();
    assert!(!beat.member && beat.changes.is_empty());
    // Back without draining: it joins again.
    assert!(m.heartbeat(&hb("a"), t0).unwrap().member);
    assert_eq!(m.version(), 4);
}

#[test]
fn a_draining_beat_from_a_node_never_seen_is_unknown() {
    let (mut m, _) = membership();
    let mut d = hb("ghost");
    d.draining = true;
    assert!(matches!(
        m.heartbeat(&d, Instant::now()),
        Err(MembershipError::UnknownNode(_))
    ));
    assert_eq!(m.version(), 0);
}

#[test]
fn a_silent_node_expires_after_the_grace_period() {
    let (mut m, _) = membership();
    let t0 = Instant::now();
    m.heartbeat(&hb("a"), t0).unwrap();
    m.heartbeat(&hb("b"), t0).unwrap();
    m.heartbeat(&hb("a"), t0 + Duration::from_secs(2)).unwrap();
    assert!(m.expire(t0 + GRACE).unwrap().is_empty());
    let gone = m.expire(t0 + GRACE + Duration::from_millis(1)).unwrap();
    assert_eq!(gone.len(), 1);
    assert_eq!(
        (gone[0].node_id.as_str(), gone[0].reason),
        ("b", ChangeReason::Expired)
    );
    assert_eq!((m.version(), ids(&m)), (3, vec!["a".to_owned()]));
    // The last one leaving takes a version too, and the ring is empty.
    let gone = m.expire(t0 + Duration::from_secs(10)).unwrap();
    assert_eq!(gone[0].version, 4);
    assert!(m.ring().is_none());
    assert_eq!(m.snapshot().nodes.len(), 0);
    assert_eq!(m.snapshot().version, 4);
    // A node coming back starts above it.
    m.heartbeat(&hb("b"), t0 + Duration::from_secs(11)).unwrap();
    assert_eq!(m.version(), 5);
}

#[test]
fn a_new_url_or_zone_is_a_new_version_with_the_same_table() {
    let (mut m, _) = membership();
    let t0 = Instant::now();
    m.heartbeat(&hb("a"), t0).unwrap();
    m.heartbeat(&hb("b"), t0).unwrap();
    let before = m.ring().unwrap().clone();
    let mut moved = hb("b");
    moved.ws_url = "ws://b.test:9090/ws".into();
    let beat = m.heartbeat(&moved, t0).unwrap();
    assert_eq!(beat.changes[0].reason, ChangeReason::Updated);
    let after = m.ring().unwrap();
    assert_eq!(after.version(), 3);
    assert_eq!(after.node("b").unwrap().addr, "ws://b.test:9090/ws");
    for slot in 0..64 {
        assert_eq!(before.slot_owner(slot).id, after.slot_owner(slot).id);
    }
}

#[test]
fn a_reported_higher_version_is_never_undercut() {
    let (mut m, _) = membership();
    let t0 = Instant::now();
    // A node that has version 40 joins: the join itself is published above it.
    let mut a = hb("a");
    a.ring_version = 40;
    m.heartbeat(&a, t0).unwrap();
    assert_eq!(m.version(), 41);
    // A member reports 50 (another control plane ran meanwhile): the same
    // members are republished above it.
    a.ring_version = 50;
    let beat = m.heartbeat(&a, t0).unwrap();
    assert_eq!(beat.changes[0].reason, ChangeReason::VersionBump);
    assert_eq!(m.version(), 51);
    assert_eq!(ids(&m), ["a"]);
    // Reporting ours changes nothing.
    a.ring_version = 51;
    assert!(m.heartbeat(&a, t0).unwrap().changes.is_empty());
}

#[test]
fn a_failed_persist_changes_nothing() {
    let fail = Arc::new(Mutex::new(false));
    let f = Arc::clone(&fail);
    let mut m = Membership::new(
        64,
        GRACE,
        7,
        Box::new(move |_| {
            if *f.lock().unwrap() {
                Err(io::Error::other("disk full"))
            } else {
                Ok(())
            }
        }),
    );
    let t0 = Instant::now();
    m.heartbeat(&hb("a"), t0).unwrap();
    assert_eq!(
        m.version(),
        8,
        "the first version is above the persisted one"
    );
    *fail.lock().unwrap() = true;
    assert!(matches!(
        m.heartbeat(&hb("b"), t0),
        Err(MembershipError::Persist { version: 9, .. })
    ));
    assert_eq!((m.version(), ids(&m)), (8, vec!["a".to_owned()]));
    *fail.lock().unwrap() = false;
    m.heartbeat(&hb("b"), t0).unwrap();
    assert_eq!(m.version(), 9);
}

#[test]
fn a_restored_snapshot_keeps_its_version_and_gives_each_node_a_grace_period() {
    let (mut m, _) = membership();
    let t0 = Instant::now();
    m.heartbeat(&hb("a"), t0).unwrap();
    m.heartbeat(&hb("b"), t0).unwrap();
    let snap = m.snapshot();
    let t1 = t0 + Duration::from_secs(60);
    let mut r = Membership::restore(snap.clone(), GRACE, t1, Box::new(|_| Ok(()))).unwrap();
    assert_eq!(r.version(), 2);
    assert_eq!(r.snapshot(), snap);
    assert!(r.expire(t1 + GRACE).unwrap().is_empty());
    // a heartbeats, b does not: b leaves, at version 3.
    r.heartbeat(&hb("a"), t1 + Duration::from_secs(1)).unwrap();
    let gone = r.expire(t1 + GRACE + Duration::from_millis(1)).unwrap();
    assert_eq!((gone.len(), r.version()), (1, 3));
}
