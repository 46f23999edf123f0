//! The server API's request parsing on any bytes: `parse_head` never panics
//! and reports a length inside the buffer; every check of a complete head
//! decides without panicking; the bytes after the head, as a publish or a
//! send body, parse or are refused, and an accepted one names a valid room
//! or user, an id of 1..=128 bytes, a valid sender and `data` that is JSON by the grammar.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shardcast::node::api::call::{
    authorize, body_len, endpoint, key_digest, parse_head, parse_message, parse_online, Endpoint,
    API_SENDER,
};
use shardcast::protocol::{valid_user_id, RoomName};

fuzz_target!(|data: &[u8]| {
    let body = match parse_head(data) {
        Some((head, len)) => {
            assert!(len <= data.len());
            let _ = endpoint(&head);
            let _ = authorize(&head, &key_digest(b"fuzz-api-key-0123456789"));
            let _ = body_len(&head, 1 << 20);
            if let Ok(user) = parse_online(&head) {
                assert!(valid_user_id(&user), "{user:?}");
            }
            &data[len..]
        }
        None => data,
    };
    for e in [Endpoint::Publish, Endpoint::Send] {
        let Ok(m) = parse_message(e, body) else {
            continue;
        };
        match e {
            Endpoint::Publish => assert!(RoomName::parse(&m.target).is_ok()),
            _ => assert!(valid_user_id(&m.target)),
        }
        assert!((1..=128).contains(&m.id.len()));
        assert!(&*m.from == API_SENDER || valid_user_id(&m.from));
        // JSON by the grammar (a number past f64's range is still JSON).
        assert!(serde_json::from_str::<&serde_json::value::RawValue>(m.data).is_ok());
    }
});
