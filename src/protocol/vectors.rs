//! The golden vectors in `src/protocol/vectors/*.json`, checked against this
//! crate's codec. The same files are loaded by the client SDK's tests, so a
//! change of the wire format fails both until both agree.

use serde_json::Value;

use super::{ClientEnvelope, CloseCode, ErrorCode, ServerEnvelope};
use crate::{auth::AuthReason, token::ResumeToken};

fn load(text: &str) -> Value {
    serde_json::from_str(text).expect("vector file is JSON")
}

fn cases<'a>(doc: &'a Value, key: &str) -> &'a [Value] {
    doc[key].as_array().expect("an array of cases")
}

fn text(case: &Value) -> &str {
    case["text"].as_str().expect("text")
}

#[test]
fn client_envelopes_parse_to_their_fields_and_encode_to_their_text() {
    let doc = load(include_str!("vectors/client.json"));
    for case in cases(&doc, "valid") {
        let env =
            ClientEnvelope::parse(text(case)).unwrap_or_else(|e| panic!("{}: {e:?}", case["name"]));
        let mut out = Vec::new();
        env.encode(&mut out);
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            text(case),
            "{}",
            case["name"]
        );
        // The typed fields are the vector's fields.
        let back: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(back, case["envelope"], "{}", case["name"]);
    }
    for case in cases(&doc, "invalid") {
        let err = ClientEnvelope::parse(text(case)).expect_err(text(case));
        assert_eq!(err.code.as_str(), case["code"], "{}", case["name"]);
        assert_eq!(err.id.as_deref(), case["id"].as_str(), "{}", case["name"]);
    }
}

#[test]
fn server_envelopes_encode_to_their_text_and_parse_back() {
    let doc = load(include_str!("vectors/server.json"));
    for case in cases(&doc, "valid") {
        let env = ServerEnvelope::parse(text(case).as_bytes())
            .unwrap_or_else(|e| panic!("{}: {e:?}", case["name"]));
        let mut out = Vec::new();
        env.encode(&mut out);
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            text(case),
            "{}",
            case["name"]
        );
        let back: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(back, case["envelope"], "{}", case["name"]);
    }
    for case in cases(&doc, "invalid") {
        let err = ServerEnvelope::parse(text(case).as_bytes()).expect_err(text(case));
        assert_eq!(err.code.as_str(), case["code"], "{}", case["name"]);
    }
}

#[test]
fn code_tables_match_the_vectors() {
    let doc = load(include_str!("vectors/codes.json"));
    let errors: Vec<&str> = cases(&doc, "errors")
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    let ours: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
    assert_eq!(errors, ours);
    let close: Vec<(u64, &str)> = cases(&doc, "close")
        .iter()
        .map(|c| (c["code"].as_u64().unwrap(), c["reason"].as_str().unwrap()))
        .collect();
    let ours: Vec<(u64, &str)> = CloseCode::ALL
        .iter()
        .map(|c| (u64::from(c.code()), c.reason()))
        .collect();
    assert_eq!(close, ours);
    let auth: Vec<(&str, u64)> = cases(&doc, "auth")
        .iter()
        .map(|c| (c["error"].as_str().unwrap(), c["status"].as_u64().unwrap()))
        .collect();
    let ours: Vec<(&str, u64)> = AuthReason::ALL
        .iter()
        .map(|r| (r.as_str(), r.status()[..3].parse().unwrap()))
        .collect();
    assert_eq!(auth, ours);
}

#[test]
fn resume_tokens_sign_and_verify_as_the_vectors_say() {
    let doc = load(include_str!("vectors/token.json"));
    let secret = doc["secret"].as_str().unwrap().as_bytes();
    let ttl = doc["ttlSecs"].as_u64().unwrap();
    for case in cases(&doc, "valid") {
        let claims = ResumeToken {
            user_id: case["userId"].as_str().unwrap().to_owned(),
            offset: case["offset"].as_u64().unwrap(),
            issued_at: case["issuedAt"].as_u64().unwrap(),
        };
        let token = case["token"].as_str().unwrap();
        assert_eq!(claims.sign(secret), token);
        let now = case["now"].as_u64().unwrap();
        assert_eq!(
            ResumeToken::verify(token, secret, &claims.user_id, now, ttl),
            Ok(claims)
        );
    }
    for case in cases(&doc, "refused") {
        let err = ResumeToken::verify(
            case["token"].as_str().unwrap(),
            secret,
            case["userId"].as_str().unwrap(),
            case["now"].as_u64().unwrap(),
            ttl,
        )
        .expect_err(case["name"].as_str().unwrap());
        assert_eq!(err.code().as_str(), case["error"], "{}", case["name"]);
    }
}
