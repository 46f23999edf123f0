//! Tests of `config`.

use super::*;
use clap::Parser;

#[test]
fn flag_beats_file_beats_default() {
    let dir = std::env::temp_dir().join(format!("shardcast-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("node.toml");
    std::fs::write(&file, "cores = 3\nbuffer-messages = 7\necho = true\n").unwrap();
    let args = NodeArgs::parse_from([
        "shardcast-node",
        "--config",
        file.to_str().unwrap(),
        "--cores",
        "2",
    ]);
    let c = args.resolve().unwrap();
    assert_eq!(c.cores, 2, "flag wins over file");
    assert_eq!(c.buffer_messages, 7, "file wins over default");
    assert!(c.echo);
    assert_eq!(c.max_message_bytes, 1 << 20, "default");
}

#[test]
fn unknown_file_key_is_a_clear_error() {
    let dir = std::env::temp_dir().join(format!("shardcast-cfg2-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bad.toml");
    std::fs::write(&file, "corez = 3\n").unwrap();
    let args = NodeArgs::parse_from(["shardcast-node", "--config", file.to_str().unwrap()]);
    let err = args.resolve().unwrap_err().to_string();
    assert!(err.contains("corez"), "{err}");
}

#[test]
fn auth_knobs_parse_lists_and_build_the_verifier() {
    let keys = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/jwt/public");
    let args = NodeArgs::parse_from([
        "shardcast-node",
        "--auth",
        "jwt",
        "--jwt-public-key",
        keys,
        "--allowed-origins",
        "https://a.example,*.example.org",
        "--rooms-policy",
        "claims",
    ]);
    let c = args.resolve().unwrap();
    assert_eq!(c.allowed_origins.as_ref().map(Vec::len), Some(2));
    assert!(c.origins.as_ref().unwrap().allows("https://x.example.org"));
    let jwt = c.jwt.as_ref().expect("a verifier with --auth jwt");
    // Public keys given and no JWT secret: HS256 stays off.
    assert_eq!(jwt.algorithms(), ["RS256", "ES256"]);
    assert_eq!(jwt.key_ids(), ["es-a", "es-b", "rs-a"]);
    assert_eq!(c.rooms_policy, RoomsPolicy::Claims);
    let none = NodeArgs::parse_from(["shardcast-node"]).resolve().unwrap();
    assert!(none.jwt.is_none() && none.origins.is_none());
    assert_eq!(none.auth, AuthMode::None);
}

#[test]
fn auth_refuses_what_it_cannot_run_with() {
    let bad_key = NodeArgs::parse_from([
        "shardcast-node",
        "--auth",
        "jwt",
        "--jwt-public-key",
        concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"),
    ]);
    assert!(matches!(bad_key.resolve(), Err(ConfigError::Keys(_))));
    let claims = NodeArgs::parse_from(["shardcast-node", "--rooms-policy", "claims"]);
    assert!(matches!(
        claims.resolve(),
        Err(ConfigError::Invalid {
            knob: "rooms-policy",
            ..
        })
    ));
    let origins = NodeArgs::parse_from(["shardcast-node", "--allowed-origins", "no-scheme.com"]);
    assert!(matches!(origins.resolve(), Err(ConfigError::Origins(_))));
}

#[test]
fn the_relay_needs_the_redis_store() {
    let args = NodeArgs::parse_from(["shardcast-node", "--kafka", "127.0.0.1:9092"]);
    assert!(matches!(
        args.resolve(),
        Err(ConfigError::Invalid { knob: "kafka", .. })
    ));
    let args = NodeArgs::parse_from([
        "shardcast-node",
        "--kafka",
        "127.0.0.1:9092",
        "--redis",
        "redis://127.0.0.1:6379/0",
    ]);
    assert!(args.resolve().is_ok());
}

#[test]
fn a_ring_file_must_name_this_node() {
    use crate::ring::{Node, Ring, RingConfig};
    let dir = std::env::temp_dir().join(format!("shardcast-ring-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("ring.json");
    let ring = Ring::new(RingConfig {
        version: 3,
        slots: 1024,
        nodes: vec![Node::new("a", 1.0), Node::new("b", 1.0)],
    })
    .unwrap();
    std::fs::write(&path, serde_json::to_string(&ring).unwrap()).unwrap();
    let ring_arg = path.to_str().unwrap();
    let cluster = [
        "--kafka",
        "127.0.0.1:9092",
        "--redis",
        "redis://127.0.0.1:6379/0",
    ];
    let with = |args: &[&str]| {
        let mut all = vec!["shardcast-node"];
        all.extend_from_slice(args);
        all.extend_from_slice(&cluster);
        NodeArgs::parse_from(all)
    };
    let alone = NodeArgs::parse_from(["shardcast-node", "--ring", ring_arg, "--node-id", "b"]);
    assert!(matches!(
        alone.resolve(),
        Err(ConfigError::Invalid { knob: "ring", .. })
    ));
    let ok = with(&["--ring", ring_arg, "--node-id", "b"]);
    let config = ok.resolve().unwrap();
    assert_eq!(config.ring_snapshot.unwrap().version(), 3);
    let stranger = with(&["--ring", ring_arg, "--node-id", "c"]);
    match stranger.resolve() {
        Err(ConfigError::Invalid { knob: "ring", why }) => assert!(why.contains("\"c\""), "{why}"),
        other => panic!("expected a ring error, got {other:?}"),
    }
    std::fs::write(&path, "{not json").unwrap();
    let broken = with(&["--ring", ring_arg, "--node-id", "a"]);
    assert!(matches!(
        broken.resolve(),
        Err(ConfigError::Invalid { knob: "ring", .. })
    ));
}
