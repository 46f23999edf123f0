//! The upgrade-request reader on any bytes: `parse_head` never panics and,
//! for a complete head, reports a length inside the buffer; `target` decides
//! every complete head without panicking, with `/echo` on and off; the query
//! string parser reads any query. A `Messaging` target always names a valid
//! user and carries a 101 response.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shardcast::node::http::{parse_head, query_value, target, Gate, Head, Target};
use shardcast::protocol::valid_user_id;

fuzz_target!(|data: &[u8]| {
    let _ = query_value(&String::from_utf8_lossy(data), "userId");
    let Ok(Head::Complete { request, len }) = parse_head(data) else {
        return;
    };
    assert!(len <= data.len());
    if let Some(query) = request.uri().query() {
        let _ = query_value(query, "userId");
        let _ = query_value(query, "resume");
    }
    for echo in [false, true] {
        let gate = Gate {
            echo,
            ..Gate::default()
        };
        match target(&request, &gate, 1_800_000_000) {
            Ok(Target::Messaging { user, response, .. }) => {
                assert!(valid_user_id(&user), "{user:?}");
                assert!(response.starts_with(b"HTTP/1.1 101"));
            }
            Ok(Target::Echo { response }) => {
                assert!(echo);
                assert!(response.starts_with(b"HTTP/1.1 101"));
            }
            Ok(Target::Health) | Err(_) => {}
        }
    }
});
