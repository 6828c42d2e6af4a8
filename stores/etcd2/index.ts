/**
 * The `etcd2` driver: the etcd v2 keys API (`/v2/keys`) over HTTP, for clusters that still serve it
 * (etcd ≤ 3.5 with `--enable-v2`). Every key carries its own TTL; renewal is `refresh=true`; a watch is
 * a chain of long polls from a `waitIndex`. The pure parts live in `codec.ts`.
 */

import { ClosedError, ConflictError, KeyNotFoundError, StoreError, UnavailableError } from "../errors.ts";
import { EventQueue } from "../event-queue.ts";
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
  ResyncCause,
  Revision,
  Store,
  StoreLogger,
  StoreOptions,
  UpdateOptions,
  WatchEvent,
  WatchOptions,
} from "../store.ts";
import {
  basicAuth,
  checkPrefix,
  checkValue,
  decodeAnswer,
  directoryOf,
  type EtcdAnswer,
  EtcdCode,
  failureError,
  flatten,
  form,
  hasCode,
  keyPath,
  listReader,
  notJson,
  parseAnswer,
  parseIndex,
  pollOutcome,
  query,
  requireIndex,
  toKeyValue,
  ttlField,
  unknownTtl,
  validateKey,
} from "./codec.ts";

/** How long one watch long poll may stay open; it is then re-issued from the same `waitIndex`. */
const POLL_LIMIT_MS = 60_000;
/** How long a history lookup (see `#writtenTtl`) waits for the server to find the event. */
const HISTORY_LOOKUP_MS = 1_000;
/** How often renew re-reads a key that changed between its read and its refresh. */
const RENEW_ATTEMPTS = 3;

/** What every etcd v2 store can do (declared by its driver). */
export const CAPABILITIES: Capabilities = Object.freeze({
  serverTtl: true,
  multiHost: true,
  expiryReason: true,
  minTtlSeconds: 1,
});
const FORM = { "content-type": "application/x-www-form-urlencoded" } as const;

/** The outcome of one long poll: an answer, or a poll that ended with nothing to say. */
type Poll =
  | { readonly kind: "answer"; readonly status: number; readonly body: string; readonly endpoint: string }
  /** `index`: the store index when the server registered the watch (`X-Etcd-Index`), if known. */
  | { readonly kind: "quiet"; readonly index: Revision | undefined; readonly expired: boolean };

export class Etcd2Store implements Store {
  readonly name = "etcd2" as const;
  readonly capabilities = CAPABILITIES;

  readonly #http: HttpEndpoints;
  readonly #auth: Record<string, string>;
  readonly #logger: StoreLogger | undefined;
  /** Aborts every in-flight request and watch on close. */
  readonly #life: StoreLifecycle;
  /**
   * The full TTL of every key this client last wrote with one. The v2 API only reports the seconds
   * left, and `refresh=true` needs the full length again.
   */
  readonly #ttls = new Map<string, number>();

  constructor(options: StoreOptions, runtime: StoreRuntimeOptions = {}) {
    this.#life = new StoreLifecycle("etcd2", runtime.clock);
    this.#http = new HttpEndpoints(options, runtime.textBodyBytes);
    this.#logger = options.logger;
    this.#auth = basicAuth(options.username, options.password);
  }

  async get(key: string): Promise<KeyValue | undefined> {
    this.#begin(key);
    const answer = await this.#send({ method: "GET", path: `${keyPath(key)}${query({ quorum: true })}` });
    if (answer.status === 404 && hasCode(answer.body, EtcdCode.KeyNotFound)) return undefined;
    const node = this.#expect(answer, 200, key).node;
    return node.dir === true ? undefined : toKeyValue(node);
  }

  async list(prefix: string, options: ListOptions = {}): Promise<ListResult> {
    return this.#list(prefix, this.#life.signal, options.maxValueBytes);
  }

  async create(key: string, value: string, options: CreateOptions = {}): Promise<KeyValue> {
    this.#begin(key);
    const ttl = ttlField(key, options.ttlSeconds);
    const answer = await this.#send({
      method: "PUT",
      path: `${keyPath(key)}${query({ prevExist: false })}`,
      headers: FORM,
      body: form({ value: checkValue(key, value), ttl }),
    });
    const kv = toKeyValue(this.#expect(answer, 201, key).node);
    this.#remember(key, ttl);
    return kv;
  }

  async update(key: string, value: string, options: UpdateOptions): Promise<KeyValue> {
    this.#begin(key);
    const ttl = ttlField(key, options.ttlSeconds);
    const expectRevision = options.expectRevision;
    // prevIndex=0 means "no condition" to etcd; no key is ever at index 0, so it is always a conflict.
    if (expectRevision <= 0n) {
      const current = await this.get(key);
      throw new ConflictError(key, expectRevision, current?.revision, { endpoint: this.#http.endpoint });
    }
    const answer = await this.#send({
      method: "PUT",
      path: `${keyPath(key)}${query({ prevIndex: expectRevision })}`,
      headers: FORM,
      // Without `ttl` a compare-and-swap also clears an existing TTL: the key becomes permanent.
      body: form({ value: checkValue(key, value), ttl }),
    });
    const kv = toKeyValue(this.#expect(answer, 200, key, expectRevision).node);
    this.#remember(key, ttl);
    return kv;
  }

  /**
   * Refreshes the key's TTL (`refresh=true`, which does not wake watchers but does move the key's
   * revision). The full TTL is the one this client last wrote; for a key written by someone else it
   * is read from the store's event history (the write event records the full TTL) while that event
   * is among the last 1,000. When neither is known, renew fails with `Invalid`: write the key once
   * with `update` and a TTL. The refresh is conditional on the revision just read, so a key made
   * permanent meanwhile never gets a TTL added.
   */
  async renew(key: string): Promise<KeyValue> {
    this.#begin(key);
    for (let attempt = 1; ; attempt++) {
      const current = await this.get(key);
      if (current === undefined) {
        this.#ttls.delete(key);
        throw new KeyNotFoundError(key, { endpoint: this.#http.endpoint });
      }
      if (!current.expires) return current;
      const ttl = this.#ttls.get(key) ?? (await this.#writtenTtl(key, current.revision));
      if (ttl === undefined) throw unknownTtl(key, this.#http.endpoint);
      const answer = await this.#send({
        method: "PUT",
        path: `${keyPath(key)}${query({ prevIndex: current.revision })}`,
        headers: FORM,
        body: form({ ttl, refresh: "true", prevExist: "true" }),
      });
      if (answer.status === 412 && hasCode(answer.body, EtcdCode.CompareFailed) && attempt < RENEW_ATTEMPTS)
        continue;
      if (answer.status === 404 && hasCode(answer.body, EtcdCode.KeyNotFound)) {
        this.#ttls.delete(key);
        throw new KeyNotFoundError(key, { endpoint: answer.endpoint });
      }
      const kv = toKeyValue(this.#expect(answer, 200, key, current.revision).node);
      this.#ttls.set(key, ttl);
      return kv;
    }
  }

  async delete(key: string, options: DeleteOptions = {}): Promise<boolean> {
    this.#begin(key);
    const expectRevision = options.expectRevision;
    if (expectRevision !== undefined && expectRevision <= 0n) {
      // As in update: prevIndex=0 would delete unconditionally.
      const current = await this.get(key);
      if (current === undefined) return false;
      throw new ConflictError(key, expectRevision, current.revision, { endpoint: this.#http.endpoint });
    }
    const answer = await this.#send({
      method: "DELETE",
      path: `${keyPath(key)}${query({ prevIndex: expectRevision })}`,
    });
    if (answer.status === 404 && hasCode(answer.body, EtcdCode.KeyNotFound)) return false;
    this.#expect(answer, 200, key, expectRevision);
    this.#ttls.delete(key);
    return true;
  }

  watch(prefix: string, options: WatchOptions): AsyncIterable<WatchEvent> {
    const queue = new EventQueue<WatchEvent>(options.signal);
    if (this.#life.closed) {
      queue.fail(new ClosedError(this.name));
      return queue;
    }
    const stop = new AbortController();
    const signal = AbortSignal.any([this.#life.signal, stop.signal, options.signal ?? stop.signal]);
    const loop = this.#watchLoop(prefix, options, queue, signal)
      .catch((err: unknown) => queue.fail(err))
      .finally(() => queue.end());
    this.#life.track(loop);
    // A consumer that leaves its loop early (break, return) also stops the long polls.
    const iterator = (): AsyncIterator<WatchEvent> => {
      const inner = queue[Symbol.asyncIterator]();
      const leave = () => {
        stop.abort();
        return inner.return?.() ?? done();
      };
      return { next: () => inner.next(), return: leave };
    };
    return { [Symbol.asyncIterator]: iterator };
  }

  close(): Promise<void> {
    return this.#life.close();
  }

  /**
   * One recursive GET of the directory holding `prefix`. Under `maxValueBytes` a success body is
   * read as it streams in (`listReader`), leaving longer values out; other answers are read as text.
   */
  async #list(prefix: string, signal: AbortSignal, maxValueBytes: number | undefined): Promise<ListResult> {
    this.#begin();
    checkPrefix(prefix);
    const dir = directoryOf(prefix);
    const path = `${keyPath(dir)}${query({ recursive: true, sorted: true, quorum: true })}`;
    // Without the index header the body is no etcd answer: read as text, it gets requireIndex's error.
    const stream = (response: Response) =>
      maxValueBytes !== undefined &&
      response.status === 200 &&
      parseIndex(response.headers.get("x-etcd-index")) !== undefined
        ? listReader(maxValueBytes)
        : undefined;
    const answer = await this.#receive({ method: "GET", path }, signal, stream);
    const revision = requireIndex(answer.headers.get("x-etcd-index"), answer.endpoint);
    const missing = answer.status === 404 && hasCode(answer.body, EtcdCode.KeyNotFound);
    // A key where the directory would be (104) holds nothing under the prefix either.
    const notDir = answer.status === 400 && hasCode(answer.body, EtcdCode.NotDir);
    if (missing || notDir) return { entries: [], revision };
    const root =
      answer.read === undefined
        ? this.#expect(answer, 200, dir)
        : decodeAnswer(answer.read.value, answer.endpoint);
    return { entries: flatten(root.node, prefix, maxValueBytes), revision };
  }

  /**
   * Chains long polls from `waitIndex`; each answer carries one event. A poll that ends quietly moves
   * `waitIndex` to the index the server registered the watch at (nothing under the directory changed
   * up to it), so a quiet prefix does not fall out of the 1,000-event history.
   */
  async #watchLoop(
    prefix: string,
    options: WatchOptions,
    queue: EventQueue<WatchEvent>,
    signal: AbortSignal,
  ) {
    const { afterRevision: after, maxValueBytes } = options;
    checkPrefix(prefix);
    const dir = directoryOf(prefix);
    const retry = this.#life.backoff(); // after network failures; reset by any answer
    const pace = this.#life.backoff(); // between resyncs and early-ended polls; reset by an event
    let next = after + 1n;
    let resync: ResyncCause | undefined;
    while (!signal.aborted) {
      try {
        if (resync !== undefined) {
          await pace.wait(signal); // back-to-back resyncs slow down instead of hot-looping
          const listed = await this.#list(prefix, signal, maxValueBytes);
          queue.push({ type: "resync", entries: listed.entries, revision: listed.revision, cause: resync });
          next = listed.revision + 1n;
          resync = undefined;
        }
        const path = `${keyPath(dir)}${query({ wait: true, recursive: true, waitIndex: next })}`;
        const poll = await this.#longPoll(path, POLL_LIMIT_MS, signal);
        retry.reset();
        if (poll.kind === "quiet") {
          if (poll.index !== undefined && poll.index >= next) next = poll.index + 1n;
          // A poll the server ended early with nothing is retried after a pause, in case it keeps doing so.
          if (poll.expired) pace.reset();
          else await pace.wait(signal);
          continue;
        }
        const outcome = pollOutcome(poll.status, poll.body, prefix, poll.endpoint, maxValueBytes);
        if (outcome.kind === "resync") {
          const fields = { prefix, waitIndex: String(next), endpoint: poll.endpoint, cause: outcome.cause };
          this.#logger?.warn("etcd2 watch cannot continue from its index; re-listing", fields);
          resync = outcome.cause;
          continue;
        }
        next = outcome.waitIndex;
        pace.reset();
        if (outcome.event !== undefined) queue.push(outcome.event);
      } catch (err) {
        if (signal.aborted) return;
        if (!(err instanceof UnavailableError)) throw err;
        const delay = retry.delay();
        const fields = { prefix, waitIndex: String(next), retryInMs: Math.round(delay), error: err.message };
        this.#logger?.warn("etcd2 watch lost its server; retrying", fields);
        await this.#life.sleep(delay, signal);
      }
    }
  }

  /**
   * One long poll with its own time limit: the headers (sent at once by etcd) fall under the request
   * limit, the body may take up to `limitMs`, after which the poll counts as quiet.
   */
  async #longPoll(path: string, limitMs: number, signal: AbortSignal): Promise<Poll> {
    const poll = new AbortController();
    const onAbort = () => poll.abort();
    signal.addEventListener("abort", onAbort, { once: true });
    let expired = false;
    const timer = setTimeout(() => {
      expired = true;
      poll.abort();
    }, limitMs);
    let index: Revision | undefined;
    try {
      const { response, endpoint } = await this.#http.stream({
        method: "GET",
        path,
        headers: this.#auth,
        signal: poll.signal,
      });
      index = parseIndex(response.headers.get("x-etcd-index"));
      const body = await readText(response, poll.signal);
      if (response.status === 200 && body.trim() === "") return { kind: "quiet", index, expired };
      return { kind: "answer", status: response.status, body, endpoint };
    } catch (err) {
      if (expired && !signal.aborted) return { kind: "quiet", index, expired };
      this.#life.assertOpen();
      if (signal.aborted || err instanceof StoreError) throw err;
      throw new UnavailableError(this.#http.endpoint, `watch broke: ${String(err)}`, { cause: err });
    } finally {
      clearTimeout(timer);
      signal.removeEventListener("abort", onAbort);
    }
  }

  /**
   * The full TTL the key was last written with, from the write event in the store's history: the
   * event at the key's revision records the TTL as it was set. A refresh leaves no event, so the
   * lookup then waits in vain and gives up after `HISTORY_LOOKUP_MS`.
   */
  async #writtenTtl(key: string, revision: Revision): Promise<number | undefined> {
    const poll = await this.#longPoll(
      `${keyPath(key)}${query({ wait: true, waitIndex: revision })}`,
      HISTORY_LOOKUP_MS,
      this.#life.signal,
    );
    if (poll.kind === "quiet" || poll.status !== 200) return undefined;
    const { node } = parseAnswer(poll.body, poll.endpoint);
    return BigInt(node.modifiedIndex) === revision && node.key === key ? node.ttl : undefined;
  }

  /** Rejects once closed (before any argument check), then validates the key. */
  #begin(key?: string): void {
    this.#life.assertOpen();
    if (key !== undefined) validateKey(key);
  }

  #remember(key: string, ttl: number | undefined): void {
    if (ttl === undefined) this.#ttls.delete(key);
    else this.#ttls.set(key, ttl);
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
    this.#life.assertOpen();
    try {
      return await this.#http.receive(
        { ...req, headers: { ...this.#auth, ...req.headers }, signal },
        sinkFor,
      );
    } catch (err) {
      this.#life.assertOpen();
      if (err instanceof JsonStreamError) throw notJson(this.#http.endpoint, err);
      if (err instanceof StoreError || signal.aborted) throw err;
      throw new UnavailableError(this.#http.endpoint, String(err), { cause: err });
    }
  }

  /** The parsed answer when it has the expected status, else the typed error it stands for. */
  #expect(answer: HttpAnswer, status: number, key: string, expectRevision?: Revision): EtcdAnswer {
    if (answer.status !== status) {
      throw failureError(answer.status, answer.body, { key, endpoint: answer.endpoint, expectRevision });
    }
    return parseAnswer(answer.body, answer.endpoint);
  }
}

/**
 * Reads the whole body, cancelling it when `signal` aborts. (`HttpEndpoints.stream` stops forwarding
 * its caller's signal once the headers are in, so the body must be cancelled here.)
 */
async function readText(response: Response, signal: AbortSignal): Promise<string> {
  const body = response.body;
  if (body === null) return "";
  const reader = body.getReader();
  const cancel = () => {
    reader.cancel().catch(() => {});
  };
  if (signal.aborted) cancel();
  signal.addEventListener("abort", cancel, { once: true });
  try {
    const decoder = new TextDecoder();
    let text = "";
    for (;;) {
      const chunk = await reader.read();
      if (chunk.done) break;
      text += decoder.decode(chunk.value, { stream: true });
    }
    signal.throwIfAborted();
    return text + decoder.decode();
  } finally {
    signal.removeEventListener("abort", cancel);
  }
}

function done(): Promise<IteratorResult<WatchEvent>> {
  return Promise.resolve({ done: true, value: undefined });
}
