//! `ServerEnvelope::parse` on any bytes: no panic, and an envelope it
//! accepts encodes to text that parses back equal to it.
//!
//! One normalisation is allowed, because the encoder has one text per kind
//! of `msg` (docs/protocol.md): a room `msg` carries no offset, and a direct
//! `msg` always carries one. The parser accepts both fields or neither, so a
//! room `msg` comes back without its offset and a direct `msg` without an
//! offset comes back with offset 0. After that one round the encoding is a
//! fixed point.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shardcast::protocol::ServerEnvelope;

fn normalised(env: ServerEnvelope<'_>) -> ServerEnvelope<'_> {
    match env {
        ServerEnvelope::Msg {
            from,
            id,
            room,
            offset,
            data,
        } => {
            let offset = match room {
                Some(_) => None,
                None => Some(offset.unwrap_or(0)),
            };
            ServerEnvelope::Msg {
                from,
                id,
                room,
                offset,
                data,
            }
        }
        other => other,
    }
}

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
    assert_eq!(back, normalised(env));
    let mut out2 = Vec::new();
    back.encode(&mut out2);
    assert_eq!(out, out2, "encoding is not a fixed point");
});
