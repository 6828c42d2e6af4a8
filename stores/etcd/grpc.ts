/**
 * Unary gRPC calls to etcd over HTTP/2 (node:http2: cleartext h2 for `http://` endpoints, TLS with the
 * store's CA and client certificate for `https://`), one session per endpoint, kept while it works.
 * The answer's body goes to a `GrpcSink` chunk by chunk as it arrives (`unaryInto`), so a decoder that
 * skips what it does not need never holds the whole answer (a list with `maxValueBytes`).
 * The driver uses it only to list a prefix (`index.ts`, `#list`): the JSON gateway marshals a large
 * range answer far more slowly than gRPC sends it (test/bench/etcd-transport.bench.ts). Nothing here
 * decides what a failure means: the driver then lists through the gateway, whose errors are the
 * driver's errors. Protocol knowledge is in `grpc-codec.ts`.
 */
import { readFileSync } from "node:fs";
import http2 from "node:http2";
import { StoreError, StoreErrorCode, UnavailableError } from "../errors.ts";
import type { StoreOptions } from "../store.ts";

/** Flow-control window: a 20,000-lease answer (≈ 2.6 MB) arrives without waiting on window updates. */
const WINDOW_BYTES = 16 * 1024 * 1024;

/** A gRPC answer with a status other than OK: the server speaks gRPC but refused the call. */
export class GrpcStatusError extends StoreError {
  readonly status: number;
  /** The server's `grpc-message`. */
  readonly detail: string;

  constructor(endpoint: string, method: string, status: number, detail: string) {
    super(
      StoreErrorCode.Protocol,
      `etcd at ${endpoint} answered ${method} with gRPC status ${status}: ${detail}`,
      {
        endpoint,
      },
    );
    this.name = "GrpcStatusError";
    this.status = status;
    this.detail = detail;
  }
}

export interface UnaryOptions {
  /** The etcd auth token (sent as the `token` metadata etcd reads), if the store authenticates. */
  readonly token?: string | undefined;
  readonly signal: AbortSignal;
  readonly timeoutMs: number;
}

/**
 * Receives the body of an answer (still framed) as it arrives. `push` and `end` throw a StoreError
 * for an answer they cannot decode: the call then ends at once with that error.
 */
export interface GrpcSink<T> {
  push(chunk: Uint8Array): void;
  /** The body is complete and the call succeeded: the decoded answer. */
  end(): T;
}

/** Collects the whole body (for callers that decode it in one piece). */
class BodySink implements GrpcSink<Uint8Array> {
  readonly #chunks: Uint8Array[] = [];
  #size = 0;

  push(chunk: Uint8Array): void {
    this.#chunks.push(chunk);
    this.#size += chunk.length;
  }

  end(): Uint8Array {
    return this.#chunks.length === 1
      ? (this.#chunks[0] as Uint8Array)
      : Buffer.concat(this.#chunks, this.#size);
  }
}

export class GrpcSessions {
  readonly #tls: StoreOptions["tls"];
  readonly #sessions = new Map<string, { session: http2.ClientHttp2Session; calls: number }>();
  #closed = false;

  constructor(tls: StoreOptions["tls"]) {
    this.#tls = tls;
  }

  /** `unaryInto` collecting the answer's whole body (still framed). */
  unary(endpoint: string, method: string, framed: Uint8Array, options: UnaryOptions): Promise<Uint8Array> {
    return this.unaryInto(endpoint, method, framed, options, new BodySink());
  }

  /**
   * Sends one request message (already framed) to `method` on `endpoint`, pushes the answer's body
   * into `sink` as it arrives (only from an HTTP 200 answer: other bodies are dropped unread) and
   * resolves with `sink.end()` once the call ended with status OK. Rejects with a StoreError:
   * Unavailable when no answer came (refused, reset, timed out), `GrpcStatusError` for a gRPC status
   * other than OK, Protocol for an answer that is no gRPC answer at all, or what the sink threw (the
   * stream is then canceled).
   */
  unaryInto<T>(
    endpoint: string,
    method: string,
    framed: Uint8Array,
    options: UnaryOptions,
    sink: GrpcSink<T>,
  ): Promise<T> {
    if (this.#closed)
      return Promise.reject(new StoreError(StoreErrorCode.Closed, "the etcd store is closed"));
    let entry: { session: http2.ClientHttp2Session; calls: number };
    try {
      entry = this.#session(endpoint);
    } catch (err) {
      return Promise.reject(new UnavailableError(endpoint, `gRPC: ${describe(err)}`, { cause: err }));
    }
    return new Promise((resolve, reject) => {
      entry.calls++;
      entry.session.ref();
      const headers: http2.OutgoingHttpHeaders = {
        ":method": "POST",
        ":path": method,
        "content-type": "application/grpc",
        te: "trailers",
      };
      if (options.token !== undefined) headers.token = options.token;
      const stream = entry.session.request(headers);
      let httpStatus = 0;
      let grpcStatus: string | undefined;
      let grpcMessage = "";
      let settled = false;
      const finish = (err: unknown) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        options.signal.removeEventListener("abort", onAbort);
        if (--entry.calls === 0) entry.session.unref();
        if (err !== undefined) {
          if (!stream.closed) stream.close(http2.constants.NGHTTP2_CANCEL);
          reject(err);
          return;
        }
        try {
          resolve(sink.end());
        } catch (failure) {
          reject(failure);
        }
      };
      const onAbort = () =>
        finish(new UnavailableError(endpoint, `gRPC ${method}: aborted`, { cause: options.signal.reason }));
      const timer = setTimeout(
        () =>
          finish(new UnavailableError(endpoint, `gRPC ${method}: no answer within ${options.timeoutMs} ms`)),
        options.timeoutMs,
      );
      if (options.signal.aborted) {
        onAbort();
        return;
      }
      options.signal.addEventListener("abort", onAbort, { once: true });
      const note = (h: http2.IncomingHttpHeaders & http2.IncomingHttpStatusHeader) => {
        if (typeof h[":status"] === "number") httpStatus = h[":status"];
        const status = h["grpc-status"];
        if (typeof status === "string") grpcStatus = status;
        const message = h["grpc-message"];
        if (typeof message === "string") grpcMessage = safeDecode(message);
      };
      stream.on("response", note);
      stream.on("trailers", note);
      stream.on("data", (chunk: Buffer) => {
        if (settled || httpStatus !== 200) return;
        try {
          sink.push(chunk);
        } catch (err) {
          finish(err);
        }
      });
      stream.on("error", (err: unknown) =>
        finish(new UnavailableError(endpoint, `gRPC ${method}: ${describe(err)}`, { cause: err })),
      );
      stream.on("close", () => {
        if (grpcStatus === "0" && httpStatus === 200) finish(undefined);
        else if (grpcStatus !== undefined)
          finish(new GrpcStatusError(endpoint, method, Number(grpcStatus), grpcMessage));
        else
          finish(
            new StoreError(
              StoreErrorCode.Protocol,
              `etcd at ${endpoint} answered ${method} without a gRPC status (HTTP ${httpStatus || "none"}): not a gRPC server?`,
              { endpoint },
            ),
          );
      });
      stream.end(framed);
    });
  }

  /** Closes every session. Idempotent; later calls reject. */
  close(): void {
    this.#closed = true;
    for (const { session } of this.#sessions.values()) session.destroy();
    this.#sessions.clear();
  }

  #session(endpoint: string): { session: http2.ClientHttp2Session; calls: number } {
    const known = this.#sessions.get(endpoint);
    if (known !== undefined && !known.session.closed && !known.session.destroyed) return known;
    const tls = this.#tls;
    // The files are read for each new session, so renewed certificates are used without a restart.
    const options: http2.SecureClientSessionOptions = {
      settings: { initialWindowSize: WINDOW_BYTES },
      ...(tls?.caFile === undefined ? {} : { ca: readFileSync(tls.caFile) }),
      ...(tls?.certFile === undefined || tls.keyFile === undefined
        ? {}
        : { cert: readFileSync(tls.certFile), key: readFileSync(tls.keyFile) }),
    };
    const session = http2.connect(endpoint, options);
    const entry = { session, calls: 0 };
    const forget = () => {
      if (this.#sessions.get(endpoint) === entry) this.#sessions.delete(endpoint);
    };
    // Errors also reach the streams using the session; the session itself is just dropped.
    session.on("error", forget);
    session.on("close", forget);
    session.on("goaway", forget);
    session.on("connect", () => session.setLocalWindowSize(WINDOW_BYTES));
    session.unref();
    this.#sessions.set(endpoint, entry);
    return entry;
  }
}

function describe(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const code = (err as Error & { code?: unknown }).code;
  return typeof code === "string" && !err.message.includes(code) ? `${code}: ${err.message}` : err.message;
}

function safeDecode(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}
