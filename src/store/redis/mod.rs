//! The Redis store: offsets, buffers and sessions in Redis, so that a user
//! resumes on any node and a killed node loses nothing that was acked.
//!
//! Each core owns one [`Link`] (one connection, pipelined; see `link.rs`) and
//! issues only its own users' commands on it, so per-user order is the
//! order of the core's pipeline. The `redis` crate is used for the protocol
//! only — command encoding and reply parsing — while the socket stays a
//! glommio `TcpStream` driven by the core's own task: glommio is not one of
//! the crate's async runtimes, and a second runtime (or a thread) per core
//! would break thread-per-core.
//!
//! Keys of user `U` (both carry the hash tag `{U}`, so they live in one slot
//! of a Redis Cluster and the scripts may touch both):
//!
//! | key | type | holds | TTL |
//! |---|---|---|---|
//! | `sc:{U}:m` | hash | `o` last offset, `d` delivered mark, `node`/`core`/`since` the session | `--buffer-ttl-secs` after the last append, delivered mark, session open or touch |
//! | `sc:{U}:b` | list | the last W envelopes, oldest first, offsets `o-len+1 ..= o` | same |
//!
//! Every write is one Lua script, atomic in Redis: an append increments `o`
//! and pushes the envelope (`head .. o .. tail`, so its text carries its own
//! offset) in the same step, so a crash can leave neither a gap nor a reused
//! offset; the list's offsets are implied by `o` and its length.

mod link;
mod pipeline;
mod resp;

use std::{net::ToSocketAddrs, rc::Rc, sync::Arc, time::Duration};

use bytes::Bytes;
use redis::{IntoConnectionInfo, Value};
use resp::Arg;
use sha1::{Digest, Sha1};

use crate::{config::Config, metrics::Metrics, protocol::DirectTemplate};

use super::{Appended, Session, SessionAt, Store, StoreError, StoredMessage};

pub use link::{Link, LinkSettings};

/// `KEYS[1]` meta hash, `KEYS[2]` buffer list; `ARGV` head, tail, W, TTL ms,
/// the appending node. Returns the new offset alone when the user has no
/// session, `{offset, 1}` when its session is on the appending node, and
/// `{offset, node}` when it is on another node (which the relay then tells).
const APPEND: &str = r#"
local o = redis.call('HINCRBY', KEYS[1], 'o', 1)
redis.call('RPUSH', KEYS[2], ARGV[1] .. o .. ARGV[2])
redis.call('LTRIM', KEYS[2], -tonumber(ARGV[3]), -1)
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
local node = redis.call('HGET', KEYS[1], 'node')
if not node then return o end
if node == ARGV[5] then return {o, 1} end
return {o, node}
"#;

/// `KEYS[1]` meta, `KEYS[2]` buffer; `ARGV[1]` after. Returns the offset of
/// the first envelope returned, then the envelopes with offsets above
/// `after`, oldest first.
const READ_AFTER: &str = r#"
local o = tonumber(redis.call('HGET', KEYS[1], 'o') or '0')
local after = tonumber(ARGV[1])
if after >= o then return {o + 1} end
local n = redis.call('LLEN', KEYS[2])
local first = o - n + 1
local start = after + 1 - first
if start < 0 then start = 0 end
local items = redis.call('LRANGE', KEYS[2], start, -1)
table.insert(items, 1, first + start)
return items
"#;

/// `KEYS[1]` meta; `ARGV` offset, TTL ms. Moves `d` forward, never past `o`;
/// creates nothing for a user without messages.
const SET_DELIVERED: &str = r#"
local o = tonumber(redis.call('HGET', KEYS[1], 'o') or '0')
local d = tonumber(redis.call('HGET', KEYS[1], 'd') or '0')
local x = math.min(tonumber(ARGV[1]), o)
if x > d then redis.call('HSET', KEYS[1], 'd', x) end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return d
"#;

/// `KEYS[1]` meta, `KEYS[2]` buffer; `ARGV` node, core, since, TTL ms.
const OPEN_SESSION: &str = r#"
redis.call('HSET', KEYS[1], 'node', ARGV[1], 'core', ARGV[2], 'since', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
return 1
"#;

/// `KEYS[1]` meta; `ARGV` node, since. Clears the session only if it is
/// still this one (a newer one elsewhere is left alone).
const CLOSE_SESSION: &str = r#"
if redis.call('HGET', KEYS[1], 'node') == ARGV[1]
  and redis.call('HGET', KEYS[1], 'since') == ARGV[2] then
  redis.call('HDEL', KEYS[1], 'node', 'core', 'since')
end
return 1
"#;

/// `KEYS[1]` meta, `KEYS[2]` buffer; `ARGV[1]` TTL ms.
const TOUCH: &str = r#"
redis.call('PEXPIRE', KEYS[1], ARGV[1])
redis.call('PEXPIRE', KEYS[2], ARGV[1])
return 1
"#;

const SCRIPTS: [&str; 6] = [
    APPEND,
    READ_AFTER,
    SET_DELIVERED,
    OPEN_SESSION,
    CLOSE_SESSION,
    TOUCH,
];

fn sha1_hex(text: &str) -> String {
    Sha1::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The key of `user`'s meta hash.
pub fn meta_key(user: &str) -> String {
    format!("sc:{{{user}}}:m")
}

/// The key of `user`'s buffer list.
pub fn buffer_key(user: &str) -> String {
    format!("sc:{{{user}}}:b")
}

/// Where Redis is and how the links talk to it, from the node's config.
pub fn link_settings(config: &Config, url: &str) -> Result<LinkSettings, String> {
    let info = url
        .into_connection_info()
        .map_err(|e| format!("invalid redis URL {url:?}: {e}"))?;
    let redis::ConnectionAddr::Tcp(host, port) = info.addr() else {
        return Err(format!(
            "redis URL {url:?}: only redis://HOST:PORT/DB is supported"
        ));
    };
    let addr = (host.as_str(), *port)
        .to_socket_addrs()
        .map_err(|e| format!("redis host {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("redis host {host}: no address"))?;
    let settings = info.redis_settings();
    Ok(LinkSettings {
        addr,
        db: settings.db(),
        username: settings.username().map(str::to_owned),
        password: settings.password().map(str::to_owned),
        scripts: SCRIPTS.iter().map(|s| s.to_string()).collect(),
        flush: Duration::from_micros(config.redis_flush_us),
        batch: config.redis_batch.max(1),
        max_pending: config.redis_max_pending.max(1),
        timeout: Duration::from_millis(config.redis_timeout_ms.max(1)),
        breaker_failures: config.redis_breaker_failures.max(1),
        breaker_open: Duration::from_millis(config.redis_breaker_open_ms),
    })
}

/// Waits up to `wait` for Redis at `settings.addr` to answer PING (blocking;
/// start-up only). `Err` says why it did not.
pub fn wait_until_reachable(settings: &LinkSettings, wait: Duration) -> Result<(), String> {
    use std::io::{Read, Write};
    let deadline = std::time::Instant::now() + wait;
    loop {
        let attempt = (|| -> Result<(), String> {
            let mut s = std::net::TcpStream::connect_timeout(&settings.addr, settings.timeout)
                .map_err(|e| e.to_string())?;
            s.set_read_timeout(Some(settings.timeout))
                .map_err(|e| e.to_string())?;
            let mut hello = Vec::new();
            if let Some(password) = &settings.password {
                let mut auth = redis::cmd("AUTH");
                if let Some(user) = &settings.username {
                    auth.arg(user);
                }
                auth.arg(password).write_packed_command(&mut hello);
            }
            redis::cmd("PING").write_packed_command(&mut hello);
            s.write_all(&hello).map_err(|e| e.to_string())?;
            let mut buf = [0u8; 512];
            let n = s.read(&mut buf).map_err(|e| e.to_string())?;
            match &buf[..n] {
                b if b.starts_with(b"+OK\r\n+PONG") || b.starts_with(b"+PONG") => Ok(()),
                [] => Err("closed the connection".into()),
                b => Err(String::from_utf8_lossy(b).trim().to_owned()),
            }
        })();
        match attempt {
            Ok(()) => return Ok(()),
            Err(e) if std::time::Instant::now() >= deadline => {
                return Err(format!("redis at {} is not reachable: {e}", settings.addr))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// The Redis store of one core. See the module docs.
pub struct RedisStore {
    link: Rc<Link>,
    shas: [String; 6],
    capacity: usize,
    ttl_ms: u64,
    /// This node's id: an append names the session's node only when it is
    /// another one.
    node_id: Box<str>,
}

impl RedisStore {
    /// The store of core `core`; spawns its link task on the current
    /// executor.
    pub fn start(
        settings: LinkSettings,
        config: &Config,
        metrics: Arc<Metrics>,
        core: usize,
    ) -> RedisStore {
        let link = Rc::new(Link::new(settings, metrics, core));
        glommio::spawn_local(link.clone().run()).detach();
        RedisStore {
            link,
            shas: SCRIPTS.map(sha1_hex),
            capacity: config.buffer_messages.max(1),
            ttl_ms: config.buffer_ttl_secs.saturating_mul(1000).max(1),
            node_id: config.node_id.as_str().into(),
        }
    }

    /// True while the link serves requests.
    pub fn is_up(&self) -> bool {
        self.link.is_up()
    }

    /// Waits until the link's first connection attempt has finished.
    pub async fn ready(&self) {
        self.link.first_attempt().await
    }

    /// The link's round trips (µs).
    pub fn round_trips(&self) -> std::cell::Ref<'_, hdrhistogram::Histogram<u64>> {
        self.link.round_trips()
    }

    /// Runs script `which` for `user` (`keys`: the meta hash, and the
    /// buffer list when 2) with `args`.
    async fn script(
        &self,
        which: usize,
        user: &str,
        keys: usize,
        args: &[Arg<'_>],
    ) -> Result<Value, StoreError> {
        let sha = &self.shas[which];
        self.link
            .call_encoded(|out| resp::evalsha(out, sha, user, keys, args))
            .await
    }

    async fn hget(&self, user: &str, field: &[u8]) -> Result<Value, StoreError> {
        self.link
            .call_encoded(|out| resp::hget_meta(out, user, field))
            .await
    }
}

fn reply_error(what: &str, v: &Value) -> StoreError {
    StoreError::Reply(format!("{what}: unexpected reply {v:?}"))
}

fn as_u64(v: &Value) -> Option<u64> {
    match v {
        Value::Int(n) => u64::try_from(*n).ok(),
        Value::BulkString(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        Value::SimpleString(s) => s.parse().ok(),
        Value::Nil => Some(0),
        _ => None,
    }
}

impl Store for RedisStore {
    async fn append(&self, user: &str, message: &DirectTemplate) -> Result<Appended, StoreError> {
        let args = [
            Arg::Bytes(&message.head),
            Arg::Bytes(&message.tail),
            Arg::Num(self.capacity as u64),
            Arg::Num(self.ttl_ms),
            Arg::Bytes(self.node_id.as_bytes()),
        ];
        let v = self.script(0, user, 2, &args).await?;
        let (offset, session) = match &v {
            Value::Array(pair) => match &pair[..] {
                [o, Value::BulkString(node)] => (
                    as_u64(o),
                    SessionAt::Node(String::from_utf8_lossy(node).into_owned().into_boxed_str()),
                ),
                [o, Value::Int(1)] => (as_u64(o), SessionAt::Here),
                _ => (None, SessionAt::Unknown),
            },
            single => (as_u64(single), SessionAt::None),
        };
        let offset = offset.ok_or_else(|| reply_error("append", &v))?;
        Ok(Appended {
            message: StoredMessage {
                offset,
                envelope: Bytes::from(message.with_offset(offset)),
            },
            session,
        })
    }

    async fn read_after(&self, user: &str, after: u64) -> Result<Vec<StoredMessage>, StoreError> {
        let v = self.script(1, user, 2, &[Arg::Num(after)]).await?;
        let Value::Array(items) = &v else {
            return Err(reply_error("read", &v));
        };
        let first = items
            .first()
            .and_then(as_u64)
            .ok_or_else(|| reply_error("read", &v))?;
        items[1..]
            .iter()
            .zip(first..)
            .map(|(item, offset)| match item {
                Value::BulkString(b) => Ok(StoredMessage {
                    offset,
                    envelope: Bytes::copy_from_slice(b),
                }),
                other => Err(reply_error("read", other)),
            })
            .collect()
    }

    async fn last_offset(&self, user: &str) -> Result<u64, StoreError> {
        let v = self.hget(user, b"o").await?;
        as_u64(&v).ok_or_else(|| reply_error("last offset", &v))
    }

    async fn delivered(&self, user: &str) -> Result<u64, StoreError> {
        let v = self.hget(user, b"d").await?;
        as_u64(&v).ok_or_else(|| reply_error("delivered", &v))
    }

    async fn set_delivered(&self, user: &str, offset: u64) -> Result<(), StoreError> {
        let args = [Arg::Num(offset), Arg::Num(self.ttl_ms)];
        self.script(2, user, 1, &args).await.map(drop)
    }

    async fn open_session(&self, user: &str, session: &Session) -> Result<(), StoreError> {
        let args = [
            Arg::Bytes(session.node.as_bytes()),
            Arg::Num(session.core as u64),
            Arg::Num(session.since_ms),
            Arg::Num(self.ttl_ms),
        ];
        self.script(3, user, 2, &args).await.map(drop)
    }

    async fn close_session(&self, user: &str, session: &Session) -> Result<(), StoreError> {
        let args = [
            Arg::Bytes(session.node.as_bytes()),
            Arg::Num(session.since_ms),
        ];
        self.script(4, user, 1, &args).await.map(drop)
    }

    async fn touch(&self, user: &str) -> Result<(), StoreError> {
        self.script(5, user, 2, &[Arg::Num(self.ttl_ms)])
            .await
            .map(drop)
    }

    /// Redis expires keys by their TTL.
    fn expire(&self, _now: std::time::Instant) -> usize {
        0
    }
}
