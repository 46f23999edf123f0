// A fake WebSocket and a fake clock for the unit tests: the test plays the
// node, frame by frame, and moves time by hand.

export class FakeClock {
  constructor() {
    this.now = 0;
    this.timers = new Map();
    this.seq = 0;
    this.setTimeout = (fn, ms) => {
      const id = ++this.seq;
      this.timers.set(id, { at: this.now + ms, fn, ms });
      return id;
    };
    this.clearTimeout = (id) => {
      this.timers.delete(id);
    };
  }

  /** Delays of the timers now armed, soonest first. */
  armed() {
    return [...this.timers.values()].map((t) => t.at - this.now).sort((a, b) => a - b);
  }

  /** Moves time forward by `ms`, firing due timers in order. */
  async advance(ms) {
    const end = this.now + ms;
    for (;;) {
      let next = null;
      for (const [id, t] of this.timers) if (t.at <= end && (!next || t.at < next[1].at)) next = [id, t];
      if (!next) break;
      this.timers.delete(next[0]);
      this.now = next[1].at;
      next[1].fn();
      await flush();
    }
    this.now = end;
    await flush();
  }
}

export const flush = () => new Promise((r) => setImmediate(r));

export function fakeSocketClass() {
  const sockets = [];
  class FakeSocket {
    constructor(url) {
      this.url = url;
      this.query = new URL(url).searchParams;
      this.sent = [];
      this.closed = null;
      sockets.push(this);
    }

    send(text) {
      if (this.closed) throw new Error('closed');
      this.sent.push(JSON.parse(text));
    }

    close(code, reason) {
      this.closed = { code, reason };
    }

    /** The node sends an envelope. */
    serve(env) {
      this.onmessage({ data: typeof env === 'string' ? env : JSON.stringify(env) });
    }

    /** The node closes (or the connection drops: 1006). */
    drop(code = 1006, reason = '') {
      this.closed = { code, reason };
      this.onclose({ code, reason });
    }

    welcome(offset = 0, token = `tok-${sockets.indexOf(this)}`) {
      this.serve({ type: 'welcome', userId: this.query.get('userId'), node: 'n1', resumeToken: token, offset });
    }
  }
  return { FakeSocket, sockets };
}
