//! The Redis pipeline of one core, sans-IO: commands are encoded into one
//! output buffer, replies are parsed from the bytes read and handed back to
//! their requests in order.
//!
//! Redis answers the commands of one connection in the order it received
//! them, so a FIFO of waiting requests is all the matching there is: the
//! n-th reply belongs to the n-th command written. A reply that is an error
//! (`-ERR …`) fails only its own request. The socket is somebody else's
//! ([`super::link`]); this type is pure and tested without one.

use std::{
    collections::VecDeque,
    io::{self, Read},
};

use redis::{Cmd, Value};

/// A reply matched to its request: the value, or the server's error text.
pub type Reply = Result<Value, String>;

/// See the module docs. `T` is what a request is known by (the waiter to
/// wake with its reply).
pub struct Pipeline<T> {
    /// Encoded commands not yet handed to the socket.
    out: Vec<u8>,
    /// Requests whose commands are in `out`, oldest first.
    queued: VecDeque<T>,
    /// Requests whose commands were written, oldest first.
    in_flight: VecDeque<T>,
    parser: redis::Parser,
    /// Bytes read and not yet consumed by the parser.
    inbox: Vec<u8>,
    max_pending: usize,
}

/// The pipeline holds `max_pending` requests already; the new one was not
/// queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full {
    pub pending: usize,
}

/// Feeds the parser what is in the inbox, then reports "would block" so the
/// parser keeps its partial state until more bytes come.
struct Inbox<'a>(&'a mut Vec<u8>);

impl Read for Inbox<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.0.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = buf.len().min(self.0.len());
        buf[..n].copy_from_slice(&self.0[..n]);
        self.0.drain(..n);
        Ok(n)
    }
}

impl<T> Pipeline<T> {
    /// An empty pipeline that refuses requests beyond `max_pending` waiting.
    pub fn new(max_pending: usize) -> Pipeline<T> {
        Pipeline {
            out: Vec::new(),
            queued: VecDeque::new(),
            in_flight: VecDeque::new(),
            parser: redis::Parser::new(),
            inbox: Vec::new(),
            max_pending,
        }
    }

    /// Requests waiting: queued plus in flight.
    pub fn pending(&self) -> usize {
        self.queued.len() + self.in_flight.len()
    }

    /// Commands encoded and not yet taken by [`Pipeline::take_output`].
    pub fn queued(&self) -> usize {
        self.queued.len()
    }

    /// The request that has waited longest (in flight, else queued).
    pub fn oldest(&self) -> Option<&T> {
        self.in_flight.front().or_else(|| self.queued.front())
    }

    /// Encodes `cmd` for the next flush; `token` gets its reply.
    pub fn push(&mut self, cmd: &Cmd, token: T) -> Result<(), (Full, T)> {
        self.push_encoded(|out| cmd.write_packed_command(out), token)
    }

    /// Queues the one command `encode` writes (RESP) for the next flush;
    /// `token` gets its reply.
    pub fn push_encoded(
        &mut self,
        encode: impl FnOnce(&mut Vec<u8>),
        token: T,
    ) -> Result<(), (Full, T)> {
        if self.pending() >= self.max_pending {
            let pending = self.pending();
            return Err((Full { pending }, token));
        }
        encode(&mut self.out);
        self.queued.push_back(token);
        Ok(())
    }

    /// The bytes of every queued command, to be written as one batch; their
    /// requests now wait for replies. Returns how many commands it holds.
    pub fn take_output(&mut self, into: &mut Vec<u8>) -> usize {
        let n = self.queued.len();
        into.append(&mut self.out);
        self.in_flight.append(&mut self.queued);
        n
    }

    /// Takes `bytes` read from the socket and returns every request whose
    /// reply is now complete, in order. `Err` means the stream is broken (a
    /// reply that is not RESP, or one with no request): the connection must
    /// be dropped and every request failed.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Vec<(T, Reply)>, String> {
        self.inbox.extend_from_slice(bytes);
        let mut done = Vec::new();
        loop {
            match self.parser.parse_value(Inbox(&mut self.inbox)) {
                Ok(value) => {
                    let token = self
                        .in_flight
                        .pop_front()
                        .ok_or_else(|| "a reply with no request".to_owned())?;
                    let reply = match value {
                        Value::ServerError(e) => Err(e.to_string()),
                        v => Ok(v),
                    };
                    done.push((token, reply));
                }
                Err(e) if e.is_io_error() => return Ok(done),
                Err(e) => return Err(format!("unparsable reply: {e}")),
            }
        }
    }

    /// Forgets the connection's state: returns every waiting request (to be
    /// failed) and starts over with a fresh parser.
    pub fn reset(&mut self) -> Vec<T> {
        self.out.clear();
        self.inbox.clear();
        self.parser = redis::Parser::new();
        let mut all: Vec<T> = self.in_flight.drain(..).collect();
        all.extend(self.queued.drain(..));
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(key: &str) -> Cmd {
        let mut c = redis::cmd("GET");
        c.arg(key);
        c
    }

    #[test]
    fn commands_are_batched_into_one_write() {
        let mut p = Pipeline::new(10);
        p.push(&get("a"), 1).unwrap();
        p.push(&get("b"), 2).unwrap();
        let mut out = Vec::new();
        assert_eq!(p.take_output(&mut out), 2);
        assert_eq!(
            out,
            b"*2\r\n$3\r\nGET\r\n$1\r\na\r\n*2\r\n$3\r\nGET\r\n$1\r\nb\r\n"
        );
        assert_eq!((p.queued(), p.pending()), (0, 2));
    }

    #[test]
    fn replies_are_matched_in_order_across_partial_reads() {
        let mut p = Pipeline::new(10);
        for i in 1..=3 {
            p.push(&get("k"), i).unwrap();
        }
        p.take_output(&mut Vec::new());
        assert_eq!(p.feed(b"$1\r\nx\r\n:4").unwrap().len(), 1);
        let rest = p.feed(b"2\r\n*2\r\n:1\r\n:2\r\n").unwrap();
        assert_eq!(
            rest,
            [
                (2, Ok(Value::Int(42))),
                (3, Ok(Value::Array(vec![Value::Int(1), Value::Int(2)])))
            ]
        );
        assert_eq!(p.pending(), 0);
    }

    #[test]
    fn an_error_reply_fails_only_its_own_request() {
        let mut p = Pipeline::new(10);
        for i in 1..=3 {
            p.push(&get("k"), i).unwrap();
        }
        p.take_output(&mut Vec::new());
        let got = p.feed(b"+OK\r\n-ERR wrong kind\r\n:7\r\n").unwrap();
        assert_eq!(got[0], (1, Ok(Value::Okay)));
        assert!(
            matches!(&got[1], (2, Err(e)) if e.contains("wrong kind")),
            "{got:?}"
        );
        assert_eq!(got[2], (3, Ok(Value::Int(7))));
    }

    #[test]
    fn a_full_pipeline_refuses_and_returns_the_token() {
        let mut p = Pipeline::new(2);
        p.push(&get("a"), 1).unwrap();
        p.push(&get("b"), 2).unwrap();
        assert_eq!(p.push(&get("c"), 3), Err((Full { pending: 2 }, 3)));
    }

    #[test]
    fn garbage_or_unrequested_replies_break_the_stream() {
        let mut p: Pipeline<u8> = Pipeline::new(2);
        assert!(p.feed(b"+OK\r\n").is_err(), "nobody asked");
        let mut p = Pipeline::new(2);
        p.push(&get("a"), 1).unwrap();
        p.take_output(&mut Vec::new());
        assert!(p.feed(b"?what\r\n").is_err());
    }

    #[test]
    fn reset_returns_every_waiting_request() {
        let mut p = Pipeline::new(10);
        p.push(&get("a"), 1).unwrap();
        p.take_output(&mut Vec::new());
        p.push(&get("b"), 2).unwrap();
        p.feed(b"$5\r\npart").unwrap();
        assert_eq!(p.reset(), [1, 2]);
        assert_eq!(p.pending(), 0);
        // A fresh parser: the half reply before the reset is gone.
        p.push(&get("c"), 3).unwrap();
        p.take_output(&mut Vec::new());
        assert_eq!(p.feed(b":1\r\n").unwrap(), [(3, Ok(Value::Int(1)))]);
    }
}
