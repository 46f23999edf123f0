//! Tests of `protocol::server`.

use super::*;

#[test]
fn encoded_envelopes_parse_back_to_what_was_encoded() {
    let data = RawValue::from_string(r#"{"k":[1]}"#.to_owned()).unwrap();
    let cases = [
        ServerEnvelope::Welcome {
            user_id: "u".into(),
            node: "n".into(),
            resume_token: "t".into(),
            offset: 3,
        },
        ServerEnvelope::Direct {
            from: "alice".into(),
            id: "id\"x".into(),
            offset: 7,
            data: &data,
        },
        ServerEnvelope::Room {
            room: "chat.a".into(),
            from: "alice".into(),
            id: "i".into(),
            data: &data,
        },
        ServerEnvelope::Ack { id: "m1".into() },
        ServerEnvelope::Error {
            code: ErrorCode::BadJson,
            id: Some("m".into()),
            message: "line 1\ncol 2".into(),
            retry_after_ms: None,
        },
        ServerEnvelope::Error {
            code: ErrorCode::Unavailable,
            id: None,
            message: "x".into(),
            retry_after_ms: None,
        },
        ServerEnvelope::Error {
            code: ErrorCode::RateLimited,
            id: Some("m2".into()),
            message: "slow".into(),
            retry_after_ms: Some(1200),
        },
        ServerEnvelope::Reconnect {
            resume_token: "tok".into(),
            retry_after_ms: 250,
            ws_url: None,
        },
        ServerEnvelope::Reconnect {
            resume_token: "tok".into(),
            retry_after_ms: 250,
            ws_url: Some("ws://b:8080/ws".into()),
        },
    ];
    for env in cases {
        let mut out = Vec::new();
        env.encode(&mut out);
        assert_eq!(ServerEnvelope::parse(&out).unwrap(), env);
    }
}

#[test]
fn direct_template_halves_join_around_the_offset() {
    let t = DirectTemplate::new("alice", "m1", "[1]");
    assert_eq!(
        t.with_offset(12),
        br#"{"type":"msg","from":"alice","id":"m1","offset":12,"data":[1]}"#
    );
}

#[test]
fn malformed_server_envelopes_are_refused() {
    for (text, code) in [
        (&b"nope"[..], ErrorCode::BadJson),
        (br#"{"type":"ack"}"#, ErrorCode::BadEnvelope),
        (br#"{"type":"shout"}"#, ErrorCode::UnknownType),
        (
            br#"{"type":"error","code":"zzz","message":"m"}"#,
            ErrorCode::BadEnvelope,
        ),
        (
            br#"{"type":"welcome","userId":"u"}"#,
            ErrorCode::BadEnvelope,
        ),
        (
            br#"{"type":"msg","from":"b","id":"m0"}"#,
            ErrorCode::BadEnvelope,
        ),
        (
            br#"{"type":"msg","room":"r","from":"a","id":"i","offset":5}"#,
            ErrorCode::BadEnvelope,
        ),
    ] {
        assert_eq!(ServerEnvelope::parse(text).unwrap_err().code, code);
    }
}
