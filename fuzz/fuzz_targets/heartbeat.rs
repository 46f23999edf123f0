//! `control::heartbeat::Heartbeat::parse` (the body of
//! `POST /api/v1/nodes/heartbeat`) on any bytes: no panic; an accepted
//! heartbeat passes its own checks and encodes to JSON that parses back
//! equal.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shardcast::control::heartbeat::Heartbeat;

fuzz_target!(|data: &[u8]| {
    if let Ok(hb) = Heartbeat::parse(data) {
        assert!(hb.check().is_ok());
        let json = serde_json::to_vec(&hb).expect("a heartbeat encodes");
        assert_eq!(Heartbeat::parse(&json).expect("it parses back"), hb);
    }
});
