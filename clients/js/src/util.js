// Backoff and deduplication: the two pieces of the client that are pure.

/**
 * The contract's reconnect delay: `t_k = min(maxDelay, minDelay·2^k) + U(0, jitter)`.
 * @param {number} k attempts since the last successful welcome (0 first)
 * @param {{minDelay: number, maxDelay: number, jitter: number}} o
 * @param {() => number} random uniform in [0, 1)
 */
export function backoffDelay(k, { minDelay, maxDelay, jitter }, random = Math.random) {
  const base = Math.min(maxDelay, minDelay * 2 ** Math.min(k, 52));
  return base + random() * jitter;
}

/** A set that remembers only the newest `capacity` keys (insertion order). */
export class Window {
  constructor(capacity) {
    this.capacity = capacity;
    this.keys = new Set();
  }

  has(key) {
    return this.keys.has(key);
  }

  add(key) {
    this.keys.delete(key);
    this.keys.add(key);
    if (this.keys.size > this.capacity) {
      this.keys.delete(this.keys.values().next().value);
    }
  }

  get size() {
    return this.keys.size;
  }
}

/**
 * Decides which received messages are new.
 *
 * Direct messages: dropped when their `from`+`id` is in the id window (a
 * replay after a resume, or a resent send whose first copy got through), or
 * when their offset is not above the highest offset of the same session (a
 * consistent node only sends ascending offsets on one connection). Across
 * sessions only the id window decides, because a node whose store restarted
 * (in-memory) hands out offsets from 1 again: the window must hold at least
 * the node's `--buffer-messages` (256), the most a resume replays.
 *
 * Room messages: dropped when their `room`+`from`+`id` was seen (a resent
 * publish).
 */
export class Dedup {
  constructor(windowSize) {
    this.direct = new Window(windowSize);
    this.room = new Window(windowSize);
    /** Offset of the last direct message delivered, or the last `welcome.offset`. */
    this.lastOffset = 0;
    /** The current session's `welcome.offset`. */
    this.sessionStart = 0;
    /** Highest direct offset seen on the current session. */
    this.sessionHigh = 0;
    /** How many sessions were seen with offsets at or below their `welcome.offset`. */
    this.resets = 0;
    /** No direct message yet on the current session. */
    this.fresh = true;
  }

  /** A new session began with `welcome.offset` = `offset`. */
  welcome(offset) {
    this.sessionStart = offset;
    this.sessionHigh = offset;
    this.lastOffset = offset;
    this.fresh = true;
  }

  /** True when the direct message is new (and records it). */
  acceptDirect(from, id, offset) {
    const key = `${from}\u0000${id}`;
    if (this.direct.has(key)) return false;
    if (offset <= this.sessionHigh) {
      if (!this.fresh) return false;
      // The session's first message is at or below its welcome offset: the
      // node's offsets started over (its store restarted). Follow them.
      this.resets += 1;
    }
    this.fresh = false;
    this.sessionHigh = offset;
    this.lastOffset = offset;
    this.direct.add(key);
    return true;
  }

  /** True when the room message is new (and records it). */
  acceptRoom(room, from, id) {
    const key = `${room}\u0000${from}\u0000${id}`;
    if (this.room.has(key)) return false;
    this.room.add(key);
    return true;
  }
}
