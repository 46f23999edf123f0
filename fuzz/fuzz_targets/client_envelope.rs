//! `ClientEnvelope::parse` on any text frame: it never panics, and an
//! envelope it accepts encodes to text that it accepts again and that
//! encodes to the same bytes (the encoding is a fixed point).
#![no_main]

use libfuzzer_sys::fuzz_target;
use shardcast::protocol::ClientEnvelope;

fuzz_target!(|data: &[u8]| {
    // Text frames are valid UTF-8 (the frame reader checks before the parser sees
    // them), so other bytes are not an input the parser can get.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(env) = ClientEnvelope::parse(text) else {
        return;
    };
    let mut out = Vec::new();
    env.encode(&mut out);
    let again = std::str::from_utf8(&out).expect("an encoded envelope is UTF-8");
    let back = ClientEnvelope::parse(again)
        .unwrap_or_else(|e| panic!("encoded {again:?} is refused: {e:?}"));
    let mut out2 = Vec::new();
    back.encode(&mut out2);
    assert_eq!(out, out2, "encoding is not a fixed point");
});
