//! Tests of `api::call`.

use super::*;

fn head(text: &str) -> ApiHead {
    let (head, len) = parse_head(text.as_bytes()).expect("an API head");
    assert_eq!(len, text.find("\r\n\r\n").unwrap() + 4);
    head
}

const KEY: &[u8] = b"api-key-0123456789abcdef";

#[test]
fn only_complete_heads_under_api_belong_to_the_api() {
    let h = head(
        "POST /api/v1/send?x=1 HTTP/1.1\r\nHost: n\r\nAuthorization: Bearer k\r\n\
         Content-Length: 12\r\nExpect: 100-continue\r\n\r\n{\"to\":",
    );
    assert_eq!(h.method, "POST");
    assert_eq!(h.path, "/api/v1/send");
    assert_eq!(h.query.as_deref(), Some("x=1"));
    assert_eq!(h.authorization.as_deref(), Some("Bearer k"));
    assert_eq!(h.content_length, Some(Ok(12)));
    assert!(h.expect_continue && !h.transfer_encoding);
    for not_api in [
        "POST /api/v1/send HTTP/1.1\r\nHost: n\r\n", // partial
        "GET /ws?userId=a HTTP/1.1\r\n\r\n",
        "POST /ws HTTP/1.1\r\n\r\n", // stays the upgrade parser's 400
        "garbage\r\n\r\n",
    ] {
        assert!(parse_head(not_api.as_bytes()).is_none(), "{not_api:?}");
    }
}

#[test]
fn endpoints_and_methods() {
    let e = |m: &str, p: &str| endpoint(&head(&format!("{m} {p} HTTP/1.1\r\n\r\n")));
    assert_eq!(e("POST", "/api/v1/publish"), Ok(Endpoint::Publish));
    assert_eq!(e("POST", "/api/v1/send"), Ok(Endpoint::Send));
    assert_eq!(e("GET", "/api/v1/online?userId=a"), Ok(Endpoint::Online));
    assert_eq!(
        e("GET", "/api/v1/send").unwrap_err().kind,
        ApiErrorKind::MethodNotAllowed
    );
    assert_eq!(
        e("POST", "/api/v2/send").unwrap_err().kind,
        ApiErrorKind::NotFound
    );
}

#[test]
fn the_key_is_a_bearer_token_checked_whole() {
    let digest = key_digest(KEY);
    let with = |auth: &str| {
        authorize(
            &head(&format!(
                "GET /api/v1/online HTTP/1.1\r\nAuthorization: {auth}\r\n\r\n"
            )),
            &digest,
        )
    };
    assert!(with("Bearer api-key-0123456789abcdef").is_ok());
    assert!(with("bearer api-key-0123456789abcdef").is_ok());
    for wrong in [
        "Bearer api-key-0123456789abcde",
        "Bearer api-key-0123456789abcdefg",
        "Basic api-key-0123456789abcdef",
        "Bearer ",
    ] {
        assert_eq!(
            with(wrong).unwrap_err().kind,
            ApiErrorKind::Unauthorized,
            "{wrong}"
        );
    }
    let none = authorize(&head("GET /api/v1/online HTTP/1.1\r\n\r\n"), &digest);
    assert_eq!(none.unwrap_err().kind, ApiErrorKind::Unauthorized);
}

#[test]
fn bodies_need_a_length_within_the_limit() {
    let len = |headers: &str| {
        body_len(
            &head(&format!("POST /api/v1/send HTTP/1.1\r\n{headers}\r\n")),
            100,
        )
    };
    assert_eq!(len("Content-Length: 100\r\n"), Ok(100));
    assert_eq!(
        len("Content-Length: 101\r\n").unwrap_err().kind,
        ApiErrorKind::PayloadTooLarge
    );
    assert_eq!(len("").unwrap_err().kind, ApiErrorKind::LengthRequired);
    assert_eq!(
        len("Content-Length: x\r\n").unwrap_err().kind,
        ApiErrorKind::LengthRequired
    );
    assert_eq!(
        len("Transfer-Encoding: chunked\r\n").unwrap_err().kind,
        ApiErrorKind::LengthRequired
    );
}

#[test]
fn messages_parse_with_data_verbatim_and_a_default_sender() {
    let m = parse_message(
        Endpoint::Send,
        br#"{"to":"bob","id":"m1","data":{"a": [1, 2]}}"#,
    )
    .unwrap();
    assert_eq!(
        (&*m.target, &*m.from, &*m.id, m.data),
        ("bob", API_SENDER, "m1", r#"{"a": [1, 2]}"#)
    );
    let m = parse_message(
        Endpoint::Publish,
        br#"{"room":"order:7.status","id":"e","from":"svc"}"#,
    )
    .unwrap();
    assert_eq!(
        (&*m.target, &*m.from, m.data),
        ("order:7.status", "svc", "null")
    );
}

#[test]
fn bad_bodies_are_named() {
    let kind = |e, body: &str| parse_message(e, body.as_bytes()).unwrap_err().kind;
    use ApiErrorKind::*;
    use Endpoint::*;
    assert_eq!(kind(Send, "{nope"), BadJson);
    assert_eq!(kind(Send, ""), BadJson);
    assert_eq!(kind(Send, "[1]"), BadRequest);
    assert_eq!(kind(Send, r#"{"id":"m"}"#), BadRequest, "no `to`");
    assert_eq!(kind(Send, r#"{"to":"bob"}"#), BadRequest, "no `id`");
    assert_eq!(kind(Send, r#"{"to":"bob","id":""}"#), BadRequest);
    assert_eq!(kind(Send, r#"{"to":7,"id":"m"}"#), BadRequest);
    assert_eq!(kind(Send, r#"{"to":"b b","id":"m"}"#), BadUser);
    assert_eq!(
        kind(Send, r##"{"to":"bob","id":"m","from":"#x"}"##),
        BadUser
    );
    assert_eq!(kind(Publish, r#"{"room":"chat.*","id":"m"}"#), BadRoom);
    assert_eq!(
        kind(Publish, r#"{"to":"bob","id":"m"}"#),
        BadRequest,
        "no `room`"
    );
}

#[test]
fn online_needs_a_valid_user_id() {
    let user = |q: &str| parse_online(&head(&format!("GET /api/v1/online{q} HTTP/1.1\r\n\r\n")));
    assert_eq!(user("?userId=a%40b.c"), Ok("a@b.c".into()));
    assert_eq!(user("").unwrap_err().kind, ApiErrorKind::BadRequest);
    assert_eq!(
        user("?userId=a%20b").unwrap_err().kind,
        ApiErrorKind::BadUser
    );
}

#[test]
fn errors_answer_with_their_status_and_json() {
    let r = ApiError::new(ApiErrorKind::Unauthorized, "wrong API key").response();
    let text = String::from_utf8(r).unwrap();
    assert!(text.starts_with("HTTP/1.1 401 Unauthorized\r\n"), "{text}");
    assert!(text.contains("WWW-Authenticate: Bearer\r\n"));
    let body: serde_json::Value =
        serde_json::from_str(text.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"error":"unauthorized","message":"wrong API key"})
    );
}

mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn any_bytes_parse_or_are_refused_without_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut buf = b"POST /api/v1/send HTTP/1.1\r\n".to_vec();
            buf.extend_from_slice(&bytes);
            if let Some((head, _)) = parse_head(&buf) {
                let _ = endpoint(&head);
                let _ = body_len(&head, 1 << 20);
                let _ = parse_online(&head);
                let _ = authorize(&head, &key_digest(KEY));
            }
            let _ = parse_head(&bytes);
            let _ = parse_message(Endpoint::Send, &bytes);
            let _ = parse_message(Endpoint::Publish, &bytes);
        }

        #[test]
        fn body_shaped_json_parses_or_is_refused_without_panic(
            to in "\\PC{0,20}", id in "\\PC{0,20}", room in "\\PC{0,20}"
        ) {
            let body = serde_json::json!({"to": to, "id": id, "room": room, "data": [to]}).to_string();
            for e in [Endpoint::Send, Endpoint::Publish] {
                if let Ok(m) = parse_message(e, body.as_bytes()) {
                    prop_assert_eq!(&*m.id, id.as_str());
                }
            }
        }
    }
}

#[test]
fn online_for_another_nodes_user_redirects_to_its_api() {
    let r = String::from_utf8(redirect("n2", "ws://10.0.0.2:8080/ws", "alice")).unwrap();
    assert!(r.starts_with("HTTP/1.1 307"), "{r}");
    assert!(
        r.contains("Location: http://10.0.0.2:8080/api/v1/online?userId=alice\r\n"),
        "{r}"
    );
    assert!(r.contains(r#""node":"n2""#));
    let tls = String::from_utf8(redirect("n3", "wss://b.example/ws", "bob")).unwrap();
    assert!(tls.contains("Location: https://b.example/api/v1/online?userId=bob\r\n"));
    let none = String::from_utf8(redirect("n4", "", "bob")).unwrap();
    assert!(none.starts_with("HTTP/1.1 503"), "{none}");
}
