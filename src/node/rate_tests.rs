//! Tests of `rate`.

use super::*;
use std::time::Duration;

#[test]
fn burst_then_refill_at_rate() {
    let limit = Limit::per_sec(10, 3);
    let t0 = Instant::now();
    let b = TokenBucket::full(t0);
    assert!((0..3).all(|_| b.take(limit, t0).is_ok()));
    assert_eq!(
        b.take(limit, t0),
        Err(100),
        "10/s: the next token in 100 ms"
    );
    assert_eq!(b.take(limit, t0 + Duration::from_millis(50)), Err(50));
    assert!(b.take(limit, t0 + Duration::from_millis(101)).is_ok());
    assert!(b.take(limit, t0 + Duration::from_millis(102)).is_err());
    // never more than the burst
    let later = t0 + Duration::from_secs(60);
    assert_eq!((0..10).filter(|_| b.take(limit, later).is_ok()).count(), 3);
}

#[test]
fn a_rate_per_minute_is_exact() {
    // 50 per 60 s: one token every 1.2 s.
    let limit = Limit {
        tokens: 50,
        per_ms: 60_000,
        burst: 50,
    };
    let t0 = Instant::now();
    let b = TokenBucket::full(t0);
    assert_eq!((0..60).filter(|_| b.take(limit, t0).is_ok()).count(), 50);
    assert_eq!(b.take(limit, t0), Err(1200));
    assert_eq!(b.take(limit, t0 + Duration::from_millis(1000)), Err(200));
    assert!(b.take(limit, t0 + Duration::from_millis(1200)).is_ok());
    // A whole minute refills the whole burst, not one token more.
    let later = t0 + Duration::from_secs(120);
    assert_eq!((0..60).filter(|_| b.take(limit, later).is_ok()).count(), 50);
}

fn seed_table() -> RateTable {
    toml::from_str(
        r#"
        send = "chat"
        join = "general"
        publish-default = "general"
        publish = [
          { rooms = "location.*", kind = "location" },
          { rooms = "chat.*", kind = "chat" },
        ]
        [kinds]
        general = { limit = 100, per-secs = 60 }
        location = { limit = 1000, per-secs = 60 }
        chat = { limit = 50, per-secs = 60, burst = 10 }
        "#,
    )
    .unwrap()
}

fn builtins() -> (Limit, Limit) {
    (Limit::per_sec(1000, 2000), Limit::per_sec(50, 100))
}

#[test]
fn kinds_are_chosen_by_envelope_and_by_room_pattern() {
    let (m, j) = builtins();
    let kinds = RateKinds::new(m, j, &seed_table()).unwrap();
    let name = |k| kinds.name(k).to_owned();
    assert_eq!(name(kinds.send()), "chat");
    assert_eq!(name(kinds.join()), "general");
    assert_eq!(name(kinds.publish("location.truck7")), "location");
    assert_eq!(name(kinds.publish("chat.lobby")), "chat");
    assert_eq!(name(kinds.publish("news")), "general");
    assert_eq!(
        name(kinds.publish("location.a.b")),
        "general",
        "* is one segment"
    );
    let chat = kinds.limit(kinds.send());
    assert_eq!((chat.tokens, chat.per_ms, chat.burst), (50, 60_000, 10));
}

#[test]
fn without_a_table_the_kinds_are_todays() {
    let (m, j) = builtins();
    let kinds = RateKinds::new(m, j, &RateTable::default()).unwrap();
    assert_eq!(kinds.limit(kinds.send()), m);
    assert_eq!(kinds.limit(kinds.publish("chat.lobby")), m);
    assert_eq!(kinds.limit(kinds.join()), j);
}

#[test]
fn bad_tables_are_named_errors() {
    let (m, j) = builtins();
    let bad = |text: &str| RateKinds::new(m, j, &toml::from_str(text).unwrap()).unwrap_err();
    assert_eq!(
        bad(r#"send = "nope""#),
        RateTableError::Unknown("nope".into())
    );
    assert_eq!(
        bad("kinds.messages = { limit = 1 }"),
        RateTableError::BuiltIn("messages".into())
    );
    assert_eq!(
        bad("kinds.x = { limit = 0 }"),
        RateTableError::Zero("x".into())
    );
    assert!(matches!(
        bad(r#"publish = [{ rooms = "a.b*", kind = "messages" }]"#),
        RateTableError::Pattern(..)
    ));
}

#[test]
fn a_users_buckets_are_made_on_first_use_and_kept_apart() {
    let (m, j) = builtins();
    let kinds = RateKinds::new(m, j, &seed_table()).unwrap();
    let mut b = Buckets::default();
    assert!(b.0.is_empty(), "an idle user holds no bucket");
    let t0 = Instant::now();
    let chat = kinds.send();
    assert_eq!(
        (0..20).filter(|_| b.take(&kinds, chat, t0).is_ok()).count(),
        10
    );
    let location = kinds.publish("location.x");
    assert!(
        b.take(&kinds, location, t0).is_ok(),
        "another kind, its own bucket"
    );
    assert_eq!(b.0.len(), 2);
}
