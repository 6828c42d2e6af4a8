// The request path of Netlink against a scripted in-memory kernel (a fake Transport): batching,
// sequence-number matching, per-route failures, overruns, timeouts, interrupted dumps, lookups.
import { describe, expect, test } from "bun:test";
import { isWeftError } from "../../src/errors.ts";
import { MessageWriter, parseMessages, Reader } from "../../src/netlink/codec.ts";
import { decodeRoute, encodeRoute } from "../../src/netlink/codec-route.ts";
import { NLM_F, NLMSG, RTM } from "../../src/netlink/constants.ts";
import { NetlinkError } from "../../src/netlink/errors.ts";
import { Netlink, RTPROT_WEFT } from "../../src/netlink/netlink.ts";
import type { Datagram, RecvManyResult, RecvResult, Transport } from "../../src/netlink/transport.ts";
import type { Route } from "../../src/netlink/types.ts";

const EAGAIN = 11;
const ENOBUFS = 105;

interface Request {
  readonly type: number;
  readonly flags: number;
  readonly seq: number;
  readonly reader: Reader;
  readonly offset: number;
  readonly end: number;
}

function ack(seq: number, type: number, errno: number): Uint8Array {
  const w = new MessageWriter(new Uint8Array(64));
  w.begin(NLMSG.ERROR, NLM_F.CAPPED, seq).i32(-errno);
  w.u32(36).u16(type).u16(0).u32(seq).u32(0); // echoed request header
  w.end();
  return w.bytes().slice();
}

function done(seq: number): Uint8Array {
  const w = new MessageWriter(new Uint8Array(64));
  w.begin(NLMSG.DONE, NLM_F.MULTI, seq).i32(0);
  w.end();
  return w.bytes().slice();
}

/** Dump parts as the kernel sends them: RTM_NEWROUTE messages (rtmsg + attrs), then NLMSG_DONE. */
function routeDump(seq: number, routes: readonly Route[], interrupted: boolean): Uint8Array[] {
  const w = new MessageWriter(new Uint8Array(1 << 16));
  const flags = NLM_F.MULTI | (interrupted ? NLM_F.DUMP_INTR : 0);
  for (const route of routes) encodeRoute(w, RTM.NEWROUTE, flags & ~NLM_F.REQUEST, seq, route);
  return [w.bytes().slice(), done(seq)];
}

/** A kernel whose answer to each request is scripted; it records every datagram sent. */
class FakeKernel implements Transport {
  readonly portId = 4242;
  readonly receiveBufferBytes = 8 * 1024 * 1024;
  readonly sends: number[] = [];
  queue: Uint8Array[] = [];
  /** When set, recvMany delivers this many datagrams, then fails once with ENOBUFS, dropping the rest. */
  overrunAfter: number | undefined;
  closed = false;
  #overrun = false;

  constructor(readonly answer: (request: Request) => Uint8Array[]) {}

  send(bytes: Uint8Array): void {
    if (this.closed) throw new NetlinkError("send", 9);
    const reader = new Reader(bytes.slice());
    const messages = parseMessages(reader);
    this.sends.push(messages.length);
    for (const m of messages) this.queue.push(...this.answer({ ...m, reader }));
  }

  recv(_flags: number): RecvResult {
    const data = this.queue.shift();
    return data === undefined ? { ok: false, errno: EAGAIN } : { ok: true, data, truncated: false };
  }

  recvMany(_flags: number): RecvManyResult {
    if (this.overrunAfter !== undefined && this.queue.length > this.overrunAfter) {
      // The kernel dropped everything past the first `overrunAfter` acks; recv reports that once.
      this.queue = this.queue.slice(0, this.overrunAfter);
      this.overrunAfter = undefined;
      this.#overrun = true;
    }
    if (this.queue.length === 0) {
      if (!this.#overrun) return { ok: false, errno: EAGAIN };
      this.#overrun = false;
      return { ok: false, errno: ENOBUFS };
    }
    const datagrams = this.queue.splice(0, 128).map((data): Datagram => ({ data, truncated: false }));
    return { ok: true, datagrams };
  }

  close(): void {
    this.closed = true;
  }
}

const routeOf = (r: Request) => decodeRoute(r.reader, { ...r, pid: 0 });

const routes = (n: number): Route[] =>
  Array.from({ length: n }, (_, i) => ({
    dst: `10.${i >> 8}.${i & 255}.0/24`,
    gateway: "172.17.42.2",
    oif: 3,
    protocol: RTPROT_WEFT,
  }));

describe("netlink channel", () => {
  test("netlink - routeReplace batches routes and matches out-of-order acks by sequence number", async () => {
    const kernel = new FakeKernel((r) => {
      const errno = routeOf(r).dst === "10.0.7.0/24" ? 101 : 0;
      return [ack(r.seq, r.type, errno)];
    });
    // Deliver each batch's acks in reverse order: matching must not depend on order.
    const recvMany = kernel.recvMany.bind(kernel);
    kernel.recvMany = (flags) => {
      kernel.queue.reverse();
      return recvMany(flags);
    };
    const nl = new Netlink(kernel, { batchSize: 1000 });
    const input = routes(2500);
    const result = await nl.routeReplace(input);
    expect(kernel.sends).toEqual([1000, 1000, 500]);
    expect(result.applied).toBe(2499);
    expect(result.failures).toHaveLength(1);
    expect(result.failures[0]?.route).toBe(input[7] as Route);
    expect(result.failures[0]?.errno).toBe(101);
    expect(result.failures[0]?.errnoName).toBe("ENETUNREACH");
    expect(result.failures[0]?.message).toContain("ip route replace 10.0.7.0/24 via 172.17.42.2");
  });

  test("netlink - a route with invalid text fails alone with EINVAL and is never sent", async () => {
    const sent: string[] = [];
    const kernel = new FakeKernel((r) => {
      sent.push(routeOf(r).dst);
      return [ack(r.seq, r.type, 0)];
    });
    const nl = new Netlink(kernel);
    const result = await nl.routeReplace([
      { dst: "10.1.0.0/24", gateway: "172.17.42.2" },
      { dst: "10.2.0.0/24", gateway: "not-an-ip" },
      { dst: "10.3.0.0/24", gateway: "172.17.42.2" },
    ]);
    expect(sent).toEqual(["10.1.0.0/24", "10.3.0.0/24"]);
    expect(result.applied).toBe(2);
    expect(result.failures.map((f) => [f.route.dst, f.errnoName])).toEqual([["10.2.0.0/24", "EINVAL"]]);
  });

  test("netlink - acks lost to an overrun are reported per route as ENOBUFS", async () => {
    const kernel = new FakeKernel((r) => [ack(r.seq, r.type, 0)]);
    kernel.overrunAfter = 3;
    const nl = new Netlink(kernel);
    const result = await nl.routeDelete(routes(10));
    expect(result.applied).toBe(3);
    expect(result.failures).toHaveLength(7);
    expect(new Set(result.failures.map((f) => f.errnoName))).toEqual(new Set(["ENOBUFS"]));
    expect(result.failures[0]?.message).toContain("outcome is unknown");
    // The channel recovers: the next batch is acked normally.
    expect((await nl.routeDelete(routes(2))).applied).toBe(2);
  });

  test("netlink - acks that never come fail the routes with ETIMEDOUT instead of hanging", async () => {
    const kernel = new FakeKernel(() => []);
    const nl = new Netlink(kernel, { timeoutMs: 30 });
    const result = await nl.routeReplace(routes(2));
    expect(result.applied).toBe(0);
    expect(result.failures.map((f) => f.errnoName)).toEqual(["ETIMEDOUT", "ETIMEDOUT"]);
  });

  test("netlink - an interrupted dump is retried once; interrupted twice is flagged", async () => {
    const table = routes(3);
    let dumps = 0;
    let interruptions = 1;
    const kernel = new FakeKernel((r) => {
      expect(r.type).toBe(RTM.GETROUTE);
      expect(r.flags & NLM_F.DUMP).toBe(NLM_F.DUMP);
      dumps++;
      return routeDump(r.seq, table, interruptions-- > 0);
    });
    const nl = new Netlink(kernel);
    const once = await nl.routeList();
    expect(dumps).toBe(2);
    expect(once.interrupted).toBe(false);
    expect(once.items.map((r) => r.dst)).toEqual(table.map((r) => r.dst));

    dumps = 0;
    interruptions = 5;
    const twice = await nl.routeList();
    expect(dumps).toBe(2);
    expect(twice.interrupted).toBe(true);
    expect(twice.items).toHaveLength(3);
  });

  test("netlink - a dump that fails midway is rejected and leaves the socket usable", async () => {
    const table = routes(4);
    let broken = true;
    const kernel = new FakeKernel((r) => {
      const [parts, end] = routeDump(r.seq, table, false);
      if (!broken || parts === undefined || end === undefined) return routeDump(r.seq, table, false);
      broken = false;
      // A part whose first message claims more bytes than the datagram holds, then the rest of the dump.
      const bad = parts.slice(0, 40);
      return [parts, bad, parts, end];
    });
    const nl = new Netlink(kernel);
    const error = await nl.routeList().catch((err: unknown) => err);
    expect((error as NetlinkError).errnoName).toBe("EPROTO");
    expect(kernel.queue).toEqual([]);
    expect((await nl.routeList()).items).toHaveLength(4);
  });

  test("netlink - routeList filters table, protocol and oif in user space", async () => {
    const table: Route[] = [
      { dst: "10.1.0.0/24", gateway: "172.17.42.2", oif: 3, protocol: RTPROT_WEFT },
      { dst: "10.2.0.0/24", gateway: "172.17.42.2", oif: 3, protocol: 4 },
      { dst: "10.3.0.0/24", gateway: "172.17.42.2", oif: 5, protocol: RTPROT_WEFT },
      { dst: "10.4.0.0/24", gateway: "172.17.42.2", oif: 3, protocol: RTPROT_WEFT, table: 100 },
    ];
    const nl = new Netlink(new FakeKernel((r) => routeDump(r.seq, table, false)));
    const dsts = async (filter: Parameters<Netlink["routeList"]>[0]) =>
      (await nl.routeList(filter)).items.map((r) => r.dst);
    expect(await dsts({})).toEqual(["10.1.0.0/24", "10.2.0.0/24", "10.3.0.0/24"]);
    expect(await dsts({ protocol: RTPROT_WEFT })).toEqual(["10.1.0.0/24", "10.3.0.0/24"]);
    expect(await dsts({ protocol: RTPROT_WEFT, oif: 3 })).toEqual(["10.1.0.0/24"]);
    expect(await dsts({ table: 100 })).toEqual(["10.4.0.0/24"]);
    expect(await dsts({ table: 0 })).toHaveLength(4);
  });

  test("netlink - linkByName is undefined for ENODEV and throws a NetlinkError for EPERM", async () => {
    let errno = 19;
    const nl = new Netlink(new FakeKernel((r) => [ack(r.seq, r.type, errno)]));
    expect(await nl.linkByName("nope0")).toBeUndefined();
    errno = 1;
    const error = await nl.linkByName("eth0").catch((err: unknown) => err);
    expect(error).toBeInstanceOf(NetlinkError);
    expect((error as NetlinkError).errnoName).toBe("EPERM");
    expect((error as NetlinkError).code).toBe("NETLINK");
    expect(isWeftError(error, "NETLINK")).toBe(true);
    expect((error as NetlinkError).message).toContain("ip link show dev eth0");
  });

  test("netlink - linkSetUp rejects with the kernel's errno; a closed handle rejects with EBADF", async () => {
    const kernel = new FakeKernel((r) => [ack(r.seq, r.type, 19)]);
    const nl = new Netlink(kernel);
    const error = await nl.linkSetUp(9).catch((err: unknown) => err);
    expect((error as NetlinkError).errnoName).toBe("ENODEV");
    await nl.close();
    expect(kernel.closed).toBe(true);
    const closed = await nl.routeReplace(routes(1)).catch((err: unknown) => err);
    expect((closed as NetlinkError).errnoName).toBe("EBADF");
  });
});
