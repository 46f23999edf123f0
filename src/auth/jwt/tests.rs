//! The pure checks of [`JwtVerifier`]: one test per refusal, the accepted
//! shapes, and a property test that no input panics.

use super::*;
use crate::auth::keys::load_public_keys;
use jsonwebtoken::{EncodingKey, Header};
use proptest::prelude::*;
use serde_json::{json, Value};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/jwt");
const SECRET: &[u8] = b"jwt-unit-test-secret-0123456789";
const NOW: u64 = 1_800_000_000;

fn private(name: &str) -> Vec<u8> {
    std::fs::read(format!("{FIXTURES}/private/{name}.pem")).unwrap()
}

fn settings() -> JwtSettings {
    JwtSettings {
        hs256_secret: Some(SECRET.to_vec()),
        public_keys: load_public_keys(&[format!("{FIXTURES}/public").into()]).unwrap(),
        issuer: None,
        audience: None,
        leeway_secs: 30,
    }
}

fn verifier() -> JwtVerifier {
    JwtVerifier::new(settings())
}

fn claims(sub: &str) -> Value {
    json!({"sub": sub, "exp": NOW + 600})
}

fn hs(claims: &Value) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(SECRET),
    )
    .unwrap()
}

fn es(kid: Option<&str>, key: &str, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::ES256);
    header.kid = kid.map(str::to_owned);
    let key = EncodingKey::from_ec_pem(&private(key)).unwrap();
    jsonwebtoken::encode(&header, claims, &key).unwrap()
}

fn rs(kid: Option<&str>, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = kid.map(str::to_owned);
    let key = EncodingKey::from_rsa_pem(&private("rs-a")).unwrap();
    jsonwebtoken::encode(&header, claims, &key).unwrap()
}

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(v.to_string())
}

fn reason(r: Result<Grant, AuthError>) -> AuthReason {
    r.expect_err("refused").reason()
}

#[test]
fn hs256_es256_and_rs256_tokens_are_accepted() {
    let v = verifier();
    for token in [
        hs(&claims("alice")),
        es(Some("es-a"), "es-a", &claims("alice")),
        es(Some("es-b"), "es-b", &claims("alice")),
        rs(Some("rs-a"), &claims("alice")),
        rs(None, &claims("alice")),
    ] {
        let grant = v.verify(&token, NOW).unwrap();
        assert_eq!(grant.user, "alice");
        assert_eq!(grant.expires_at, NOW + 600);
        assert_eq!(grant.permissions, Permissions::default());
    }
}

#[test]
fn a_forged_signature_is_refused() {
    let token = hs(&claims("alice"));
    let forged = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims("alice"),
        &EncodingKey::from_secret(b"another-secret-of-some-length"),
    )
    .unwrap();
    assert_eq!(
        reason(verifier().verify(&forged, NOW)),
        AuthReason::BadSignature
    );
    // Same header and signature, another payload.
    let mut parts: Vec<&str> = token.split('.').collect();
    let payload = b64(&claims("mallory"));
    parts[1] = &payload;
    assert_eq!(
        reason(verifier().verify(&parts.join("."), NOW)),
        AuthReason::BadSignature
    );
    // A key whose public half is not configured, under a configured kid.
    let other = es(Some("es-a"), "es-unknown", &claims("alice"));
    assert_eq!(
        reason(verifier().verify(&other, NOW)),
        AuthReason::BadSignature
    );
}

#[test]
fn alg_none_and_other_algorithms_are_refused() {
    let v = verifier();
    let none = format!("{}.{}.", b64(&json!({"alg":"none"})), b64(&claims("alice")));
    assert_eq!(reason(v.verify(&none, NOW)), AuthReason::BadAlgorithm);
    let none_upper = format!("{}.{}.", b64(&json!({"alg":"None"})), b64(&claims("alice")));
    assert_eq!(reason(v.verify(&none_upper, NOW)), AuthReason::BadAlgorithm);
    let hs384 = jsonwebtoken::encode(
        &Header::new(Algorithm::HS384),
        &claims("alice"),
        &EncodingKey::from_secret(SECRET),
    )
    .unwrap();
    assert_eq!(reason(v.verify(&hs384, NOW)), AuthReason::BadAlgorithm);
}

#[test]
fn hs256_signed_with_a_public_key_is_refused() {
    // The classic confusion attack: the attacker uses the public key's PEM
    // as an HMAC secret.
    let pem = std::fs::read(format!("{FIXTURES}/public/rs-a.pem")).unwrap();
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("rs-a".into());
    let token =
        jsonwebtoken::encode(&header, &claims("alice"), &EncodingKey::from_secret(&pem)).unwrap();
    let no_secret = JwtVerifier::new(JwtSettings {
        hs256_secret: None,
        ..settings()
    });
    assert_eq!(
        reason(no_secret.verify(&token, NOW)),
        AuthReason::BadAlgorithm
    );
    assert_eq!(
        reason(verifier().verify(&token, NOW)),
        AuthReason::BadSignature
    );
}

#[test]
fn keys_are_chosen_by_kid() {
    let v = verifier();
    let unknown = es(Some("es-zzz"), "es-a", &claims("alice"));
    assert_eq!(reason(v.verify(&unknown, NOW)), AuthReason::UnknownKey);
    // Two EC keys: a token without kid cannot say which.
    let no_kid = es(None, "es-a", &claims("alice"));
    assert_eq!(reason(v.verify(&no_kid, NOW)), AuthReason::UnknownKey);
    // The RSA key's kid with an ES256 token: no EC key has it.
    let wrong_family = es(Some("rs-a"), "es-a", &claims("alice"));
    assert_eq!(reason(v.verify(&wrong_family, NOW)), AuthReason::UnknownKey);
    // No key of the family at all: that algorithm is off.
    let only_ec = JwtVerifier::new(JwtSettings {
        public_keys: settings()
            .public_keys
            .into_iter()
            .filter(|k| k.family == KeyFamily::Ec)
            .collect(),
        ..settings()
    });
    assert_eq!(
        reason(only_ec.verify(&rs(None, &claims("alice")), NOW)),
        AuthReason::BadAlgorithm
    );
}

#[test]
fn time_claims_are_checked_with_leeway() {
    let v = verifier();
    let exp = |e: u64| hs(&json!({"sub":"a","exp":e}));
    assert!(v.verify(&exp(NOW - 29), NOW).is_ok(), "inside the leeway");
    assert_eq!(reason(v.verify(&exp(NOW - 30), NOW)), AuthReason::Expired);
    assert_eq!(reason(v.verify(&exp(0), NOW)), AuthReason::Expired);
    let nbf = |n: u64| hs(&json!({"sub":"a","exp":NOW+600,"nbf":n}));
    assert!(v.verify(&nbf(NOW + 30), NOW).is_ok());
    assert_eq!(
        reason(v.verify(&nbf(NOW + 31), NOW)),
        AuthReason::NotYetValid
    );
    let no_exp = hs(&json!({"sub":"a"}));
    assert_eq!(reason(v.verify(&no_exp, NOW)), AuthReason::BadClaims);
    let fractional = hs(&json!({"sub":"a","exp":(NOW + 10) as f64 + 0.5}));
    assert_eq!(v.verify(&fractional, NOW).unwrap().expires_at, NOW + 10);
}

#[test]
fn issuer_and_audience_are_checked_when_configured() {
    let v = JwtVerifier::new(JwtSettings {
        issuer: Some("https://auth.example".into()),
        audience: Some("shardcast".into()),
        ..settings()
    });
    let t = |extra: Value| {
        let mut c = claims("alice");
        for (k, val) in extra.as_object().unwrap() {
            c[k] = val.clone();
        }
        hs(&c)
    };
    assert!(v
        .verify(
            &t(json!({"iss":"https://auth.example","aud":"shardcast"})),
            NOW
        )
        .is_ok());
    assert!(v
        .verify(
            &t(json!({"iss":"https://auth.example","aud":["x","shardcast"]})),
            NOW
        )
        .is_ok());
    assert_eq!(
        reason(v.verify(&t(json!({"iss":"https://auth.example","aud":"other"})), NOW)),
        AuthReason::BadAudience
    );
    assert_eq!(
        reason(v.verify(&t(json!({"iss":"https://auth.example"})), NOW)),
        AuthReason::BadAudience
    );
    assert_eq!(
        reason(v.verify(&t(json!({"iss":"evil","aud":"shardcast"})), NOW)),
        AuthReason::BadIssuer
    );
    // Without the knobs, any aud is fine.
    assert!(verifier()
        .verify(&t(json!({"aud":"whatever"})), NOW)
        .is_ok());
}

#[test]
fn the_subject_is_the_user() {
    let v = verifier();
    assert_eq!(
        reason(v.verify(&hs(&json!({"exp":NOW+60})), NOW)),
        AuthReason::BadSubject
    );
    assert_eq!(
        reason(v.verify(&hs(&claims("a b")), NOW)),
        AuthReason::BadSubject
    );
    let token = hs(&claims("alice"));
    assert!(v.verify_for(&token, Some("alice"), NOW).is_ok());
    assert!(v.verify_for(&token, None, NOW).is_ok());
    assert_eq!(
        reason(v.verify_for(&token, Some("bob"), NOW)),
        AuthReason::UserMismatch
    );
}

#[test]
fn room_claims_become_permissions() {
    let v = verifier();
    let mut c = claims("alice");
    c["rooms"] = json!({"join": ["order:7.*", "news"], "publish": ["chat.*"]});
    c["send"] = json!(true);
    let p = v.verify(&hs(&c), NOW).unwrap().permissions;
    assert_eq!(p.join.len(), 2);
    assert_eq!(p.publish[0].as_str(), "chat.*");
    assert!(p.send);
    c["rooms"] = json!({"join": ["bad pattern"]});
    assert_eq!(reason(v.verify(&hs(&c), NOW)), AuthReason::BadClaims);
    c["rooms"] = json!({"join": "news"});
    assert_eq!(reason(v.verify(&hs(&c), NOW)), AuthReason::BadClaims);
}

#[test]
fn malformed_tokens_are_refused() {
    let v = verifier();
    for bad in [
        "",
        "abc",
        "a.b",
        "a.b.c.d",
        "!!!.e30.x",
        "e30.e30.x",
        &"a".repeat(9000),
    ] {
        let r = reason(v.verify(bad, NOW));
        assert!(
            matches!(r, AuthReason::MalformedToken | AuthReason::BadAlgorithm),
            "{bad}: {r:?}"
        );
    }
    // A well-formed header with a garbage signature.
    let token = hs(&claims("alice"));
    let (rest, _) = token.rsplit_once('.').unwrap();
    assert!(v.verify(&format!("{rest}.%%%"), NOW).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_text_is_refused_without_panic(token in "\\PC{0,200}") {
        prop_assert!(verifier().verify(&token, NOW).is_err());
    }

    #[test]
    fn jwt_shaped_input_is_handled_without_panic(
        header in prop::collection::vec(any::<u8>(), 0..60),
        payload in prop::collection::vec(any::<u8>(), 0..120),
        sig in "[A-Za-z0-9_-]{0,90}",
        alg in prop_oneof![Just("HS256"), Just("RS256"), Just("ES256"), Just("none"), Just("")],
    ) {
        let v = verifier();
        let raw = format!("{}.{}.{sig}", URL_SAFE_NO_PAD.encode(&header), URL_SAFE_NO_PAD.encode(&payload));
        prop_assert!(v.verify(&raw, NOW).is_err());
        let with_alg = format!("{}.{}.{sig}", b64(&json!({"alg": alg})), URL_SAFE_NO_PAD.encode(&payload));
        prop_assert!(v.verify(&with_alg, NOW).is_err());
    }

    #[test]
    fn any_claims_under_a_valid_signature_never_panic(
        sub in proptest::option::of("\\PC{0,20}"),
        exp in proptest::option::of(any::<i64>()),
        nbf in proptest::option::of(any::<f64>()),
        join in prop::collection::vec("\\PC{0,12}", 0..4),
    ) {
        let c = json!({"sub": sub, "exp": exp, "nbf": nbf, "rooms": {"join": join}});
        let _ = verifier().verify(&hs(&c), NOW);
    }
}
