/**
 * The `nats` store: NATS JetStream KV through @nats-io/transport-node, @nats-io/jetstream and
 * @nats-io/kv. All agents share one KV bucket (`weft`, stream `KV_weft`, history 1); store keys become
 * subjects as described in `codec.ts`, and a key's revision is the stream sequence of its last write,
 * so revisions are global to the bucket and grow with every write.
 *
 * - create: publish with "expected last subject sequence 0"; if the subject holds a deletion marker
 *   (or, when agents sweep, an expired key, which is first marked expired), retry against that marker.
 * - update / delete with a revision: read the key, then publish with the expected sequence; a put is
 *   never written over a marker, so a stale revision cannot bring a deleted key back.
 * - renew: republish the same value and TTL with the expected sequence. It moves the revision, and
 *   watchers see a put with the unchanged value.
 * - TTL: on nats-server ≥ 2.11.2 each message carries `Nats-TTL` and the server writes a marker
 *   (`Nats-Marker-Reason: MaxAge`) when it expires; older servers get the sweeping in `expiry.ts`.
 *   `nc.info.version` decides at connect; the server's silent acceptance of TTL headers it does not
 *   implement is never relied on. `capabilities` reflects the connected server (before the first
 *   connect: the driver's declared values, those of a swept store; see `LEARNED_ON_CONNECT`).
 * - list: a consistent snapshot of the prefix's subjects, read with one consumer (`snapshot.ts`).
 * - watch: see `watch.ts`.
 * - Credentials: `username`/`password`, `token` (else `$NATS_TOKEN`), `credsFile` (a `.creds` file,
 *   else `$NATS_CREDS`), client TLS from `tls`.
 * - Replicas: the bucket is created with `replicas` (`--nats-replicas`, default 1); an existing bucket
 *   is used as it is, with one warning when its replica count differs (see `client.ts`).
 */
import { randomUUID } from "node:crypto";
import { ConflictError, KeyExistsError, KeyNotFoundError, StoreError, StoreErrorCode } from "../errors.ts";
import { StoreLifecycle, type StoreRuntimeOptions } from "../runtime.ts";
import type {
  Capabilities,
  CreateOptions,
  DeleteOptions,
  KeyValue,
  ListOptions,
  ListResult,
  Store,
  StoreLogger,
  StoreOptions,
  UpdateOptions,
  WatchEvent,
  WatchOptions,
} from "../store.ts";
import { boundValue } from "../values.ts";
import { type Connected, NatsClient } from "./client.ts";
import {
  checkTtl,
  DEFAULT_BUCKET,
  deleteHeaders,
  type Entry,
  isExpired,
  prefixFilter,
  putHeaders,
  subjectFor,
  subjectPrefix,
  toEntry,
  toKeyValue,
} from "./codec.ts";
import { markExpired, Sweeper } from "./expiry.ts";
import { checkReplicas } from "./replicas.ts";
import { type Listing, watchPrefix } from "./watch.ts";

/** Test and maintenance seams of the NATS store. */
export interface NatsStoreInternals extends StoreRuntimeOptions {
  /** KV bucket name (default `weft`). */
  readonly bucket?: string | undefined;
  /**
   * Wall clock in ms since the epoch, compared with the server's write timestamps (default: the
   * clock's `now`).
   */
  readonly now?: (() => number) | undefined;
  /** How often a watch re-lists its prefix to check its view (default 30 s). */
  readonly relistMs?: number | undefined;
  /** How often the sweeper runs on servers without per-message TTL (default 1 s). */
  readonly sweepIntervalMs?: number | undefined;
}

type Put = Extract<Entry, { kind: "put" }>;

/** What a key's subject holds now. */
type Current =
  | { readonly state: "live"; readonly entry: Put; readonly data: Uint8Array }
  /** No message (seq 0n) or a deletion marker at `seq`. */
  | { readonly state: "absent"; readonly seq: bigint }
  /** A put past its expiry that no sweeper has marked yet (servers without per-message TTL). */
  | { readonly state: "expired"; readonly entry: Put };

/** Compare-and-swap rounds a write tries before concluding that other writers keep winning. */
const MAX_CAS_ROUNDS = 8;
const RELIST_MS = 30_000;

/**
 * What every NATS store can do, whatever the server (declared by its driver): on servers older than
 * 2.11.2 (Debian bookworm's 2.9.10) the agents sweep expired keys themselves.
 */
export const CAPABILITIES: Capabilities = Object.freeze({
  serverTtl: false,
  multiHost: true,
  expiryReason: true,
  minTtlSeconds: 1,
});
/** The capabilities that depend on the server; a connected store reports the server's. */
export const LEARNED_ON_CONNECT = ["serverTtl"] as const satisfies readonly (keyof Capabilities)[];
/** What a store connected to a server with per-message TTL (≥ 2.11.2) can do. */
const SERVER_TTL: Capabilities = Object.freeze({ ...CAPABILITIES, serverTtl: true });

const utf8 = new TextEncoder();

export class NatsStore implements Store {
  readonly name = "nats" as const;

  readonly #client: NatsClient;
  readonly #logger: StoreLogger | undefined;
  readonly #now: () => number;
  readonly #relistMs: number;
  readonly #id = randomUUID();
  readonly #life: StoreLifecycle;
  readonly #sweeper: Sweeper;

  constructor(options: StoreOptions, internals: NatsStoreInternals = {}) {
    this.#life = new StoreLifecycle("nats", internals.clock);
    this.#client = new NatsClient(
      options,
      internals.bucket ?? DEFAULT_BUCKET,
      checkReplicas(options.replicas),
      this.#life.clock,
    );
    this.#logger = options.logger;
    const clock = this.#life.clock;
    this.#now = internals.now ?? (() => clock.now());
    this.#relistMs = internals.relistMs ?? RELIST_MS;
    this.#sweeper = new Sweeper({
      client: this.#client,
      id: this.#id,
      logger: this.#logger,
      now: this.#now,
      clock,
      signal: this.#life.signal,
      intervalMs: internals.sweepIntervalMs,
    });
    this.#client.onConnection((event, connected) => {
      if (event === "connected" && !connected.serverTtl) this.#sweeper.start();
    });
  }

  /**
   * What the connected server allows; until the first connect, the driver's declared values (those
   * of a server without per-message TTL).
   */
  get capabilities(): Capabilities {
    return this.#client.current?.serverTtl === true ? SERVER_TTL : CAPABILITIES;
  }

  /** Connects if needed; the server's version and whether it expires keys itself. */
  async server(): Promise<{ readonly version: string; readonly serverTtl: boolean }> {
    const { version, serverTtl } = await this.#connection();
    return { version, serverTtl };
  }

  /** This store's id, as written into the sweeper lock and the expiry markers it writes. */
  get id(): string {
    return this.#id;
  }

  async get(key: string): Promise<KeyValue | undefined> {
    const current = await this.#read(subjectFor(this.#client.bucket, key));
    return current.state === "live" ? toKeyValue(current.entry, this.#now()) : undefined;
  }

  list(prefix: string, options: ListOptions = {}): Promise<ListResult> {
    const listing = this.#list(prefix, this.#life.signal, options.maxValueBytes);
    return listing.then(({ entries, revision }) => ({ entries, revision }));
  }

  async create(key: string, value: string, options: CreateOptions = {}): Promise<KeyValue> {
    const subject = subjectFor(this.#client.bucket, key);
    const ttl = checkTtl(key, options.ttlSeconds);
    const { serverTtl } = await this.#connection();
    const data = utf8.encode(value);
    let expect = 0n;
    for (let round = 1; ; round++) {
      const result = await this.#client.publish(subject, data, putHeaders(ttl, serverTtl), expect);
      if (result !== "conflict") return written(key, value, result, ttl);
      const free = await this.#freeSequence(subject);
      if (free === undefined || round >= MAX_CAS_ROUNDS) {
        throw new KeyExistsError(key, { endpoint: this.#client.endpoint });
      }
      expect = free;
    }
  }

  async update(key: string, value: string, options: UpdateOptions): Promise<KeyValue> {
    const subject = subjectFor(this.#client.bucket, key);
    const ttl = checkTtl(key, options.ttlSeconds);
    const { serverTtl } = await this.#connection();
    const expected = options.expectRevision;
    const current = await this.#read(subject);
    const actual = current.state === "live" ? current.entry.revision : undefined;
    if (actual !== expected) {
      if (current.state === "expired") await this.#markExpired(subject, current.entry);
      throw new ConflictError(key, expected, actual, { endpoint: this.#client.endpoint });
    }
    const result = await this.#client.publish(
      subject,
      utf8.encode(value),
      putHeaders(ttl, serverTtl),
      expected,
    );
    if (result !== "conflict") return written(key, value, result, ttl);
    const now = await this.#read(subject);
    throw new ConflictError(key, expected, now.state === "live" ? now.entry.revision : undefined, {
      endpoint: this.#client.endpoint,
    });
  }

  async renew(key: string): Promise<KeyValue> {
    const subject = subjectFor(this.#client.bucket, key);
    const { serverTtl } = await this.#connection();
    for (let round = 1; round <= MAX_CAS_ROUNDS; round++) {
      const current = await this.#read(subject);
      if (current.state !== "live") {
        if (current.state === "expired") await this.#markExpired(subject, current.entry);
        throw new KeyNotFoundError(key, { endpoint: this.#client.endpoint });
      }
      const { entry } = current;
      if (entry.ttlSeconds === undefined) return toKeyValue(entry, this.#now());
      const headers = putHeaders(entry.ttlSeconds, serverTtl);
      const result = await this.#client.publish(subject, current.data, headers, entry.revision);
      if (result !== "conflict") return written(key, entry.value, result, entry.ttlSeconds);
    }
    throw new StoreError(
      StoreErrorCode.Conflict,
      `key ${key} changed ${MAX_CAS_ROUNDS} times while it was being renewed; renew it again`,
      { key, endpoint: this.#client.endpoint },
    );
  }

  async delete(key: string, options: DeleteOptions = {}): Promise<boolean> {
    const subject = subjectFor(this.#client.bucket, key);
    const expected = options.expectRevision;
    for (let round = 1; round <= MAX_CAS_ROUNDS; round++) {
      const current = await this.#read(subject);
      if (current.state === "absent") return false;
      if (current.state === "expired") {
        await this.#markExpired(subject, current.entry);
        return false;
      }
      const actual = current.entry.revision;
      if (expected !== undefined && actual !== expected) {
        throw new ConflictError(key, expected, actual, { endpoint: this.#client.endpoint });
      }
      const result = await this.#client.publish(subject, new Uint8Array(0), deleteHeaders(), actual);
      if (result !== "conflict") return true;
    }
    throw new StoreError(
      StoreErrorCode.Conflict,
      `key ${key} changed ${MAX_CAS_ROUNDS} times while it was being deleted; delete it again`,
      { key, endpoint: this.#client.endpoint },
    );
  }

  watch(prefix: string, options: WatchOptions): AsyncIterable<WatchEvent> {
    if (this.#life.closed) return this.#life.closedWatch();
    return watchPrefix(
      {
        client: this.#client,
        storeSignal: this.#life.signal,
        clock: this.#life.clock,
        logger: this.#logger,
        relistMs: this.#relistMs,
        now: this.#now,
        list: (p, signal) => this.#list(p, signal, options.maxValueBytes),
        track: (producer) => this.#life.track(producer),
      },
      prefix,
      options,
    );
  }

  async close(): Promise<void> {
    await this.#life.close();
    await this.#sweeper.stop();
    await this.#client.close();
  }

  /** The prefix's live keys, sorted, at the snapshot's revision; `nowMs` is when expiry was judged. */
  async #list(prefix: string, signal: AbortSignal, maxValueBytes?: number): Promise<Listing> {
    const { serverTtl } = await this.#connection();
    const filter = subjectPrefix(this.#client.bucket) + prefixFilter(prefix);
    const snapshot = await this.#client.snapshot(filter, false, signal, maxValueBytes);
    const nowMs = this.#now();
    const entries: KeyValue[] = [];
    const expiries = new Map<string, number>();
    for (const record of snapshot.records) {
      const entry = toEntry(this.#client.bucket, record);
      if (entry?.kind !== "put" || !entry.key.startsWith(prefix)) continue;
      if (!serverTtl && isExpired(entry, nowMs)) continue;
      // boundValue too: a payload within the limit that is no UTF-8 decodes to more (U+FFFD).
      entries.push(boundValue(toKeyValue(entry, nowMs), maxValueBytes));
      if (entry.expiresAtMs !== undefined) expiries.set(entry.key, entry.expiresAtMs);
    }
    entries.sort((x, y) => (x.key < y.key ? -1 : x.key > y.key ? 1 : 0));
    return { entries, revision: snapshot.revision, expiries, nowMs };
  }

  /** What `subject` holds now; expired puts count as expired only where agents sweep. */
  async #read(subject: string): Promise<Current> {
    const { serverTtl } = await this.#connection();
    const record = await this.#client.read(subject);
    if (record === undefined) return { state: "absent", seq: 0n };
    const entry = toEntry(this.#client.bucket, record);
    if (entry === undefined || entry.kind === "delete") return { state: "absent", seq: record.seq };
    if (!serverTtl && isExpired(entry, this.#now())) return { state: "expired", entry };
    return { state: "live", entry, data: record.data };
  }

  /**
   * The sequence a create must expect on `subject`: 0n when empty, a marker's sequence, or (after
   * marking it) the marker of an expired key. Undefined while a live key is there.
   */
  async #freeSequence(subject: string): Promise<bigint | undefined> {
    for (let round = 1; round <= MAX_CAS_ROUNDS; round++) {
      const current = await this.#read(subject);
      if (current.state === "live") return undefined;
      if (current.state === "absent") return current.seq;
      const marker = await this.#markExpired(subject, current.entry);
      if (marker !== "conflict") return marker;
    }
    return undefined;
  }

  #markExpired(subject: string, entry: Put): Promise<bigint | "conflict"> {
    return markExpired(this.#client, subject, entry, this.#id);
  }

  async #connection(): Promise<Connected> {
    this.#life.assertOpen();
    return this.#client.connection();
  }
}

function written(key: string, value: string, revision: bigint, ttl: number | undefined): KeyValue {
  return ttl === undefined
    ? { key, value, revision, expires: false }
    : { key, value, revision, expires: true, ttlSeconds: ttl };
}
