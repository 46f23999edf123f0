//! Token buckets: the per-user rate limits of each message kind, and the
//! per-core handshake cap.
//!
//! A bucket holds at most `burst` tokens and refills at `tokens` per
//! `per_ms` milliseconds (so `100` per minute is exact, not rounded to a
//! whole rate per second). Time is passed in, so the bucket is pure and
//! testable.
//!
//! A **kind** is a named limit ([`RateKinds`]): `send` takes from one kind,
//! `join`/`leave`/`refresh` from one, and a `publish` from the kind of the
//! first rule whose room pattern matches its room (else a default kind).
//! The built-in kinds `messages` and `joins` come from the
//! `--rate-messages-*` and `--rate-joins-*` flags; more are declared in the
//! TOML file's `[rate-limits]` table (see docs/operations.md).
//!
//! Per-user buckets ([`Buckets`]) are made lazily, the first time the user
//! spends a kind: an idle user holds none.

use std::{
    cell::Cell,
    collections::BTreeMap,
    time::{Duration, Instant},
};

use serde::Deserialize;
use thiserror::Error;

use crate::protocol::RoomPattern;

/// See the module docs. Kept as one instant (the generic cell rate
/// algorithm's "theoretical arrival time"): exact for any rate, 16 bytes.
pub struct TokenBucket {
    /// When the bucket would be full again if nothing more were taken;
    /// a take is allowed while it is at most `burst - 1` intervals ahead.
    tat: Cell<Instant>,
}

/// The shape of a bucket: shared by every bucket of one kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// Tokens added every `per_ms` milliseconds.
    pub tokens: u32,
    /// The refill period, in milliseconds.
    pub per_ms: u32,
    /// Most tokens held.
    pub burst: u32,
}

impl Limit {
    /// `rate` tokens per second, bursts of `burst`.
    pub fn per_sec(rate: u32, burst: u32) -> Limit {
        Limit {
            tokens: rate,
            per_ms: 1000,
            burst,
        }
    }

    /// The time one token takes to come back.
    fn interval(&self) -> Duration {
        let ns = u64::from(self.per_ms.max(1)) * 1_000_000 / u64::from(self.tokens.max(1));
        Duration::from_nanos(ns)
    }
}

impl TokenBucket {
    /// A full bucket for `limit`, as of `now`.
    pub fn full(now: Instant) -> TokenBucket {
        TokenBucket {
            tat: Cell::new(now),
        }
    }

    /// Takes one token if there is one; `Err` is how many milliseconds
    /// until there is (at least 1).
    pub fn take(&self, limit: Limit, now: Instant) -> Result<(), u64> {
        let interval = limit.interval();
        let tolerance = interval * limit.burst.max(1).saturating_sub(1);
        let tat = self.tat.get().max(now);
        let ahead = tat - now;
        if ahead > tolerance {
            let wait = ahead - tolerance;
            return Err((wait.as_nanos().div_ceil(1_000_000) as u64).max(1));
        }
        self.tat.set(tat + interval);
        Ok(())
    }
}

/// A kind's index in [`RateKinds`].
pub type KindId = u8;

/// The resolved limits of every message kind and which kind each envelope
/// spends.
#[derive(Debug, Clone)]
pub struct RateKinds {
    /// Names and limits, by [`KindId`]; 0 is `messages`, 1 is `joins`.
    kinds: Vec<(String, Limit)>,
    send: KindId,
    join: KindId,
    publish: Vec<(RoomPattern, KindId)>,
    publish_default: KindId,
}

/// The `[rate-limits]` table of the TOML file, as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RateTable {
    /// Kinds by name (besides the built-in `messages` and `joins`).
    #[serde(default)]
    pub kinds: BTreeMap<String, KindTable>,
    /// The kind of `send`; default `messages`.
    pub send: Option<String>,
    /// The kind of `join`, `leave` and `refresh`; default `joins`.
    pub join: Option<String>,
    /// Publish rules, first match wins.
    #[serde(default)]
    pub publish: Vec<PublishRule>,
    /// The kind of a publish no rule matches; default `messages`.
    pub publish_default: Option<String>,
}

/// One kind: `limit` messages per `per-secs` seconds, bursts of `burst`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct KindTable {
    pub limit: u32,
    #[serde(default = "one")]
    pub per_secs: u32,
    /// Default: `limit`.
    pub burst: Option<u32>,
}

fn one() -> u32 {
    1
}

/// A publish to a room `rooms` matches spends `kind`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishRule {
    pub rooms: String,
    pub kind: String,
}

/// A `[rate-limits]` table that cannot be used.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum RateTableError {
    #[error("kind `{0}` is built in (set it with the --rate-{0}-* flags)")]
    BuiltIn(String),
    #[error("kind `{0}`: limit, per-secs and burst must be positive (per-secs at most 86400)")]
    Zero(String),
    #[error("unknown kind `{0}`")]
    Unknown(String),
    #[error("publish rule `{0}`: {1}")]
    Pattern(String, String),
    #[error("at most 255 kinds")]
    TooMany,
}

impl RateKinds {
    /// Only the built-in kinds: every envelope spends as it did before kinds.
    pub fn builtin(messages: Limit, joins: Limit) -> RateKinds {
        RateKinds::new(messages, joins, &RateTable::default()).expect("an empty table is valid")
    }

    /// The kinds of `table` plus the built-in `messages` and `joins`.
    pub fn new(messages: Limit, joins: Limit, table: &RateTable) -> Result<Self, RateTableError> {
        let mut kinds = vec![
            ("messages".to_owned(), messages),
            ("joins".to_owned(), joins),
        ];
        for (name, k) in &table.kinds {
            if name == "messages" || name == "joins" {
                return Err(RateTableError::BuiltIn(name.clone()));
            }
            if k.limit == 0 || k.per_secs == 0 || k.per_secs > 86_400 || k.burst == Some(0) {
                return Err(RateTableError::Zero(name.clone()));
            }
            kinds.push((
                name.clone(),
                Limit {
                    tokens: k.limit,
                    per_ms: k.per_secs * 1000,
                    burst: k.burst.unwrap_or(k.limit),
                },
            ));
        }
        if kinds.len() > usize::from(KindId::MAX) {
            return Err(RateTableError::TooMany);
        }
        let id = |name: &Option<String>, default: KindId| match name {
            None => Ok(default),
            Some(n) => kinds
                .iter()
                .position(|(k, _)| k == n)
                .map(|i| i as KindId)
                .ok_or_else(|| RateTableError::Unknown(n.clone())),
        };
        let publish = table
            .publish
            .iter()
            .map(|rule| {
                let pattern = RoomPattern::parse(&rule.rooms)
                    .map_err(|e| RateTableError::Pattern(rule.rooms.clone(), e.to_string()))?;
                Ok((pattern, id(&Some(rule.kind.clone()), 0)?))
            })
            .collect::<Result<_, RateTableError>>()?;
        Ok(RateKinds {
            send: id(&table.send, 0)?,
            join: id(&table.join, 1)?,
            publish_default: id(&table.publish_default, 0)?,
            publish,
            kinds,
        })
    }

    /// The kind of a direct `send`.
    pub fn send(&self) -> KindId {
        self.send
    }

    /// The kind of `join`, `leave` and `refresh`.
    pub fn join(&self) -> KindId {
        self.join
    }

    /// The kind of a publish to `room`: the first rule that matches.
    pub fn publish(&self, room: &str) -> KindId {
        self.publish
            .iter()
            .find(|(p, _)| p.matches(room))
            .map_or(self.publish_default, |&(_, k)| k)
    }

    /// The limit of `kind`.
    pub fn limit(&self, kind: KindId) -> Limit {
        self.kinds[usize::from(kind)].1
    }

    /// The name of `kind`.
    pub fn name(&self, kind: KindId) -> &str {
        &self.kinds[usize::from(kind)].0
    }
}

/// One user's buckets, one per kind it has spent (made on first use). A
/// boxed slice, not a `Vec`: 16 bytes in every user entry, no allocation
/// until the first take, and it grows once per kind.
#[derive(Default)]
pub struct Buckets(Box<[(KindId, TokenBucket)]>);

impl Buckets {
    /// Takes a token of `kind`; `Err` is the milliseconds until one is there.
    pub fn take(&mut self, kinds: &RateKinds, kind: KindId, now: Instant) -> Result<(), u64> {
        let limit = kinds.limit(kind);
        let i = match self.0.iter().position(|(k, _)| *k == kind) {
            Some(i) => i,
            None => {
                let mut grown = std::mem::take(&mut self.0).into_vec();
                grown.push((kind, TokenBucket::full(now)));
                self.0 = grown.into_boxed_slice();
                self.0.len() - 1
            }
        };
        self.0[i].1.take(limit, now)
    }
}

#[cfg(test)]
#[path = "rate_tests.rs"]
mod tests;
