//! `ServerEnvelope::parse` on any bytes: no panic, and an envelope it
//! accepts encodes to text that parses back equal to it.
//! (A direct `msg` must carry an offset and a room `msg` must not: the
//! typed `Direct`/`Room` variants have no room for anything else.)
#![no_main]

use libfuzzer_sys::fuzz_target;
use shardcast::protocol::ServerEnvelope;

fuzz_target!(|data: &[u8]| {
    let Ok(env) = ServerEnvelope::parse(data) else {
        return;
    };
    let mut out = Vec::new();
    env.encode(&mut out);
    let back = ServerEnvelope::parse(&out).unwrap_or_else(|e| {
        panic!(
            "encoded {:?} is refused: {e:?}",
            String::from_utf8_lossy(&out)
        )
    });
    assert_eq!(back, env);
    let mut out2 = Vec::new();
    back.encode(&mut out2);
    assert_eq!(out, out2, "encoding is not a fixed point");
});
