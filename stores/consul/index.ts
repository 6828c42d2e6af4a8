/**
 * The `consul` store: Consul's KV HTTP API over fetch. A key with a TTL is locked by a session of its
 * own (Behavior=delete, no node checks, 1 ms lock delay) whose TTL is half the key's, because Consul
 * invalidates a session twice its TTL after the last renewal: from 2 × `session_ttl_min` (20 s by
 * default) the server expires keys on time by itself. A shorter TTL gets the shortest session the
 * server allows and the writing client destroys that session when the TTL runs out unrenewed; should
 * that client die first, the server still removes the key within 2 × `session_ttl_min`.
 * create is one txn (check-not-exists + lock or set), update one txn (check-index, unlock, lock or
 * set). Sessions are kept in `sessions.ts`, watches run in `watch.ts`, and the pure
 * parts are in `codec.ts`.
 */

import {
  ConflictError,
  KeyExistsError,
  KeyNotFoundError,
  StoreError,
  StoreErrorCode,
  UnavailableError,
} from "../errors.ts";
import {
  type BodySink,
  type HttpAnswer,
  HttpEndpoints,
  type HttpReceived,
  type HttpRequest,
} from "../http.ts";
import { JsonStreamError } from "../json-stream.ts";
import { StoreLifecycle, type StoreRuntimeOptions } from "../runtime.ts";
import type {
  Capabilities,
  CreateOptions,
  DeleteOptions,
  KeyValue,
  ListOptions,
  ListResult,
  Revision,
  Store,
  StoreLogger,
  StoreOptions,
  UpdateOptions,
  WatchEvent,
  WatchOptions,
} from "../store.ts";
import {
  authError,
  type ConsulEntry,
  checkValue,
  consulKey,
  consulPrefix,
  decodeEntries,
  failureError,
  isInvalidSession,
  kvPath,
  listReader,
  notJson,
  op,
  parseEntries,
  parseTxn,
  protocol,
  query,
  requireIndex,
  type Snapshot,
  snapshotOf,
  sortedEntries,
  stringify,
  type TxnOp,
  type TxnOutcome,
  toKeyValue,
  ttlMs,
} from "./codec.ts";
import { type OwnSession, SessionBook } from "./sessions.ts";
import { watchPrefix } from "./watch.ts";

/** How long one blocking query waits for a change; Consul adds up to 1/16 of it as jitter. */
const WAIT_MS = 60_000;
/** Snapshots kept per listed prefix, and prefixes kept, as the only history a watch can start from. */
const LISTED_PER_PREFIX = 4;
const LISTED_PREFIXES = 32;
/**
 * Expiry is exact on the server from a 20 s TTL (2 × the default `session_ttl_min`); below that only
 * while the writing client runs. Deletes whose session is gone are reported as expiries.
 */
export const CAPABILITIES: Capabilities = Object.freeze({
  serverTtl: true,
  multiHost: true,
  expiryReason: true,
  minTtlSeconds: 20,
});

export class ConsulStore implements Store {
  readonly name = "consul" as const;
  readonly capabilities = CAPABILITIES;

  readonly #http: HttpEndpoints;
  readonly #headers: Record<string, string>;
  readonly #logger: StoreLogger | undefined;
  readonly #requestMs: number;
  readonly #life: StoreLifecycle;
  readonly #sessions: SessionBook;
  /** Snapshots `list` returned, by Consul prefix, oldest first. */
  readonly #listed = new Map<string, Snapshot[]>();
  /**
   * The newest snapshot read of each prefix (at most LISTED_PREFIXES, least recently read first): the
   * next answer for that prefix reuses its unchanged entries instead of decoding them again. It is the
   * watch's own state, so it costs no second copy of the prefix.
   */
  readonly #decoded = new Map<string, Snapshot>();

  constructor(options: StoreOptions, runtime: StoreRuntimeOptions = {}) {
    this.#life = new StoreLifecycle("consul", runtime.clock);
    this.#http = new HttpEndpoints(options, runtime.textBodyBytes);
    this.#logger = options.logger;
    this.#sessions = new SessionBook((req, signal) => this.#send(req, signal), {
      logger: options.logger,
      clock: this.#life.clock,
    });
    this.#requestMs = options.requestTimeoutMs ?? 5_000;
    const token = options.token || process.env.CONSUL_HTTP_TOKEN || undefined;
    this.#headers = token === undefined ? {} : { "x-consul-token": token };
  }

  async get(key: string): Promise<KeyValue | undefined> {
    this.#checkOpen();
    const entry = await this.#entry(consulKey(key), key);
    return entry === undefined ? undefined : this.#kv(entry);
  }

  async list(prefix: string, options: ListOptions = {}): Promise<ListResult> {
    this.#checkOpen();
    const consul = consulPrefix(prefix);
    const snapshot = await this.#read(consul, 0n, this.#life.signal, options.maxValueBytes);
    this.#remember(consul, snapshot);
    return { entries: sortedEntries(snapshot).map((e) => this.#kv(e)), revision: snapshot.index };
  }

  async create(key: string, value: string, options: CreateOptions = {}): Promise<KeyValue> {
    this.#checkOpen();
    const consul = consulKey(key);
    checkValue(key, value);
    const ttl = ttlMs(key, options.ttlSeconds);
    if (ttl === undefined) {
      const out = await this.#txn([op.checkNotExists(consul), op.set(consul, value)], key);
      if (out.ok) return this.#written(out, key, value);
      throw out.errors[0]?.opIndex === 0
        ? new KeyExistsError(key, { endpoint: this.#http.endpoint })
        : txnError(key, out);
    }
    for (let attempt = 1; ; attempt++) {
      const session = await this.#sessions.create(key, ttl);
      let out: TxnOutcome;
      try {
        out = await this.#txn([op.checkNotExists(consul), op.lock(consul, value, session.id)], key);
      } catch (err) {
        // Even if the txn went through, destroying the session deletes the key: no orphan survives.
        await this.#sessions.destroy(session.id);
        throw err;
      }
      if (out.ok) {
        this.#sessions.own(session);
        return this.#written(out, key, value);
      }
      await this.#sessions.destroy(session.id);
      const failure = out.errors[0];
      if (failure?.opIndex === 0) throw new KeyExistsError(key, { endpoint: this.#http.endpoint });
      if (attempt < 3 && failure !== undefined && retryable(failure.what)) continue;
      throw txnError(key, out);
    }
  }

  async update(key: string, value: string, options: UpdateOptions): Promise<KeyValue> {
    this.#checkOpen();
    const consul = consulKey(key);
    checkValue(key, value);
    const ttl = ttlMs(key, options.ttlSeconds);
    const expected = options.expectRevision;
    for (let attempt = 1; ; attempt++) {
      const current = await this.#entry(consul, key);
      if (current?.modifyIndex !== expected) throw this.#conflict(key, expected, current);
      const held = current.session;
      const mine = this.#sessions.get(held);
      // The key keeps its own session when the session length fits; else a new one takes it over.
      let session: OwnSession | undefined;
      let fresh = false;
      if (ttl !== undefined) {
        if (mine !== undefined && mine.sessionMs === this.#sessions.sessionMs(ttl)) {
          if (await this.#sessions.renew(mine)) session = mine;
        }
        if (session === undefined) {
          session = await this.#sessions.create(key, ttl);
          fresh = true;
          this.#sessions.own(session); // owned before the txn: should its outcome be unknown, it still ends on time
        }
      }
      const ops: TxnOp[] = [op.checkIndex(consul, expected)];
      if (held !== undefined && held !== session?.id) ops.push(op.unlock(consul, value, held));
      if (session !== undefined) ops.push(op.lock(consul, value, session.id));
      else if (held === undefined) ops.push(op.set(consul, value));
      const out = await this.#txn(ops, key);
      if (!out.ok) {
        if (fresh && session !== undefined) {
          this.#sessions.disown(session);
          await this.#sessions.destroy(session.id);
        }
        const failure = out.errors[0];
        if (attempt < 3 && failure !== undefined && failure.opIndex > 0 && retryable(failure.what)) continue;
        if (failure !== undefined && failure.opIndex >= 0 && failure.opIndex < 2) {
          throw this.#conflict(key, expected, await this.#entry(consul, key));
        }
        throw txnError(key, out);
      }
      if (session !== undefined) {
        session.keyTtlMs = ttl ?? session.keyTtlMs;
        this.#sessions.arm(session);
      }
      const previous = held === undefined || held === session?.id ? undefined : this.#sessions.get(held);
      if (previous !== undefined) {
        // It holds nothing now; ending it keeps orphans from piling up.
        this.#sessions.disown(previous);
        await this.#sessions.destroy(previous.id);
      }
      return this.#written(out, key, value);
    }
  }

  /**
   * Renews the session holding the key. A key held by a session of another client (or of an earlier
   * run) is not this client's lease: KeyNotFound, as for a key that is gone; `update` takes it over.
   */
  async renew(key: string): Promise<KeyValue> {
    this.#checkOpen();
    const entry = await this.#entry(consulKey(key), key);
    if (entry === undefined) throw new KeyNotFoundError(key, { endpoint: this.#http.endpoint });
    if (entry.session === undefined) return this.#kv(entry);
    const mine = this.#sessions.get(entry.session);
    if (mine === undefined) {
      throw new StoreError(
        StoreErrorCode.KeyNotFound,
        `consul key ${key} is held by session ${entry.session}, which this client did not create: its lease here is gone (write the key with update to take it over)`,
        { key, endpoint: this.#http.endpoint },
      );
    }
    if (!(await this.#sessions.renew(mine)))
      throw new KeyNotFoundError(key, { endpoint: this.#http.endpoint });
    this.#sessions.arm(mine);
    return this.#kv(entry);
  }

  async delete(key: string, options: DeleteOptions = {}): Promise<boolean> {
    this.#checkOpen();
    const consul = consulKey(key);
    const expected = options.expectRevision;
    const remove = expected === undefined ? op.delete(consul) : op.deleteCas(consul, expected);
    const out = await this.#txn([op.get(consul), remove], key);
    if (out.ok) {
      // Its session is left to expire: ending it now would make watchers report an expiry.
      const mine = this.#sessions.get(out.results[0]?.session);
      if (mine !== undefined) this.#sessions.disown(mine);
      return true;
    }
    const failure = out.errors[0];
    if (failure?.opIndex === 0) return false;
    if (failure?.opIndex === 1 && expected !== undefined) {
      throw this.#conflict(key, expected, await this.#entry(consul, key));
    }
    throw txnError(key, out);
  }

  watch(prefix: string, options: WatchOptions): AsyncIterable<WatchEvent> {
    return watchPrefix(
      {
        storeSignal: this.#life.signal,
        clock: this.#life.clock,
        logger: this.#logger,
        read: (p, index, signal, maxValueBytes) => this.#read(p, index, signal, maxValueBytes),
        sessionLives: (id, signal) => this.#sessions.lives(id, signal),
        baseline: (p, after) => (this.#listed.get(p) ?? []).filter((s) => s.index <= after).at(-1),
        toKeyValue: (entry) => this.#kv(entry),
        track: (producer) => this.#life.track(producer),
      },
      prefix,
      options,
    );
  }

  /** Ends watches and timers. Sessions are left to expire, as etcd leases are: a restart keeps its keys. */
  close(): Promise<void> {
    return this.#life.close(() => {
      this.#sessions.close();
      this.#listed.clear();
      this.#decoded.clear();
    });
  }

  /**
   * A (blocking, when `index` > 0) recursive read of a Consul prefix. Under `maxValueBytes` a success
   * body is read as it streams in (`listReader`), leaving longer values out; other answers as text.
   */
  async #read(
    prefix: string,
    index: Revision,
    signal: AbortSignal,
    maxValueBytes?: number,
  ): Promise<Snapshot> {
    const blocking = index > 0n;
    const params = {
      recurse: true,
      // Consistent: only a leader whose store has caught up answers. Right after a restart a default
      // read could see the store half replayed and report keys gone and back (duplicate events).
      consistent: true,
      index: blocking ? index : undefined,
      wait: blocking ? `${WAIT_MS}ms` : undefined,
    };
    // Without the index header the body is no Consul answer: read as text, it gets requireIndex's error.
    const stream = (response: Response) =>
      maxValueBytes !== undefined && response.status === 200 && response.headers.has("x-consul-index")
        ? listReader(maxValueBytes)
        : undefined;
    const answer = await this.#receive(
      {
        method: "GET",
        path: `${kvPath(prefix)}${query(params)}`,
        timeoutMs: blocking ? WAIT_MS + WAIT_MS / 16 + this.#requestMs : undefined,
      },
      signal,
      stream,
    );
    if (answer.status !== 200 && answer.status !== 404) {
      throw failureError(answer.status, answer.body, answer.endpoint, `/${prefix}`);
    }
    if (answer.headers.get("x-consul-results-filtered-by-acls") === "true") {
      // A partial view would pass for the whole prefix (and free subnets would look taken or free).
      throw authError(answer.endpoint, `/${prefix}`, "the token may not read every key under this prefix");
    }
    const at = requireIndex(answer.headers.get("x-consul-index"), answer.endpoint);
    const previous = this.#decoded.get(prefix);
    const entries =
      answer.status === 404
        ? []
        : answer.read === undefined
          ? parseEntries(answer.body, answer.endpoint, previous, maxValueBytes)
          : decodeEntries(answer.read.value, answer.endpoint, previous, maxValueBytes);
    const snapshot = snapshotOf(at, entries);
    this.#decoded.delete(prefix); // re-inserted last: the map's order is least recently read first
    this.#decoded.set(prefix, snapshot);
    for (const oldest of this.#decoded.keys()) {
      if (this.#decoded.size <= LISTED_PREFIXES) break;
      this.#decoded.delete(oldest);
    }
    return snapshot;
  }

  async #entry(consul: string, key: string): Promise<ConsulEntry | undefined> {
    const answer = await this.#send({ method: "GET", path: kvPath(consul) });
    if (answer.status !== 200 && answer.status !== 404) {
      throw failureError(answer.status, answer.body, answer.endpoint, key);
    }
    requireIndex(answer.headers.get("x-consul-index"), answer.endpoint);
    if (answer.status === 404) return undefined;
    return parseEntries(answer.body, answer.endpoint).find((e) => e.key === key);
  }

  async #txn(ops: readonly TxnOp[], key: string): Promise<TxnOutcome> {
    const answer = await this.#send({ method: "PUT", path: "/v1/txn", body: stringify(ops) });
    return parseTxn(answer.status, answer.body, answer.endpoint, key);
  }

  #kv(entry: ConsulEntry): KeyValue {
    return toKeyValue(entry, this.#sessions.secondsLeft(entry.session));
  }

  #written(out: Extract<TxnOutcome, { ok: true }>, key: string, value: string): KeyValue {
    const entry = out.results.at(-1);
    if (entry?.key !== key)
      throw protocol(this.#http.endpoint, `a txn answer without the written key ${key}`);
    return this.#kv({ ...entry, value });
  }

  #conflict(key: string, expected: Revision, current: ConsulEntry | undefined): ConflictError {
    return new ConflictError(key, expected, current?.modifyIndex, { endpoint: this.#http.endpoint });
  }

  #remember(prefix: string, snapshot: Snapshot): void {
    const kept = this.#listed.get(prefix) ?? [];
    this.#listed.delete(prefix); // re-inserted last: the map's order is least recently listed first
    this.#listed.set(
      prefix,
      [...kept.filter((s) => s.index < snapshot.index), snapshot].slice(-LISTED_PER_PREFIX),
    );
    for (const oldest of this.#listed.keys()) {
      if (this.#listed.size <= LISTED_PREFIXES) break;
      this.#listed.delete(oldest);
    }
  }

  async #send(req: HttpRequest, signal: AbortSignal = this.#life.signal): Promise<HttpAnswer> {
    return this.#receive(req, signal, () => undefined);
  }

  /** As `#send`, reading the body through the sink `sinkFor` picks (see `HttpEndpoints.receive`). */
  async #receive(
    req: HttpRequest,
    signal: AbortSignal,
    sinkFor: (response: Response) => BodySink<unknown> | undefined,
  ): Promise<HttpReceived<unknown>> {
    this.#checkOpen();
    try {
      return await this.#http.receive(
        { ...req, headers: { ...this.#headers, ...req.headers }, signal },
        sinkFor,
      );
    } catch (err) {
      this.#checkOpen();
      if (err instanceof JsonStreamError) throw notJson(this.#http.endpoint, err);
      if (err instanceof StoreError || signal.aborted) throw err;
      throw new UnavailableError(this.#http.endpoint, String(err), { cause: err });
    }
  }

  #checkOpen(): void {
    this.#life.assertOpen();
  }
}

/** Txn errors worth one more try: the session vanished between its creation and the lock, or lock delay. */
function retryable(what: string): boolean {
  return isInvalidSession(what) || /lock delay/i.test(what);
}

function txnError(key: string, out: Extract<TxnOutcome, { ok: false }>): StoreError {
  const said = out.errors.map((e) => `op ${e.opIndex}: ${e.what}`).join("; ") || "no reason given";
  return new StoreError(StoreErrorCode.Protocol, `consul refused the transaction on ${key}: ${said}`, {
    key,
  });
}
