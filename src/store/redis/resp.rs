//! The store's own commands in RESP, written straight into the pipeline's
//! output buffer: the keys are written in place (no `format!`) and nothing
//! is encoded twice. Byte-for-byte what `redis::Cmd` would write (a test
//! checks), only without building one per message.

use std::io::Write;

/// One argument of a command.
pub enum Arg<'a> {
    Bytes(&'a [u8]),
    Num(u64),
}

/// Writes `EVALSHA sha N sc:{user}:m [sc:{user}:b] args…` (`keys` is 1 or 2).
pub fn evalsha(out: &mut Vec<u8>, sha: &str, user: &str, keys: usize, args: &[Arg<'_>]) {
    let _ = write!(out, "*{}\r\n", 3 + keys + args.len());
    bulk(out, b"EVALSHA");
    bulk(out, sha.as_bytes());
    num(out, keys as u64);
    key(out, user, b"m");
    if keys == 2 {
        key(out, user, b"b");
    }
    for a in args {
        match a {
            Arg::Bytes(b) => bulk(out, b),
            Arg::Num(n) => num(out, *n),
        }
    }
}

/// Writes `HGET sc:{user}:m field`.
pub fn hget_meta(out: &mut Vec<u8>, user: &str, field: &[u8]) {
    out.extend_from_slice(b"*3\r\n");
    bulk(out, b"HGET");
    key(out, user, b"m");
    bulk(out, field);
}

fn bulk(out: &mut Vec<u8>, b: &[u8]) {
    let _ = write!(out, "${}\r\n", b.len());
    out.extend_from_slice(b);
    out.extend_from_slice(b"\r\n");
}

fn num(out: &mut Vec<u8>, n: u64) {
    let mut digits = [0u8; 20];
    let mut cursor = std::io::Cursor::new(&mut digits[..]);
    let _ = write!(cursor, "{n}");
    let len = cursor.position() as usize;
    bulk(out, &digits[..len]);
}

/// `sc:{user}:suffix` (see the key table in `super`).
fn key(out: &mut Vec<u8>, user: &str, suffix: &[u8]) {
    let _ = write!(out, "${}\r\n", 4 + user.len() + 2 + suffix.len());
    out.extend_from_slice(b"sc:{");
    out.extend_from_slice(user.as_bytes());
    out.extend_from_slice(b"}:");
    out.extend_from_slice(suffix);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_what_redis_cmd_writes() {
        let mut ours = Vec::new();
        evalsha(
            &mut ours,
            "abc123",
            "urn:u:7",
            2,
            &[
                Arg::Bytes(b"head"),
                Arg::Bytes(b""),
                Arg::Num(256),
                Arg::Num(3_600_000),
            ],
        );
        let theirs = redis::cmd("EVALSHA")
            .arg("abc123")
            .arg(2)
            .arg(super::super::meta_key("urn:u:7"))
            .arg(super::super::buffer_key("urn:u:7"))
            .arg(&b"head"[..])
            .arg(&b""[..])
            .arg(256)
            .arg(3_600_000u64)
            .get_packed_command();
        assert_eq!(ours, theirs);

        let mut ours = Vec::new();
        evalsha(&mut ours, "s", "bob", 1, &[Arg::Num(0)]);
        let theirs = redis::cmd("EVALSHA")
            .arg("s")
            .arg(1)
            .arg(super::super::meta_key("bob"))
            .arg(0)
            .get_packed_command();
        assert_eq!(ours, theirs);

        let mut ours = Vec::new();
        hget_meta(&mut ours, "bob", b"o");
        let theirs = redis::cmd("HGET")
            .arg(super::super::meta_key("bob"))
            .arg("o")
            .get_packed_command();
        assert_eq!(ours, theirs);
    }
}
