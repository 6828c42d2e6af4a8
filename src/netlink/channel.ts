/**
 * Conversations with the kernel over one request socket: batches of many messages per send with
 * acks matched by sequence number, dumps (multipart replies up to NLMSG_DONE, retried once when the
 * kernel flags NLM_F_DUMP_INTR), and single requests. One operation runs at a time; the next waits.
 *
 * rtnetlink handles a request inside the sender's `send` call, so every ack of a batch is queued before
 * `send` returns, and each dump part is produced inside the `recv` that makes room for it. Receives are
 * therefore non-blocking (MSG_DONTWAIT); an EAGAIN while replies are still owed means something went
 * wrong, and is waited out asynchronously, never by blocking the JS thread, up to a deadline.
 */
import {
  isDone,
  isInterrupted,
  MessageWriter,
  parseError,
  parseMessages,
  type RawMessage,
  Reader,
} from "./codec.ts";
import { NLMSG, SIZE } from "./constants.ts";
import { NetlinkError } from "./errors.ts";
import { Errno, MSG_DONTWAIT, type Transport } from "./transport.ts";

/** Shared by every channel: filled and sent without an `await` in between, so never interleaved. */
const requestBuffer = new Uint8Array(1024 * 1024);
/** A batch is sent once it holds this many bytes (well under the socket's send buffer). */
const BATCH_BYTES = 192 * 1024;
/** Receive-buffer bytes budgeted per awaited ack (an ack skb's true size is under 1 KiB). */
const BYTES_PER_ACK = 2048;
/** struct nlmsgerr: int error + the echoed nlmsghdr. */
const ERROR_REPLY_MIN = 4 + SIZE.NLMSGHDR;

/** A dump's items, and whether it was still inconsistent after one retry (NLM_F_DUMP_INTR). */
export interface ListResult<T> {
  readonly items: T[];
  /** True when the kernel changed the table during both attempts: items may be incomplete. */
  readonly interrupted: boolean;
}

/** One failed item of a batch. */
export interface ItemFailure<T> {
  readonly item: T;
  readonly error: NetlinkError;
}

export interface BatchOutcome<T> {
  readonly applied: number;
  readonly failures: ItemFailure<T>[];
}

export interface ChannelOptions {
  /**
   * Most messages per send; default 64, lowered to what the receive buffer can hold in acks. The kernel
   * handles a whole batch inside the synchronous send: 1,024 inline-gateway routes held the JS thread
   * for up to 170 ms at 5,000 peers (an agent's firewall commands next to it were seen done that late),
   * and 64 per send took the same route time (test/bench/firewall-start.bench.ts).
   */
  readonly batchSize?: number;
  /** How long to wait for replies that should already be there; default 5 s. */
  readonly timeoutMs?: number;
}

const yieldToEventLoop = () => new Promise<void>((resolve) => setImmediate(resolve));

export class Channel {
  readonly #transport: Transport;
  readonly #writer = new MessageWriter(requestBuffer);
  readonly #batchSize: number;
  readonly #timeoutMs: number;
  #seq = 0;
  #tail: Promise<unknown> = Promise.resolve();
  #closed = false;

  constructor(transport: Transport, options: ChannelOptions = {}) {
    this.#transport = transport;
    const fits = Math.max(16, Math.floor(transport.receiveBufferBytes / BYTES_PER_ACK));
    this.#batchSize = Math.min(options.batchSize ?? 64, fits);
    this.#timeoutMs = options.timeoutMs ?? 5000;
  }

  /** The port id of the request socket. */
  get portId(): number {
    return this.#transport.portId;
  }

  /** Messages per send this channel uses. */
  get batchSize(): number {
    return this.#batchSize;
  }

  /**
   * Sends one request per item, `batchSize` per datagram, each with NLM_F_ACK, and collects every
   * ack. `encode` writes the request for an item (its errors, e.g. EINVAL for bad text, fail that item
   * only); `describe` names the item in iproute2 terms for error messages.
   */
  batch<T>(
    items: readonly T[],
    encode: (w: MessageWriter, seq: number, item: T) => void,
    describe: (item: T) => string,
  ): Promise<BatchOutcome<T>> {
    return this.#exclusive(async () => {
      const failures: ItemFailure<T>[] = [];
      let applied = 0;
      const pending = new Map<number, T>();
      const flush = async () => {
        if (pending.size === 0) return;
        try {
          this.#transport.send(this.#writer.bytes());
        } catch (err) {
          if (!(err instanceof NetlinkError)) throw err;
          for (const item of pending.values()) failures.push({ item, error: err });
          pending.clear();
          return;
        } finally {
          this.#writer.reset();
        }
        const lost = await this.#collect(pending, (seq, errno, kernelMessage) => {
          const item = pending.get(seq);
          if (item === undefined) return;
          pending.delete(seq);
          if (errno === 0) applied++;
          else failures.push({ item, error: new NetlinkError(describe(item), errno, { kernelMessage }) });
        });
        const hint =
          lost === Errno.ENOBUFS
            ? "its acknowledgement was lost (socket overrun); the outcome is unknown, list to verify"
            : `no acknowledgement within ${this.#timeoutMs} ms; the outcome is unknown, list to verify`;
        for (const item of pending.values()) {
          failures.push({ item, error: new NetlinkError(describe(item), lost, { hint }) });
        }
        pending.clear();
      };
      this.#writer.reset();
      for (const item of items) {
        const seq = this.#nextSeq();
        try {
          encode(this.#writer, seq, item);
        } catch (err) {
          this.#writer.abort();
          if (!(err instanceof NetlinkError)) throw err;
          failures.push({ item, error: err });
          continue;
        }
        pending.set(seq, item);
        if (pending.size >= this.#batchSize || this.#writer.length >= BATCH_BYTES) {
          await flush();
          await yieldToEventLoop();
        }
      }
      await flush();
      return { applied, failures };
    });
  }

  /** One request with NLM_F_ACK; rejects with NetlinkError (naming `operation`) unless acked. */
  request(operation: string, encode: (w: MessageWriter, seq: number) => void): Promise<void> {
    return this.batch(
      [operation],
      (w, seq) => encode(w, seq),
      (op) => op,
    ).then(({ failures }) => {
      const failure = failures[0];
      if (failure !== undefined) throw failure.error;
    });
  }

  /**
   * A request answered by one object (RTM_GETLINK for a name). Resolves `undefined` when the kernel
   * answers with errno `absent` (e.g. ENODEV), rejects on any other error.
   */
  get<T>(
    operation: string,
    encode: (w: MessageWriter, seq: number) => void,
    decode: (r: Reader, m: RawMessage) => T,
    absent: number,
  ): Promise<T | undefined> {
    return this.#exclusive(async () => {
      const seq = this.#nextSeq();
      this.#writer.reset();
      encode(this.#writer, seq);
      this.#transport.send(this.#writer.bytes());
      this.#writer.reset();
      let result: T | undefined;
      await this.#receive(operation, (r, m) => {
        if (m.seq !== seq) return false;
        if (m.type === NLMSG.ERROR) {
          const { errno, kernelMessage } = parseError(r, m);
          if (errno === 0 || errno === absent) return true;
          throw new NetlinkError(operation, errno, { kernelMessage });
        }
        result = decode(r, m);
        return true;
      });
      return result;
    });
  }

  /**
   * A dump: sends the request `encode` writes (with NLM_F_DUMP) and decodes every reply part until
   * NLMSG_DONE. `decode` returns `undefined` for objects to leave out. An interrupted dump is retried
   * once; if the retry is interrupted too, its items come back with `interrupted: true`.
   */
  dump<T>(
    operation: string,
    encode: (w: MessageWriter, seq: number) => void,
    decode: (r: Reader, m: RawMessage) => T | undefined,
  ): Promise<ListResult<T>> {
    return this.#exclusive(async () => {
      let items: T[] = [];
      let interrupted = false;
      for (let attempt = 0; attempt < 2; attempt++) {
        items = [];
        interrupted = false;
        const seq = this.#nextSeq();
        this.#writer.reset();
        encode(this.#writer, seq);
        this.#transport.send(this.#writer.bytes());
        this.#writer.reset();
        await this.#receiveDump(seq, operation, (r, m) => {
          if (m.seq !== seq) return false;
          if (isInterrupted(m)) interrupted = true;
          if (isDone(m)) {
            const errno = m.end - m.offset >= 4 ? -r.i32(m.offset) : 0;
            if (errno > 0) throw new NetlinkError(operation, errno);
            return true;
          }
          if (m.type === NLMSG.ERROR) {
            const { errno, kernelMessage } = parseError(r, m);
            if (errno !== 0) throw new NetlinkError(operation, errno, { kernelMessage });
            return true;
          }
          const item = decode(r, m);
          if (item !== undefined) items.push(item);
          return false;
        });
        if (!interrupted) break;
      }
      return { items, interrupted };
    });
  }

  /** Closes the socket once the running operation is over; later operations reject with EBADF. */
  close(): Promise<void> {
    this.#closed = true;
    return this.#tail.then(
      () => this.#transport.close(),
      () => this.#transport.close(),
    );
  }

  #nextSeq(): number {
    this.#seq = this.#seq >= 0xffffffff ? 1 : this.#seq + 1;
    return this.#seq;
  }

  #exclusive<R>(fn: () => Promise<R>): Promise<R> {
    if (this.#closed) {
      return Promise.reject(
        new NetlinkError("netlink request", Errno.EBADF, { hint: "the netlink handle was closed" }),
      );
    }
    const run = this.#tail.then(fn, fn);
    this.#tail = run.catch(() => undefined);
    return run;
  }

  /**
   * Reads acks (many per recvmmsg) until none of `pending` is owed. Returns ENOBUFS if an overrun lost
   * some, ETIMEDOUT if they did not come in time; the items still pending are then reported by the caller.
   */
  async #collect(
    pending: ReadonlyMap<number, unknown>,
    onAck: (seq: number, errno: number, kernelMessage: string | undefined) => void,
  ): Promise<number> {
    const deadline = performance.now() + this.#timeoutMs;
    while (pending.size > 0) {
      const got = this.#transport.recvMany(MSG_DONTWAIT);
      if (!got.ok) {
        if (got.errno === Errno.ENOBUFS) {
          this.#drain(onAck);
          return Errno.ENOBUFS;
        }
        if (got.errno !== Errno.EAGAIN) throw new NetlinkError("netlink batch (recvmmsg)", got.errno);
        if (performance.now() > deadline) return Errno.ETIMEDOUT;
        await Bun.sleep(1);
        continue;
      }
      for (const datagram of got.datagrams) readAcks(datagram.data, datagram.truncated, onAck);
    }
    return 0;
  }

  /** After an overrun: reads what is still queued (acks that made it), so later operations start clean. */
  #drain(onAck: (seq: number, errno: number, kernelMessage: string | undefined) => void): void {
    for (;;) {
      const got = this.#transport.recvMany(MSG_DONTWAIT);
      if (got.ok) for (const datagram of got.datagrams) readAcks(datagram.data, datagram.truncated, onAck);
      else if (got.errno !== Errno.ENOBUFS) return;
    }
  }

  /**
   * `#receive` for a dump. If decoding fails midway, the rest of the dump is read and dropped first:
   * the kernel refuses a new dump (EBUSY) on a socket whose previous one is still being delivered.
   */
  async #receiveDump(
    seq: number,
    operation: string,
    onMessage: (r: Reader, m: RawMessage) => boolean,
  ): Promise<void> {
    try {
      await this.#receive(operation, onMessage);
    } catch (err) {
      this.#discardDump(seq);
      throw err;
    }
  }

  /** Reads and drops what is left of dump `seq`; parts are produced on each recv, so EAGAIN ends it. */
  #discardDump(seq: number): void {
    for (;;) {
      const got = this.#transport.recv(MSG_DONTWAIT);
      if (!got.ok) return;
      if (got.truncated) continue;
      const reader = new Reader(got.data);
      let messages: RawMessage[];
      try {
        messages = parseMessages(reader);
      } catch {
        continue;
      }
      if (messages.some((m) => m.seq === seq && (isDone(m) || m.type === NLMSG.ERROR))) return;
    }
  }

  /** Feeds each received message to `onMessage` until it returns true. */
  async #receive(operation: string, onMessage: (r: Reader, m: RawMessage) => boolean): Promise<void> {
    const deadline = performance.now() + this.#timeoutMs;
    for (;;) {
      const got = this.#transport.recv(MSG_DONTWAIT);
      if (!got.ok) {
        if (got.errno !== Errno.EAGAIN) throw new NetlinkError(`${operation} (recv)`, got.errno);
        if (performance.now() > deadline) {
          throw new NetlinkError(operation, Errno.ETIMEDOUT, {
            hint: `no reply within ${this.#timeoutMs} ms`,
          });
        }
        await Bun.sleep(1);
        continue;
      }
      if (got.truncated) {
        throw new NetlinkError(`${operation} (recv)`, Errno.EMSGSIZE, {
          hint: "a reply did not fit the receive buffer",
        });
      }
      const reader = new Reader(got.data);
      for (const message of parseMessages(reader)) {
        if (onMessage(reader, message)) return;
      }
    }
  }
}

/**
 * Reports every NLMSG_ERROR of a datagram. A datagram cut short by a small receive slot still has its
 * header, errno and echoed sequence number; only the extended-ack text may be missing.
 */
function readAcks(
  data: Uint8Array,
  truncated: boolean,
  onAck: (seq: number, errno: number, kernelMessage: string | undefined) => void,
): void {
  const reader = new Reader(data);
  const messages: RawMessage[] = truncated ? firstMessage(reader) : parseMessages(reader);
  for (const message of messages) {
    if (message.type !== NLMSG.ERROR || message.end - message.offset < ERROR_REPLY_MIN) continue;
    const { errno, requestSeq, kernelMessage } = parseError(reader, message);
    onAck(requestSeq, errno, kernelMessage);
  }
}

function firstMessage(reader: Reader): RawMessage[] {
  if (reader.data.length < SIZE.NLMSGHDR) return [];
  return [
    {
      type: reader.u16(4),
      flags: reader.u16(6),
      seq: reader.u32(8),
      pid: reader.u32(12),
      offset: SIZE.NLMSGHDR,
      end: reader.data.length,
    },
  ];
}
