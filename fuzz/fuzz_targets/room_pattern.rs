//! `RoomPattern::parse` and `RoomName::parse` on any text: no panic; what
//! they accept is the input unchanged, within the length limit; every room
//! name is also a pattern, and an exact pattern matches exactly itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shardcast::protocol::{room::MAX_ROOM_LEN, RoomName, RoomPattern};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let pattern = RoomPattern::parse(&text);
    if let Ok(p) = &pattern {
        assert_eq!(p.as_str(), text);
        assert!(p.as_str().len() <= MAX_ROOM_LEN);
        if !p.is_wildcard() {
            assert!(p.matches(&text));
        }
    }
    if let Ok(name) = RoomName::parse(&text) {
        assert_eq!(name.as_str(), text);
        let p = pattern.expect("a room name is a valid pattern");
        assert!(!p.is_wildcard() && p.matches(name.as_str()));
    }
});
