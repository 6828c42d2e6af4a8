/**
 * The `etcd` store: etcd v3 over its grpc-gateway JSON API (`/v3/...`) with plain fetch, except the
 * list of a prefix, which is one Range over gRPC (`grpc.ts`, hand-written protobuf in `grpc-codec.ts`)
 * and falls back to the gateway (`#list`). Keys with a TTL get an etcd lease of their own, as
 * flanneld's do, so flanneld and weft agents can share one etcd: creation is a txn on
 * `create_revision == 0`, updates compare `mod_revision`, renewal is a lease keepalive, and expiry
 * arrives as a DELETE event whose lease is gone.
 */
import {
  ConflictError,
  isStoreError,
  KeyExistsError,
  KeyNotFoundError,
  StoreError,
  StoreErrorCode,
} from "../errors.ts";
import { type BodySink, HttpEndpoints, type HttpReceived, type HttpStream } from "../http.ts";
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
import {
  authenticateRequest,
  createTxn,
  decodeAuthenticate,
  decodeDeleteRange,
  decodeGatewayError,
  decodeKeepAlive,
  decodeLeaseGrant,
  decodeRange,
  decodeRangeList,
  decodeTimeToLive,
  decodeTxn,
  deleteRequest,
  deleteTxn,
  gatewayFailure,
  isInvalidToken,
  type LeaseGrant,
  leaseGrantRequest,
  leaseRequest,
  parseJson,
  prefixRangeRequest,
  protocolError,
  rangeReader,
  rangeRequest,
  readerFailure,
  type TimeToLive,
  timeToLiveRequest,
  toKeyValue,
  txnRangeKvs,
  updateTxn,
  type Where,
} from "./codec.ts";
import { GrpcSessions, GrpcStatusError } from "./grpc.ts";
import { frameMessage, prefixRangeMessage, RANGE_METHOD } from "./grpc-codec.ts";
import { RangeStreamDecoder } from "./grpc-range-stream.ts";
import { watchPrefix } from "./watch.ts";

/** etcd's largest lease TTL (`MaxLeaseTTL`, 9e9 s). */
const MAX_TTL_SECONDS = 9_000_000_000;
/** gRPC lists that failed where the gateway then answered, in a row, before lists stop trying gRPC. */
const GRPC_FAILURES_TO_STOP = 3;
/** 1.5 × etcd's default progress-notify interval (10 min): silence beyond this means a dead stream. */
const WATCH_IDLE_TIMEOUT_MS = 15 * 60_000;

/**
 * What this client knows about the leases it granted or kept alive, so watch events on its own keys
 * get a `ttlSeconds` without a `timetolive` round trip each.
 */
class LeaseBook {
  readonly #leases = new Map<bigint, { readonly ttlSeconds: number; readonly at: number }>();

  note(id: bigint, ttlSeconds: number): void {
    const now = performance.now();
    for (const [other, entry] of this.#leases) {
      if (now - entry.at > entry.ttlSeconds * 1_000) this.#leases.delete(other);
    }
    this.#leases.set(id, { ttlSeconds, at: now });
  }

  forget(id: bigint): void {
    this.#leases.delete(id);
  }

  /** Whole seconds left, or undefined when the lease is unknown here or should have expired. */
  remaining(id: bigint): number | undefined {
    const entry = this.#leases.get(id);
    if (entry === undefined) return undefined;
    const left = Math.ceil(entry.ttlSeconds - (performance.now() - entry.at) / 1_000);
    if (left > 0) return left;
    this.#leases.delete(id);
    return undefined;
  }

  clear(): void {
    this.#leases.clear();
  }
}

/** What every etcd v3 store can do (declared by its driver); etcd raises shorter lease TTLs to 2 s. */
export const CAPABILITIES: Capabilities = Object.freeze({
  serverTtl: true,
  multiHost: true,
  expiryReason: true,
  minTtlSeconds: 2,
});

export class Etcd3Store implements Store {
  readonly name = "etcd" as const;
  readonly capabilities = CAPABILITIES;

  readonly #http: HttpEndpoints;
  readonly #username: string | undefined;
  readonly #password: string;
  readonly #logger: StoreLogger | undefined;
  readonly #life: StoreLifecycle;
  readonly #leases = new LeaseBook();
  readonly #requestMs: number;
  /** Lists go over gRPC while this is set (see `#list`). */
  #grpc: GrpcSessions | undefined;
  #grpcFailures = 0;
  #token: Promise<string | undefined> | undefined;
  #tokenValue: string | undefined;

  /** `transport.grpcList: false` lists through the JSON gateway only (tests compare both paths). */
  constructor(
    options: StoreOptions,
    runtime: StoreRuntimeOptions = {},
    transport: { readonly grpcList?: boolean } = {},
  ) {
    this.#life = new StoreLifecycle("etcd", runtime.clock);
    this.#http = new HttpEndpoints(options, runtime.textBodyBytes);
    this.#username = options.username === "" ? undefined : options.username;
    this.#password = options.password ?? "";
    this.#logger = options.logger;
    this.#requestMs = options.requestTimeoutMs ?? 5_000;
    // An injected fetch stands for the whole transport (unit tests): gRPC would bypass it.
    const grpc = transport.grpcList ?? options.fetch === undefined;
    this.#grpc = grpc ? new GrpcSessions(options.tls) : undefined;
  }

  async get(key: string): Promise<KeyValue | undefined> {
    checkKey(key);
    const { answer } = await this.#call("/v3/kv/range", rangeRequest(key), decodeRange);
    const kv = answer.kvs[0];
    return kv === undefined ? undefined : toKeyValue(kv);
  }

  list(prefix: string, options: ListOptions = {}): Promise<ListResult> {
    return this.#list(prefix, options, this.#life.signal);
  }

  async create(key: string, value: string, options: CreateOptions = {}): Promise<KeyValue> {
    checkKey(key);
    const ttl = checkTtl(key, options.ttlSeconds);
    const lease = ttl === undefined ? undefined : await this.#grant(ttl);
    const leaseId = lease?.id ?? 0n;
    let result: { answer: ReturnType<typeof decodeTxn>; endpoint: string };
    try {
      result = await this.#call("/v3/kv/txn", createTxn(key, value, leaseId), decodeTxn);
    } catch (err) {
      // Even if the txn did go through, revoking deletes the key again: no orphan outlives the error.
      if (lease !== undefined) await this.#revokeQuietly(lease.id);
      throw err;
    }
    if (!result.answer.succeeded) {
      if (lease !== undefined) await this.#revokeQuietly(lease.id);
      throw new KeyExistsError(key, { endpoint: result.endpoint });
    }
    return {
      key,
      value,
      revision: result.answer.revision,
      expires: lease !== undefined,
      ...(lease === undefined ? {} : { ttlSeconds: lease.ttlSeconds }),
    };
  }

  async update(key: string, value: string, options: UpdateOptions): Promise<KeyValue> {
    checkKey(key);
    const ttl = checkTtl(key, options.ttlSeconds);
    const lease = ttl === undefined ? undefined : await this.#grant(ttl);
    const body = updateTxn(key, value, options.expectRevision, lease?.id ?? 0n);
    let result: { answer: ReturnType<typeof decodeTxn>; endpoint: string };
    try {
      result = await this.#call("/v3/kv/txn", body, decodeTxn);
    } catch (err) {
      // When the outcome is unknown the new lease may now hold the key: leave it to expire by itself.
      const unknown =
        isStoreError(err, StoreErrorCode.Unavailable) || isStoreError(err, StoreErrorCode.Closed);
      if (lease !== undefined && !unknown) await this.#revokeQuietly(lease.id);
      throw err;
    }
    const { answer, endpoint } = result;
    if (!answer.succeeded) {
      if (lease !== undefined) await this.#revokeQuietly(lease.id);
      const actual = txnRangeKvs(answer)[0]?.modRevision;
      throw new ConflictError(key, options.expectRevision, actual, { endpoint });
    }
    const put = answer.responses.find((op) => op.op === "put");
    const previous = put?.op === "put" ? put.prevKv?.lease : undefined;
    if (previous !== undefined && previous !== 0n) await this.#releaseLease(previous);
    return {
      key,
      value,
      revision: answer.revision,
      expires: lease !== undefined,
      ...(lease === undefined ? {} : { ttlSeconds: lease.ttlSeconds }),
    };
  }

  async renew(key: string): Promise<KeyValue> {
    checkKey(key);
    const range = await this.#call("/v3/kv/range", rangeRequest(key), decodeRange);
    const kv = range.answer.kvs[0];
    if (kv === undefined) throw new KeyNotFoundError(key, { endpoint: range.endpoint });
    if (kv.lease === 0n) return toKeyValue(kv);
    const kept = await this.#call("/v3/lease/keepalive", leaseRequest(kv.lease), decodeKeepAlive);
    if (kept.answer <= 0) {
      this.#leases.forget(kv.lease);
      throw new KeyNotFoundError(key, { endpoint: kept.endpoint });
    }
    this.#leases.note(kv.lease, kept.answer);
    return toKeyValue(kv, kept.answer);
  }

  async delete(key: string, options: DeleteOptions = {}): Promise<boolean> {
    checkKey(key);
    const expected = options.expectRevision;
    if (expected === undefined) {
      const { answer } = await this.#call("/v3/kv/deleterange", deleteRequest(key), decodeDeleteRange);
      return answer > 0n;
    }
    const { answer, endpoint } = await this.#call("/v3/kv/txn", deleteTxn(key, expected), decodeTxn);
    if (answer.succeeded) return true;
    const current = txnRangeKvs(answer)[0];
    if (current === undefined) return false;
    throw new ConflictError(key, expected, current.modRevision, { endpoint });
  }

  watch(prefix: string, options: WatchOptions): AsyncIterable<WatchEvent> {
    return watchPrefix(
      {
        storeSignal: this.#life.signal,
        clock: this.#life.clock,
        logger: this.#logger,
        idleTimeoutMs: WATCH_IDLE_TIMEOUT_MS,
        list: (p, listOptions, signal) => this.#list(p, listOptions, signal),
        open: (body, signal) => this.#openWatch(body, signal),
        dropToken: (token) => this.#dropToken(token),
        cachedTtl: (id) => this.#leases.remaining(id),
        timeToLive: async (id, signal) =>
          (await this.#call("/v3/lease/timetolive", timeToLiveRequest(id, false), decodeTimeToLive, signal))
            .answer.ttlSeconds,
        track: (producer) => this.#life.track(producer),
      },
      prefix,
      options,
    );
  }

  close(): Promise<void> {
    return this.#life.close(() => {
      this.#grpc?.close();
      this.#leases.clear();
      this.#token = undefined;
      this.#tokenValue = undefined;
    });
  }

  /**
   * Lists a prefix: one Range over gRPC when it works, else through the JSON gateway. gRPC is only
   * the faster way (5,000 leases: 17–33 ms instead of 81–163 ms, the gateway's time going into etcd
   * marshalling JSON; test/bench/etcd-transport.bench.ts); every failure of it ends in the gateway's
   * answer or error, so both list the same and fail the same. Only failures where the gateway then
   * answered count against gRPC: after GRPC_FAILURES_TO_STOP of them in a row (a proxy that speaks
   * only HTTP/1.1), lists stop trying it. Both paths apply `options.maxValueBytes` while they decode.
   */
  async #list(prefix: string, options: ListOptions, signal: AbortSignal): Promise<ListResult> {
    const viaGrpc = await this.#grpcRange(prefix, options, signal);
    const listed = viaGrpc.answer ?? (await this.#gatewayRange(prefix, options, signal));
    if (viaGrpc.failure !== undefined) this.#grpcFailed(viaGrpc.failure);
    return listed;
  }

  /**
   * The prefix's Range through the JSON gateway, values over `options.maxValueBytes` left out: a long
   * success body is decoded as it streams in (`rangeReader`: a longer value is counted, never held).
   */
  async #gatewayRange(prefix: string, options: ListOptions, signal: AbortSignal): Promise<ListResult> {
    const max = options.maxValueBytes;
    const stream = (response: Response) =>
      max !== undefined && response.status >= 200 && response.status < 300 ? rangeReader(max) : undefined;
    const decode = (json: unknown, where: Where) => decodeRangeList(json, where, max);
    return (await this.#call("/v3/kv/range", prefixRangeRequest(prefix), decode, signal, stream)).answer;
  }

  /**
   * The prefix's Range over gRPC, decoded as it streams in (`grpc-range-stream.ts`: values over
   * `options.maxValueBytes` are skipped, never held): its answer, or why there is none (nothing when
   * gRPC is off).
   */
  async #grpcRange(
    prefix: string,
    options: ListOptions,
    signal: AbortSignal,
  ): Promise<{ answer?: ListResult; failure?: StoreError }> {
    const grpc = this.#grpc;
    if (grpc === undefined) return {};
    this.#checkOpen();
    const token = await this.#authToken();
    const endpoint = this.#http.endpoint;
    const where = `${endpoint}${RANGE_METHOD}`;
    try {
      const framed = frameMessage(prefixRangeMessage(prefix));
      const decoder = new RangeStreamDecoder(where, options.maxValueBytes);
      const callOptions = { token, signal, timeoutMs: this.#requestMs };
      const answer = await grpc.unaryInto(endpoint, RANGE_METHOD, framed, callOptions, decoder);
      this.#grpcFailures = 0;
      return { answer };
    } catch (err) {
      this.#checkOpen();
      if (signal.aborted) throw err;
      if (err instanceof GrpcStatusError) {
        // The server speaks gRPC and refused this call (an expired token, no leader): the gateway
        // call that follows says so in the driver's own terms. Not a failure of gRPC itself.
        if (token !== undefined && isInvalidToken(err.detail)) this.#dropToken(token);
        return {};
      }
      return { failure: isStoreError(err) ? err : protocolError(where, String(err)) };
    }
  }

  #grpcFailed(failure: StoreError): void {
    this.#grpcFailures++;
    const fields = { endpoint: this.#http.endpoint, error: failure.message };
    if (this.#grpcFailures >= GRPC_FAILURES_TO_STOP) {
      this.#grpc?.close();
      this.#grpc = undefined;
      this.#logger?.warn(
        `etcd: gRPC lists failed ${GRPC_FAILURES_TO_STOP} times in a row where the JSON gateway answered; listing through the gateway only from now on`,
        fields,
      );
    } else if (this.#grpcFailures === 1) {
      this.#logger?.info(
        "etcd: a list over gRPC failed where the JSON gateway answered; listed through the gateway",
        fields,
      );
    }
  }

  async #grant(ttlSeconds: number): Promise<LeaseGrant> {
    const { answer } = await this.#call("/v3/lease/grant", leaseGrantRequest(ttlSeconds), decodeLeaseGrant);
    this.#leases.note(answer.id, answer.ttlSeconds);
    return answer;
  }

  /** Revokes a lease this client no longer needs; a failure only leaves it to expire by itself. */
  async #revokeQuietly(id: bigint): Promise<void> {
    this.#leases.forget(id);
    if (this.#life.closed) return;
    try {
      await this.#call("/v3/lease/revoke", leaseRequest(id), () => undefined);
    } catch (err) {
      if (isStoreError(err) && /lease not found/.test(err.message)) return;
      this.#logger?.warn("etcd: could not revoke an unused lease; it will expire by itself", {
        lease: id.toString(),
        error: String(err),
      });
    }
  }

  /** Revokes a lease a key no longer uses, unless other keys (maybe other tools' keys) still hold it. */
  async #releaseLease(id: bigint): Promise<void> {
    let left: TimeToLive;
    try {
      left = (await this.#call("/v3/lease/timetolive", timeToLiveRequest(id, true), decodeTimeToLive)).answer;
    } catch (err) {
      this.#logger?.warn("etcd: could not inspect a replaced lease; it will expire by itself", {
        lease: id.toString(),
        error: String(err),
      });
      return;
    }
    if (left.ttlSeconds >= 0 && left.keys.length === 0) await this.#revokeQuietly(id);
  }

  /**
   * One unary gateway call: POST `body` as JSON to `path`, decode the answer, map failures onto
   * StoreErrors, and authenticate again once when the server says the token is no longer valid. A
   * long body goes through the reader `sinkFor` picks, if any (`HttpEndpoints.receive`).
   */
  async #call<T>(
    path: string,
    body: Record<string, unknown>,
    decode: (json: unknown, where: Where) => T,
    signal: AbortSignal = this.#life.signal,
    sinkFor: (response: Response) => BodySink<unknown> | undefined = () => undefined,
  ): Promise<{ answer: T; endpoint: string }> {
    const payload = JSON.stringify(body);
    for (let attempt = 0; ; attempt++) {
      this.#checkOpen();
      let token: string | undefined;
      let answer: HttpReceived<unknown>;
      try {
        token = await this.#authToken();
        const request = { method: "POST", path, body: payload, headers: headers(token), signal } as const;
        answer = await this.#http.receive(request, sinkFor);
      } catch (err) {
        this.#checkOpen();
        throw readerFailure(err, `${this.#http.endpoint}${path}`);
      }
      const where = `${answer.endpoint}${path}`;
      const json = answer.read === undefined ? parseJson(answer.body, where) : answer.read.value;
      const failure = decodeGatewayError(json);
      if (failure === undefined && answer.status >= 200 && answer.status < 300) {
        return { answer: decode(json, where), endpoint: answer.endpoint };
      }
      if (failure !== undefined && isInvalidToken(failure) && token !== undefined && attempt === 0) {
        this.#dropToken(token);
        continue;
      }
      throw gatewayFailure(failure, answer.status, answer.endpoint, path, answer.body);
    }
  }

  async #openWatch(
    body: string,
    signal: AbortSignal,
  ): Promise<{ stream: HttpStream; token: string | undefined }> {
    this.#checkOpen();
    const token = await this.#authToken();
    // Like flanneld's WithRequireLeader: a member cut off from its leader ends the stream instead of
    // keeping it open and silent.
    const stream = await this.#http.stream({
      method: "POST",
      path: "/v3/watch",
      body,
      headers: { ...headers(token), "grpc-metadata-hasleader": "true" },
      signal,
    });
    return { stream, token };
  }

  /** The auth token, authenticating once for all callers; undefined without credentials. */
  #authToken(): Promise<string | undefined> {
    if (this.#username === undefined) return Promise.resolve(undefined);
    this.#token ??= this.#authenticate(this.#username).catch((err: unknown) => {
      this.#token = undefined;
      throw err;
    });
    return this.#token;
  }

  #dropToken(stale: string): void {
    if (this.#tokenValue === stale) {
      this.#token = undefined;
      this.#tokenValue = undefined;
    }
  }

  async #authenticate(username: string): Promise<string | undefined> {
    const path = "/v3/auth/authenticate";
    const answer = await this.#http.request({
      method: "POST",
      path,
      body: JSON.stringify(authenticateRequest(username, this.#password)),
      signal: this.#life.signal,
    });
    const where = `${answer.endpoint}${path}`;
    const json = parseJson(answer.body, where);
    const failure = decodeGatewayError(json);
    if (failure === undefined && answer.status >= 200 && answer.status < 300) {
      const token = decodeAuthenticate(json, where);
      this.#tokenValue = token;
      return token;
    }
    if (failure !== undefined && /authentication is not enabled/.test(failure.message)) {
      this.#logger?.debug(
        "etcd: authentication is not enabled on the server; sending requests without a token",
        {
          endpoint: answer.endpoint,
        },
      );
      return undefined;
    }
    if (failure !== undefined && /authentication failed/.test(failure.message)) {
      throw new StoreError(
        StoreErrorCode.Auth,
        `etcd at ${answer.endpoint} refused the credentials of user "${username}": ${failure.message} (check the etcd username and password)`,
        { endpoint: answer.endpoint },
      );
    }
    throw gatewayFailure(failure, answer.status, answer.endpoint, path, answer.body);
  }

  #checkOpen(): void {
    this.#life.assertOpen();
  }
}

function headers(token: string | undefined): Record<string, string> {
  const base = { "content-type": "application/json" };
  return token === undefined ? base : { ...base, authorization: token };
}

function checkKey(key: string): void {
  if (key === "") throw new StoreError(StoreErrorCode.Invalid, "etcd keys cannot be empty");
}

/** The TTL to grant, in whole seconds (rounded up), or undefined for a key that never expires. */
function checkTtl(key: string, ttlSeconds: number | undefined): number | undefined {
  if (ttlSeconds === undefined) return undefined;
  if (!Number.isFinite(ttlSeconds) || ttlSeconds <= 0 || ttlSeconds > MAX_TTL_SECONDS) {
    throw new StoreError(
      StoreErrorCode.Invalid,
      `TTL ${ttlSeconds} s for key ${key} is out of range: give 1..${MAX_TTL_SECONDS} seconds, or no TTL for a key that never expires`,
      { key },
    );
  }
  return Math.ceil(ttlSeconds);
}
