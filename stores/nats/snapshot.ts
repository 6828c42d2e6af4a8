/**
 * Consistent snapshots of a subject filter, for `list` and the expiry sweeper: the last message of
 * every matching subject, at a revision from which a watch misses nothing.
 *
 * A consumer reads every message matching the filter (with history 1, the last one of each subject).
 * Its pending counts are only trustworthy while nothing changes: measured on 2.9.10 and 2.15.2, a
 * message superseded before its delivery is skipped and the count can reach zero without the newer
 * message (or never reach it); a last-per-subject consumer has the same flaw. So the stream's last
 * sequence is read before and after the scan:
 * - unchanged: the scan saw exactly the state at that sequence;
 * - changed: every message written meanwhile is read (unfiltered, so consecutive sequences prove none
 *   is missing) and applied in order, which repairs whatever the scan skipped; the snapshot then
 *   stands at the later sequence. A message already gone (superseded again) means another try (a
 *   few, then UnavailableError).
 */
import { ClosedError, type StoreError, UnavailableError } from "../errors.ts";
import type { NatsClient } from "./client.ts";
import { boundRecord, type RawRecord, subjectMatches } from "./codec.ts";
import type { Feed, FeedItem, FeedOptions } from "./feed.ts";

/** The last message of every subject under a filter, consistent at `revision`. */
export interface Snapshot {
  readonly records: readonly RawRecord[];
  readonly revision: bigint;
}

/** Idle heartbeat of snapshot consumers: after this much silence, ask whether anything is pending. */
const SNAPSHOT_HEARTBEAT_MS = 250;
/** Snapshots taken before giving up on keys that change during every one of them. */
const SNAPSHOT_ATTEMPTS = 5;

/**
 * See the file header. A payload over `maxValueBytes` is dropped as its message arrives
 * (`boundRecord`), so a snapshot of large values never holds them.
 */
export async function takeSnapshot(
  client: NatsClient,
  filter: string,
  headersOnly: boolean,
  signal: AbortSignal | undefined,
  maxValueBytes?: number | undefined,
): Promise<Snapshot> {
  for (let attempt = 1; ; attempt++) {
    const before = (await client.streamBounds()).last;
    const latest = await scan(client, filter, headersOnly, signal, maxValueBytes);
    const after = (await client.streamBounds()).last;
    if (after === before) return { records: [...latest.values()], revision: before };
    const changes = await replay(client, before, after, headersOnly, signal, maxValueBytes);
    if (changes !== undefined) {
      for (const record of changes) {
        const known = latest.get(record.subject);
        if (subjectMatches(record.subject, filter) && (known === undefined || known.seq < record.seq)) {
          latest.set(record.subject, record);
        }
      }
      return { records: [...latest.values()], revision: after };
    }
    if (attempt >= SNAPSHOT_ATTEMPTS) {
      throw new UnavailableError(
        client.endpoint,
        `the keys under ${filter} changed too fast to list them (${SNAPSHOT_ATTEMPTS} attempts)`,
      );
    }
    client.logger?.debug("nats: keys changed while being listed; listing again", { filter, attempt });
  }
}

/**
 * The last message of every subject under `filter`, read with one consumer until it delivered as
 * many as it counted at creation, or it falls idle with nothing pending (its info, asked after an
 * idle heartbeat). May miss keys written meanwhile (see above).
 */
async function scan(
  client: NatsClient,
  filter: string,
  headersOnly: boolean,
  signal: AbortSignal | undefined,
  maxValueBytes: number | undefined,
): Promise<Map<string, RawRecord>> {
  const latest = new Map<string, RawRecord>();
  let received = 0;
  await consume(
    client,
    { stream: client.stream, filter, start: "all", headersOnly },
    signal,
    (item, feed) => {
      if (item.type === "heartbeat") return "idle";
      received += 1;
      latest.set(item.record.subject, boundRecord(item.record, maxValueBytes));
      // Not `pending === 0`: that count goes wrong when messages are superseded during the scan.
      // Deliveries come in sequence order, so once as many arrived as the consumer counted, every
      // message it counted that still exists has arrived.
      return received >= feed.numPending ? "done" : "more";
    },
    (feed) => received >= feed.numPending,
  );
  return latest;
}

/** Every message with a sequence in (`after`, `upTo`], or undefined when one is gone already. */
async function replay(
  client: NatsClient,
  after: bigint,
  upTo: bigint,
  headersOnly: boolean,
  signal: AbortSignal | undefined,
  maxValueBytes: number | undefined,
): Promise<RawRecord[] | undefined> {
  const records: RawRecord[] = [];
  let hole = false;
  await consume(
    client,
    { stream: client.stream, start: { seq: after + 1n }, headersOnly },
    signal,
    (item) => {
      const expected = after + 1n + BigInt(records.length);
      // Idle before reaching `upTo`, or a sequence skipped: a message was removed before delivery.
      if (item.type === "heartbeat" || item.record.seq !== expected) {
        hole = true;
        return "done";
      }
      records.push(boundRecord(item.record, maxValueBytes));
      return item.record.seq >= upTo ? "done" : "more";
    },
    () => false,
  );
  return hole ? undefined : records;
}

/**
 * Runs one consumer until `decide` says "done" (or, for "idle" after an idle heartbeat, the
 * consumer's info shows nothing pending), within the request time limit.
 */
async function consume(
  client: NatsClient,
  options: Omit<FeedOptions, "heartbeatMs">,
  signal: AbortSignal | undefined,
  decide: (item: Exclude<FeedItem, { type: "error" }>, feed: Feed) => "more" | "done" | "idle",
  doneAtStart: (feed: Feed) => boolean,
): Promise<void> {
  let finish: (error?: StoreError) => void = () => undefined;
  const done = new Promise<void>((resolve, reject) => {
    finish = (error) => (error === undefined ? resolve() : reject(error));
  });
  let complete = false;
  const end = (error?: StoreError) => {
    if (complete) return;
    complete = true;
    finish(error);
  };
  const what =
    options.filter ??
    (typeof options.start === "object" ? `${client.stream} from ${options.start.seq}` : client.stream);
  let feed: Feed | undefined;
  const early: Exclude<FeedItem, { type: "error" }>[] = [];
  const handle = (item: FeedItem) => {
    if (complete) return;
    if (item.type === "error")
      return end(new UnavailableError(client.endpoint, `reading ${what} failed: ${item.reason}`));
    if (feed === undefined) {
      early.push(item);
      return;
    }
    const verdict = decide(item, feed);
    if (verdict === "done") end();
    if (verdict === "idle") {
      const name = feed.name;
      client
        .consumerPending(name)
        .then((pending) => pending === 0 && end())
        .catch((err: unknown) => end(client.fault(err)));
    }
  };
  feed = await client.feed({ ...options, heartbeatMs: SNAPSHOT_HEARTBEAT_MS }, handle);
  for (const item of early.splice(0)) handle(item);
  if (doneAtStart(feed)) end();
  const timer = setTimeout(
    () =>
      end(new UnavailableError(client.endpoint, `reading ${what} took longer than ${client.timeoutMs} ms`)),
    client.timeoutMs,
  );
  const onAbort = () => end(new ClosedError("nats"));
  signal?.addEventListener("abort", onAbort, { once: true });
  try {
    await done;
  } finally {
    clearTimeout(timer);
    signal?.removeEventListener("abort", onAbort);
    feed.stop();
  }
}
