/**
 * One ephemeral JetStream push consumer and the subscription it delivers to: the one way the driver
 * reads many messages (list snapshots, the sweeper's scan, watches). No acks (`ack_policy: none`),
 * flow control answered, idle heartbeats reported, and each message turned into a `RawRecord` with the
 * stream sequence, timestamp and pending count from its reply subject. The consumer lives in memory on
 * one replica; `stop()` deletes it (and the server drops it by itself once nobody listens).
 */
import type { ConsumerConfig } from "@nats-io/jetstream";
import type { Msg, NatsConnection } from "@nats-io/transport-node";
import type { Connected } from "./client.ts";
import { parseAckSubject, type RawRecord } from "./codec.ts";

/** What a feed hands its owner, in delivery order. */
export type FeedItem =
  | { readonly type: "record"; readonly record: RawRecord; readonly pending: number }
  /** The server's idle heartbeat: `lastStreamSeq` is the last stream sequence it delivered. */
  | { readonly type: "heartbeat"; readonly lastStreamSeq: bigint }
  /** The consumer or subscription failed (deleted, leadership lost, subscription error). */
  | { readonly type: "error"; readonly reason: string };

export interface FeedOptions {
  readonly stream: string;
  /** Full subject filter; absent for every message of the stream. */
  readonly filter?: string | undefined;
  /** Start at a stream sequence, or with the first message of the stream. */
  readonly start: { readonly seq: bigint } | "all";
  readonly headersOnly?: boolean | undefined;
  readonly heartbeatMs: number;
}

export interface Feed {
  /** The consumer's name, for `consumers.info`. */
  readonly name: string;
  /** Messages the consumer had to deliver when it was created. */
  readonly numPending: number;
  /** Unsubscribes and deletes the consumer (best effort). Idempotent. */
  stop(): void;
}

/** Creates the consumer; `onItem` is called synchronously for every delivery, also before this resolves. */
export async function openFeed(
  { lib, nc, jsm }: Connected,
  options: FeedOptions,
  onItem: (item: FeedItem) => void,
): Promise<Feed> {
  const { AckPolicy, DeliverPolicy } = lib.jetstream;
  const inbox = lib.transport.createInbox();
  let stopped = false;
  const sub = nc.subscribe(inbox, {
    callback: (err, msg) => {
      if (stopped) return;
      if (err !== null) {
        onItem({ type: "error", reason: err.message });
        return;
      }
      const item = toItem(nc, msg);
      if (item !== undefined) onItem(item);
    },
  });
  const config: Partial<ConsumerConfig> = {
    deliver_subject: inbox,
    ack_policy: AckPolicy.None,
    flow_control: true,
    idle_heartbeat: lib.transport.nanos(options.heartbeatMs),
    mem_storage: true,
    num_replicas: 1,
    ...(options.filter === undefined ? {} : { filter_subject: options.filter }),
    ...(options.headersOnly === true ? { headers_only: true } : {}),
    ...(options.start === "all"
      ? { deliver_policy: DeliverPolicy.All }
      : { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: Number(options.start.seq) }),
  };
  let name: string;
  let numPending: number;
  try {
    const info = await jsm.consumers.add(options.stream, config);
    name = info.name;
    numPending = info.num_pending;
  } catch (err) {
    stopped = true;
    sub.unsubscribe();
    throw err;
  }
  return {
    name,
    numPending,
    stop() {
      if (stopped) return;
      stopped = true;
      sub.unsubscribe();
      if (!nc.isClosed() && !nc.isDraining())
        jsm.consumers.delete(options.stream, name).catch(() => undefined);
    },
  };
}

function toItem(nc: NatsConnection, msg: Msg): FeedItem | undefined {
  const headers = msg.headers;
  const code = headers?.code ?? 0;
  if (code !== 0 && msg.data.length === 0) {
    if (code === 100) {
      const description = headers?.description.toLowerCase() ?? "";
      if (description.includes("flow")) {
        msg.respond();
        return undefined;
      }
      const last = headers?.get("Nats-Last-Stream") ?? "";
      // A stalled consumer asks to be poked at this subject (nats.js issue 374).
      const stalled = headers?.get("Nats-Consumer-Stalled") ?? "";
      if (stalled !== "") nc.publish(stalled);
      return { type: "heartbeat", lastStreamSeq: /^\d+$/.test(last) ? BigInt(last) : 0n };
    }
    return { type: "error", reason: `${code} ${headers?.description ?? ""}`.trim() };
  }
  const delivery = parseAckSubject(msg.reply ?? "");
  if (delivery === undefined) {
    return { type: "error", reason: `a message on ${msg.subject} has no JetStream reply subject` };
  }
  const record: RawRecord = {
    subject: msg.subject,
    seq: delivery.streamSeq,
    timeMs: delivery.timeMs,
    header: (name) => headers?.get(name) ?? "",
    data: msg.data,
  };
  return { type: "record", record, pending: delivery.pending };
}
