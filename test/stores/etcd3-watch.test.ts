/**
 * The etcd watch loop on a fake transport: each `open()` hands out a stream the test writes gateway
 * messages into, so resume revisions, compaction, failed lookups and silence are exact and fast.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { isStoreError, StoreErrorCode, UnavailableError } from "../../stores/errors.ts";
import { encodeText } from "../../stores/etcd/codec.ts";
import { type WatchDeps, watchPrefix } from "../../stores/etcd/watch.ts";
import type { ListResult, WatchEvent } from "../../stores/store.ts";

interface FakeStream {
  /** The `start_revision` the watch asked for. */
  readonly startRevision: string;
  send(message: unknown): void;
  sendText(text: string): void;
  end(): void;
  readonly canceled: boolean;
}

function kv(key: string, revision: number, lease = 0, value = `v${revision}`) {
  return {
    key: encodeText(key),
    create_revision: String(revision),
    mod_revision: String(revision),
    version: "1",
    value: encodeText(value),
    ...(lease === 0 ? {} : { lease: String(lease) }),
  };
}

const header = (revision: number) => ({
  cluster_id: "1",
  member_id: "2",
  revision: String(revision),
  raft_term: "2",
});
const events = (revision: number, ...list: unknown[]) => ({
  result: { header: header(revision), events: list },
});

interface Harness {
  readonly deps: WatchDeps;
  readonly streams: FakeStream[];
  readonly seen: WatchEvent[];
  readonly warnings: string[];
  error: unknown;
  finished: boolean;
  stream(n: number): Promise<FakeStream>;
  until(what: string, done: () => boolean, timeoutMs?: number): Promise<void>;
  stop(): Promise<void>;
}

const running: Harness[] = [];
afterEach(async () => {
  await Promise.all(running.splice(0).map((h) => h.stop()));
});

function start(
  options: {
    after?: bigint;
    idleTimeoutMs?: number;
    list?: () => Promise<ListResult>;
    timeToLive?: (lease: bigint) => Promise<number>;
    details?: boolean;
  } = {},
): Harness {
  const closer = new AbortController();
  const user = new AbortController();
  const streams: FakeStream[] = [];
  const warnings: string[] = [];
  const encoder = new TextEncoder();
  const deps: WatchDeps = {
    storeSignal: closer.signal,
    logger: { debug() {}, info() {}, warn: (m) => warnings.push(m) },
    idleTimeoutMs: options.idleTimeoutMs ?? 60_000,
    list: async () => (options.list ?? (async () => ({ entries: [], revision: 1n })))(),
    async open(body) {
      let controller: ReadableStreamDefaultController<Uint8Array> | undefined;
      let canceled = false;
      const readable = new ReadableStream<Uint8Array>({
        start: (c) => {
          controller = c;
        },
        cancel: () => {
          canceled = true;
        },
      });
      const request = JSON.parse(body) as { create_request: { start_revision: string } };
      streams.push({
        startRevision: request.create_request.start_revision,
        send: (message) => controller?.enqueue(encoder.encode(`${JSON.stringify(message)}\n`)),
        sendText: (text) => controller?.enqueue(encoder.encode(text)),
        end: () => controller?.close(),
        get canceled() {
          return canceled;
        },
      });
      return { stream: { response: new Response(readable), endpoint: "http://fake:2379" }, token: undefined };
    },
    dropToken() {},
    cachedTtl: () => undefined,
    timeToLive: (lease) => (options.timeToLive ?? (async () => 30))(lease),
    track() {},
  };
  const harness: Harness = {
    deps,
    streams,
    seen: [],
    warnings,
    error: undefined,
    finished: false,
    async stream(n) {
      await harness.until(`stream #${n}`, () => streams.length >= n);
      return streams[n - 1] as FakeStream;
    },
    async until(what, done, timeoutMs = 5_000) {
      const deadline = Date.now() + timeoutMs;
      while (!done()) {
        if (Date.now() > deadline)
          throw new Error(
            `timed out waiting for ${what}; saw ${JSON.stringify(harness.seen, (_, v) => (typeof v === "bigint" ? `${v}` : v))}`,
          );
        await Bun.sleep(5);
      }
    },
    async stop() {
      user.abort();
      await loop;
    },
  };
  const loop = (async () => {
    try {
      for await (const event of watchPrefix(deps, "/p/", {
        afterRevision: options.after ?? 1n,
        signal: user.signal,
        details: options.details,
      })) {
        harness.seen.push(event);
      }
    } catch (err) {
      harness.error = err;
    } finally {
      harness.finished = true;
    }
  })();
  running.push(harness);
  return harness;
}

function summary(es: readonly WatchEvent[]): string[] {
  return es.map((e) =>
    e.type === "put"
      ? `put ${e.kv.key}@${e.kv.revision}${e.kv.ttlSeconds === undefined ? "" : ` ttl=${e.kv.ttlSeconds}`}`
      : e.type === "delete"
        ? `delete ${e.key}@${e.revision} ${e.reason}`
        : `resync ${e.cause}@${e.revision} [${e.entries.map((k) => k.key).join(",")}]`,
  );
}

describe("etcd3 watch", () => {
  test("etcd3 watch - events wait for their lease lookups yet arrive in revision order", async () => {
    const h = start({
      timeToLive: async (lease) => {
        if (lease === 5n) {
          await Bun.sleep(150);
          return 42;
        }
        return -1;
      },
    });
    const s = await h.stream(1);
    expect(s.startRevision).toBe("2");
    s.send({ result: { header: header(1), created: true } });
    s.send(events(2, { kv: kv("/p/a", 2, 5) }));
    s.send(events(3, { kv: kv("/p/b", 3) }));
    s.send(
      events(4, {
        type: "DELETE",
        kv: { key: encodeText("/p/c"), mod_revision: "4" },
        prev_kv: kv("/p/c", 1, 6),
      }),
    );
    s.send(
      events(5, {
        type: "DELETE",
        kv: { key: encodeText("/p/b"), mod_revision: "5" },
        prev_kv: kv("/p/b", 3),
      }),
    );
    await h.until("four events", () => h.seen.length >= 4);
    expect(summary(h.seen)).toEqual([
      "put /p/a@2 ttl=42",
      "put /p/b@3",
      "delete /p/c@4 expired",
      "delete /p/b@5 deleted",
    ]);
  });

  test("etcd3 watch - without details no lease is looked up: no TTL on puts, leased deletes are 'unknown'", async () => {
    const asked: bigint[] = [];
    const h = start({
      details: false,
      timeToLive: async (lease) => {
        asked.push(lease);
        return -1;
      },
    });
    const s = await h.stream(1);
    s.send({ result: { header: header(1), created: true } });
    s.send(events(2, { kv: kv("/p/a", 2, 5) }));
    s.send(
      events(3, {
        type: "DELETE",
        kv: { key: encodeText("/p/c"), mod_revision: "3" },
        prev_kv: kv("/p/c", 1, 6),
      }),
    );
    s.send(
      events(4, {
        type: "DELETE",
        kv: { key: encodeText("/p/d"), mod_revision: "4" },
        prev_kv: kv("/p/d", 1),
      }),
    );
    await h.until("three events", () => h.seen.length >= 3);
    expect(summary(h.seen)).toEqual(["put /p/a@2", "delete /p/c@3 unknown", "delete /p/d@4 deleted"]);
    expect(asked).toEqual([]);
  });

  test("etcd3 watch - after the stream ends it resumes after the last event or progress, not the created header", async () => {
    const h = start({ after: 10n });
    const first = await h.stream(1);
    expect(first.startRevision).toBe("11");
    first.send({ result: { header: header(99), created: true } });
    first.send(events(12, { kv: kv("/p/a", 12) }));
    first.end();
    const second = await h.stream(2);
    expect(second.startRevision).toBe("13");
    second.send({ result: { header: header(20) } });
    second.end();
    const third = await h.stream(3);
    expect(third.startRevision).toBe("21");
    expect(summary(h.seen)).toEqual(["put /p/a@12"]);
    expect(h.warnings.length).toBeGreaterThanOrEqual(2);
  });

  test("etcd3 watch - several keys of one revision (a lease revoke) are all delivered", async () => {
    const h = start();
    const s = await h.stream(1);
    const gone = (key: string) => ({
      type: "DELETE",
      kv: { key: encodeText(key), mod_revision: "7" },
      prev_kv: kv(key, 3, 8),
    });
    s.send(events(7, gone("/p/a"), gone("/p/b"), gone("/p/c")));
    await h.until("three deletes", () => h.seen.length >= 3);
    expect(summary(h.seen)).toEqual([
      "delete /p/a@7 deleted",
      "delete /p/b@7 deleted",
      "delete /p/c@7 deleted",
    ]);
  });

  test("etcd3 watch - compaction closes the stream, re-lists into one resync and watches from the snapshot", async () => {
    let lists = 0;
    const h = start({
      list: async () => {
        lists++;
        return { entries: [{ key: "/p/x", value: "1", revision: 15n, expires: false }], revision: 20n };
      },
    });
    const first = await h.stream(1);
    first.send({ result: { header: header(30), created: true } });
    first.send({ result: { header: { cluster_id: "1" }, canceled: true, compact_revision: "18" } });
    const second = await h.stream(2);
    expect(first.canceled).toBe(true);
    expect(second.startRevision).toBe("21");
    second.send(events(21, { kv: kv("/p/y", 21) }));
    await h.until("the put after the resync", () => h.seen.length >= 2);
    expect(summary(h.seen)).toEqual(["resync compacted@20 [/p/x]", "put /p/y@21"]);
    expect(lists).toBe(1);
  });

  test("etcd3 watch - a message whose lookup fails is delivered whole after the reconnect, once", async () => {
    let calls = 0;
    const h = start({
      timeToLive: async () => {
        calls++;
        if (calls === 1) throw new UnavailableError("http://fake:2379", "connection refused");
        return 9;
      },
    });
    const message = events(3, { kv: kv("/p/a", 2) }, { kv: kv("/p/b", 3, 4) });
    const first = await h.stream(1);
    first.send(message);
    const second = await h.stream(2);
    expect(second.startRevision).toBe("2");
    expect(h.seen).toEqual([]);
    second.send(message);
    second.send(events(4, { kv: kv("/p/c", 4) }));
    await h.until("three puts", () => h.seen.length >= 3);
    expect(summary(h.seen)).toEqual(["put /p/a@2", "put /p/b@3 ttl=9", "put /p/c@4"]);
  });

  test("etcd3 watch - events at or below the resume revision are not delivered twice", async () => {
    const h = start({ after: 5n });
    const s = await h.stream(1);
    s.send(events(6, { kv: kv("/p/old", 5) }, { kv: kv("/p/new", 6) }));
    await h.until("the new put", () => h.seen.length >= 1);
    await Bun.sleep(50);
    expect(summary(h.seen)).toEqual(["put /p/new@6"]);
  });

  test("etcd3 watch - messages split anywhere across chunks are read whole", async () => {
    const h = start();
    const s = await h.stream(1);
    const text = `${JSON.stringify(events(2, { kv: kv("/p/a", 2, 0, "雪") }))}\n${JSON.stringify(events(3, { kv: kv("/p/b", 3) }))}\n`;
    for (let i = 0; i < text.length; i += 7) s.sendText(text.slice(i, i + 7));
    await h.until("two puts", () => h.seen.length >= 2);
    expect(summary(h.seen)).toEqual(["put /p/a@2", "put /p/b@3"]);
  });

  test("etcd3 watch - a silent stream is presumed dead and reopened", async () => {
    const h = start({ idleTimeoutMs: 150 });
    const first = await h.stream(1);
    first.send({ result: { header: header(1), created: true } });
    const second = await h.stream(2);
    expect(first.canceled).toBe(true);
    expect(second.startRevision).toBe("2");
    expect(h.warnings.some((w) => w.includes("reconnecting"))).toBe(true);
  });

  test("etcd3 watch - a permission error ends the watch with an Auth error instead of retrying", async () => {
    const h = start();
    const s = await h.stream(1);
    s.send({
      result: {
        header: header(1),
        created: true,
        canceled: true,
        cancel_reason: "rpc error: code = PermissionDenied desc = etcdserver: permission denied",
      },
    });
    await h.until("the watch to end", () => h.finished);
    expect(isStoreError(h.error, StoreErrorCode.Auth)).toBe(true);
    expect(h.streams.length).toBe(1);
  });

  test("etcd3 watch - aborting ends the iteration normally and cancels the stream", async () => {
    const h = start();
    const s = await h.stream(1);
    s.send(events(2, { kv: kv("/p/a", 2) }));
    await h.until("the put", () => h.seen.length >= 1);
    await h.stop();
    expect(h.finished).toBe(true);
    expect(h.error).toBeUndefined();
    expect(s.canceled).toBe(true);
  });
});
