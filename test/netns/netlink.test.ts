// The netlink layer against the real kernel. Everything that changes the kernel runs in a child
// process started inside a namespace this test creates (`ip netns exec <ns> bun <fixture>`); this
// process, in the root namespace, only starts fixtures, reads what they print and runs `ip -n <ns>`.
// Every namespace is removed in `finally`, whether the test passed or not.
import { expect, test } from "bun:test";
import { join } from "node:path";
import { RTPROT_WEFT } from "../../src/netlink/netlink.ts";
import { createSegment, type Host, type Netns } from "../../src/netns/netns.ts";
import { describeNetns, netnsUsable } from "../harness/netns.ts";

const BUN = process.execPath;
const STEPS = join(import.meta.dir, "fixtures", "netlink-steps.ts");
const MONITOR = join(import.meta.dir, "fixtures", "netlink-monitor.ts");
const ADDRESSES = ["172.31.77.1", "172.31.77.2"];
const GATEWAY = "172.31.77.2";
const PROTO = String(RTPROT_WEFT);

const usable = netnsUsable;
if (!usable)
  console.warn("netlink netns tests skipped: they need root and `ip netns` (run the suite as root)");

/** A two-host segment; the test runs on host 1 with host 2 as gateway. Removed afterwards, always. */
async function withHost(fn: (host: Host) => Promise<void>): Promise<void> {
  const segment = await createSegment("wnl", ADDRESSES, 24);
  try {
    const host = segment.hosts[0];
    if (host === undefined) throw new TypeError("createSegment returned no host");
    await fn(host);
  } finally {
    await segment.remove();
  }
}

interface StepOutput {
  readonly op: string;
  readonly result: unknown;
}

/** Runs the steps fixture inside `ns` and returns its results, one per step. */
async function steps(ns: Netns, list: readonly object[]): Promise<unknown[]> {
  const { stdout } = await ns.exec([BUN, STEPS, JSON.stringify(list)]);
  return stdout
    .trim()
    .split("\n")
    .map((line) => (JSON.parse(line) as StepOutput).result);
}

async function ipJson<T>(ns: Netns, ...args: string[]): Promise<T> {
  const { stdout } = await ns.ip("-j", ...args);
  return JSON.parse(stdout.trim() === "" ? "[]" : stdout) as T;
}

interface IpRoute {
  readonly dst: string;
  readonly gateway?: string;
  readonly dev?: string;
  readonly protocol?: string;
  readonly flags?: string[];
}

/**
 * The monitor fixture in `ns`: every JSON line it prints, and `waitFor` the first line that matches
 * (undefined after `ms`).
 */
function startMonitor(ns: Netns, stop: string) {
  const proc = ns.spawn([BUN, MONITOR, stop]);
  const lines: string[] = [];
  const pump = (async () => {
    const decoder = new TextDecoder();
    let rest = "";
    for await (const chunk of proc.stdout) {
      rest += decoder.decode(chunk, { stream: true });
      const parts = rest.split("\n");
      rest = parts.pop() ?? "";
      lines.push(...parts);
    }
  })();
  const waitFor = async (match: (line: Record<string, unknown>) => boolean, ms: number) => {
    const deadline = performance.now() + ms;
    while (performance.now() < deadline) {
      const hit = lines.find((l) => match(JSON.parse(l) as Record<string, unknown>));
      if (hit !== undefined) return JSON.parse(hit) as Record<string, unknown>;
      await Bun.sleep(5);
    }
    return undefined;
  };
  return { proc, lines, pump, waitFor };
}

const expectedDsts = (n: number) =>
  Array.from({ length: n }, (_, i) => `10.${i >> 8}.${i & 255}.0/24`).sort();
const sortedDsts = (routes: readonly IpRoute[]) => routes.map((r) => r.dst).sort();

interface BatchOut {
  readonly applied: number;
  readonly failures: { dst: string; errnoName: string; message: string }[];
}

describeNetns("netlink in a namespace", () => {
  test("netlink - routeReplace of 1,000 routes: ip route show proto 77 lists exactly them", async () => {
    await withHost(async ({ ns }) => {
      const [replace, list] = (await steps(ns, [
        { op: "routeReplace", count: 1000, gateway: GATEWAY, dev: "eth0" },
        { op: "routeList", filter: { protocol: RTPROT_WEFT } },
      ])) as [BatchOut, { items: { dst: string }[]; interrupted: boolean }];
      expect(replace).toEqual({ applied: 1000, failures: [] });
      expect(list.interrupted).toBe(false);
      expect(list.items.map((r) => r.dst).sort()).toEqual(expectedDsts(1000));
      const shown = await ipJson<IpRoute[]>(ns, "route", "show", "proto", PROTO);
      expect(sortedDsts(shown)).toEqual(expectedDsts(1000));
      expect(new Set(shown.map((r) => `${r.gateway} ${r.dev}`))).toEqual(new Set([`${GATEWAY} eth0`]));
    });
  });

  test("netlink - routeDelete removes exactly weft's routes and leaves proto static routes alone", async () => {
    await withHost(async ({ ns }) => {
      await steps(ns, [{ op: "routeReplace", count: 1000, gateway: GATEWAY, dev: "eth0" }]);
      await ns.ip("route", "add", "10.99.0.0/24", "via", GATEWAY, "proto", "static");
      await ns.ip("route", "add", "10.98.0.0/24", "via", GATEWAY, "proto", "static");
      // The last delete names a static route's prefix with weft's protocol: the kernel must refuse.
      const [deleted] = (await steps(ns, [
        {
          op: "routeDelete",
          count: 1000,
          gateway: GATEWAY,
          dev: "eth0",
          routes: [{ dst: "10.98.0.0/24", protocol: RTPROT_WEFT }],
        },
      ])) as [BatchOut];
      expect(deleted.applied).toBe(1000);
      expect(deleted.failures.map((f) => [f.dst, f.errnoName])).toEqual([["10.98.0.0/24", "ESRCH"]]);
      expect(await ipJson<IpRoute[]>(ns, "route", "show", "proto", PROTO)).toEqual([]);
      expect(sortedDsts(await ipJson<IpRoute[]>(ns, "route", "show", "proto", "static"))).toEqual([
        "10.98.0.0/24",
        "10.99.0.0/24",
      ]);
    });
  });

  test("netlink - a route via an unreachable gateway fails alone with ENETUNREACH", async () => {
    await withHost(async ({ ns }) => {
      const [result] = (await steps(ns, [
        {
          op: "routeReplace",
          count: 10,
          gateway: GATEWAY,
          dev: "eth0",
          routes: [{ dst: "10.200.0.0/24", gateway: "192.0.2.1", dev: "eth0", protocol: RTPROT_WEFT }],
        },
      ])) as [BatchOut];
      expect(result.applied).toBe(10);
      expect(result.failures.map((f) => [f.dst, f.errnoName])).toEqual([["10.200.0.0/24", "ENETUNREACH"]]);
      expect(result.failures[0]?.message).toContain("ip route replace 10.200.0.0/24 via 192.0.2.1");
      expect(sortedDsts(await ipJson<IpRoute[]>(ns, "route", "show", "proto", PROTO))).toEqual(
        expectedDsts(10),
      );
    });
  });

  test("netlink - linkList and addrList match ip -j link and ip -j addr", async () => {
    await withHost(async ({ ns }) => {
      await ns.ip("link", "add", "br9", "type", "bridge");
      await ns.ip("link", "add", "d9", "mtu", "1400", "type", "veth", "peer", "name", "d9peer");
      await ns.ip("link", "set", "d9", "master", "br9");
      await ns.ip("link", "set", "d9", "up");
      await ns.ip("addr", "add", "10.201.0.1/24", "dev", "d9");
      await ns.ip("addr", "add", "fd00:77::1/64", "dev", "d9");
      const [links, addrs] = (await steps(ns, [{ op: "linkList" }, { op: "addrList" }])) as [
        {
          items: {
            index: number;
            name: string;
            mtu: number;
            up: boolean;
            mac?: string;
            kind?: string;
            master?: number;
          }[];
        },
        { items: { index: number; family: number; address: string; prefixLen: number }[] },
      ];
      interface IpLink {
        ifindex: number;
        ifname: string;
        mtu: number;
        flags: string[];
        address?: string;
        master?: string;
        linkinfo?: { info_kind?: string };
      }
      const ipLinks = await ipJson<IpLink[]>(ns, "-d", "link", "show");
      const byName = new Map(ipLinks.map((l) => [l.ifname, l.ifindex]));
      const fromIp = ipLinks.map((l) => ({
        index: l.ifindex,
        name: l.ifname,
        mtu: l.mtu,
        up: l.flags.includes("UP"),
        mac: l.address,
        kind: l.linkinfo?.info_kind,
        master: l.master === undefined ? undefined : byName.get(l.master),
      }));
      const fromNetlink = links.items.map((l) => ({
        index: l.index,
        name: l.name,
        mtu: l.mtu,
        up: l.up,
        mac: l.mac,
        kind: l.kind,
        master: l.master,
      }));
      expect(fromNetlink).toEqual(fromIp);
      expect(fromNetlink.find((l) => l.name === "d9")).toMatchObject({ mtu: 1400, kind: "veth", up: true });
      expect(fromNetlink.find((l) => l.name === "d9")?.master).toBe(byName.get("br9"));

      interface IpAddr {
        ifindex: number;
        addr_info: { family: string; local: string; prefixlen: number }[];
      }
      const fromIpAddrs = (await ipJson<IpAddr[]>(ns, "addr", "show"))
        .flatMap((a) => a.addr_info.map((i) => `${a.ifindex} ${i.family} ${i.local}/${i.prefixlen}`))
        .sort();
      const fromNetlinkAddrs = addrs.items
        .map((a) => `${a.index} ${a.family === 2 ? "inet" : "inet6"} ${a.address}/${a.prefixLen}`)
        .sort();
      expect(fromNetlinkAddrs).toEqual(fromIpAddrs);
      expect(fromNetlinkAddrs).toContain(`${byName.get("d9")} inet6 fd00:77::1/64`);
    });
  });

  test("netlink - vxlan link, address, ARP, FDB and onlink route read back as ip and bridge show them", async () => {
    await withHost(async ({ ns, address }) => {
      const mac = "0a:0b:0c:0d:0e:0f";
      const out = await steps(ns, [
        {
          op: "linkAddVxlan",
          spec: { name: "flannel.1", id: 1, local: address, port: 8472, learning: false },
          dev: "eth0",
        },
        { op: "linkSetMtu", dev: "flannel.1", mtu: 1450 },
        { op: "linkSetUp", dev: "flannel.1" },
        { op: "addrReplace", dev: "flannel.1", address: "10.5.1.0", prefixLen: 32 },
        { op: "neighReplace", dev: "flannel.1", ip: "10.5.2.0", mac },
        { op: "fdbReplace", dev: "flannel.1", mac, dst: GATEWAY },
        {
          op: "routeReplace",
          routes: [
            {
              dst: "10.5.2.0/24",
              gateway: "10.5.2.0",
              dev: "flannel.1",
              onlink: true,
              protocol: RTPROT_WEFT,
            },
          ],
        },
        { op: "neighList", dev: "flannel.1" },
        { op: "fdbList", dev: "flannel.1" },
      ]);
      expect(out[0]).toMatchObject({
        name: "flannel.1",
        kind: "vxlan",
        vxlan: { id: 1, local: address, port: 8472 },
      });
      expect(out[6]).toEqual({ applied: 1, failures: [] });
      expect(out[7]).toMatchObject({ items: [{ ip: "10.5.2.0", mac, state: 0x80 }] });
      expect((out[8] as { items: { mac?: string; ip?: string }[] }).items).toContainEqual(
        expect.objectContaining({ mac, ip: GATEWAY }),
      );

      const [link] = await ipJson<
        {
          mtu: number;
          flags: string[];
          linkinfo: { info_kind: string; info_data: Record<string, unknown> };
        }[]
      >(ns, "-d", "link", "show", "flannel.1");
      expect(link?.mtu).toBe(1450);
      expect(link?.flags).toContain("UP");
      expect(link?.linkinfo.info_kind).toBe("vxlan");
      expect(link?.linkinfo.info_data).toMatchObject({
        id: 1,
        local: address,
        link: "eth0",
        port: 8472,
        learning: false,
      });
      expect(await ipJson<unknown[]>(ns, "-4", "addr", "show", "dev", "flannel.1")).toMatchObject([
        { addr_info: [{ local: "10.5.1.0", prefixlen: 32 }] },
      ]);
      expect(await ipJson<unknown[]>(ns, "neigh", "show", "dev", "flannel.1")).toMatchObject([
        { dst: "10.5.2.0", lladdr: mac, state: ["PERMANENT"] },
      ]);
      const { stdout: fdb } = await ns.exec(["bridge", "fdb", "show", "dev", "flannel.1"]);
      expect(fdb).toContain(`${mac} dst ${GATEWAY} self permanent`);
      expect(await ipJson<IpRoute[]>(ns, "route", "show", "dev", "flannel.1", "proto", PROTO)).toMatchObject([
        { dst: "10.5.2.0/24", gateway: "10.5.2.0", flags: ["onlink"] },
      ]);
    });
  });

  test("netlink - the monitor reports ip route del within 1 s, skips other tables, and exits after close", async () => {
    await withHost(async ({ ns }) => {
      const stop = "10.77.0.0/24";
      const { proc, lines, pump, waitFor } = startMonitor(ns, stop);
      try {
        expect(await waitFor((l) => "ready" in l, 5000)).toBeDefined();
        // Table 100 is not main: the monitor filters it out (the default), so neither change is reported.
        await ns.ip("route", "add", "10.66.0.0/24", "via", GATEWAY, "table", "100");
        await ns.ip("route", "del", "10.66.0.0/24", "table", "100");
        await ns.ip("link", "add", "wd0", "type", "bridge");
        await ns.ip("route", "add", stop, "via", GATEWAY);
        const isRoute = (action: string) => (l: Record<string, unknown>) =>
          l.type === "route" && l.action === action && (l.route as { dst?: string }).dst === stop;
        expect(await waitFor(isRoute("new"), 1000)).toBeDefined();

        const started = performance.now();
        await ns.ip("route", "del", stop);
        const deleted = await waitFor(isRoute("del"), 1000);
        const latency = performance.now() - started;
        expect(deleted).toBeDefined();
        expect(latency).toBeLessThan(1000);

        // The agent-facing adapter: route events as (route, deleted), link changes as resyncs.
        expect(
          await waitFor((l) => l.handler === "route" && l.dst === stop && l.deleted === true, 1000),
        ).toBeDefined();
        const events = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
        expect(events.some((e) => e.handler === "resync" && String(e.reason).startsWith("link wd0"))).toBe(
          true,
        );
        expect(events.some((e) => e.type === "link" && (e.link as { name?: string }).name === "wd0")).toBe(
          true,
        );
        expect(
          events.filter((e) => e.type === "route" && (e.route as { table?: number }).table !== 254),
        ).toEqual([]);
        expect(events.filter((e) => e.type === "resync")).toEqual([]);
        expect(events.filter((e) => e.handler === "route" && e.dst !== stop)).toEqual([]);

        const exited = await Promise.race([proc.exited, Bun.sleep(3000).then(() => "still running")]);
        expect(exited).toBe(0);
        await pump;
        expect(lines.at(-1)).toBe(JSON.stringify({ closed: true }));
      } finally {
        proc.kill();
        await proc.exited;
      }
    });
  });
  test("netlink - 1,000 nexthop objects and routes through them: ip nexthop and ip route show them as written", async () => {
    await withHost(async ({ ns }) => {
      const routes = Array.from({ length: 1000 }, (_, i) => ({
        dst: `10.${i >> 8}.${i & 255}.0/24`,
        nhid: i + 1,
        protocol: RTPROT_WEFT,
      }));
      const [nh, route, nhList, routeList] = (await steps(ns, [
        { op: "nexthopReplace", count: 1000, gateway: GATEWAY, dev: "eth0" },
        { op: "routeReplace", routes },
        { op: "nexthopList" },
        { op: "routeList", filter: { protocol: RTPROT_WEFT } },
      ])) as [
        BatchOut,
        BatchOut,
        { items: { id: number; gateway: string; oif: number; protocol: number }[] },
        { items: { dst: string; nhid: number; gateway: string }[] },
      ];
      expect(nh).toEqual({ applied: 1000, failures: [] });
      expect(route).toEqual({ applied: 1000, failures: [] });
      expect(nhList.items).toHaveLength(1000);
      expect(nhList.items[0]).toMatchObject({ id: 1, gateway: GATEWAY, protocol: RTPROT_WEFT });
      // The kernel reports a route through a nexthop with the nexthop's gateway (nexthop_compat_mode 1).
      expect(routeList.items.find((r) => r.dst === "10.0.5.0/24")).toMatchObject({
        nhid: 6,
        gateway: GATEWAY,
      });
      const shown = await ipJson<{ id: number; gateway: string; dev: string; protocol: string }[]>(
        ns,
        "nexthop",
        "show",
        "proto",
        PROTO,
      );
      expect(shown).toHaveLength(1000);
      expect(new Set(shown.map((n) => `${n.gateway} ${n.dev}`))).toEqual(new Set([`${GATEWAY} eth0`]));
      const text = (await ns.ip("route", "show", "10.0.5.0/24")).stdout.trim();
      expect(text).toBe(`10.0.5.0/24 nhid 6 via ${GATEWAY} dev eth0 proto ${PROTO} `.trim());
    });
  });

  test("netlink - deleting a nexthop deletes its routes; a broadcast gateway fails alone with EINVAL", async () => {
    await withHost(async ({ ns }) => {
      const [nh, , del] = (await steps(ns, [
        {
          op: "nexthopReplace",
          count: 3,
          gateway: GATEWAY,
          dev: "eth0",
          nexthops: [{ id: 9, gateway: "172.31.77.255", dev: "eth0", protocol: RTPROT_WEFT }],
        },
        {
          op: "routeReplace",
          routes: [1, 2, 3].map((id) => ({ dst: `10.9.${id}.0/24`, nhid: id, protocol: RTPROT_WEFT })),
        },
        { op: "nexthopDelete", ids: [2, 42] },
      ])) as [
        { applied: number; failures: { id: number; errnoName: string; message: string }[] },
        BatchOut,
        unknown,
      ];
      expect(nh.applied).toBe(3);
      expect(nh.failures.map((f) => [f.id, f.errnoName])).toEqual([[9, "EINVAL"]]);
      expect(nh.failures[0]?.message).toContain("invalid gateway");
      expect(del).toEqual({ applied: 1, failures: [[42, "ENOENT"]] });
      expect(sortedDsts(await ipJson<IpRoute[]>(ns, "route", "show", "proto", PROTO))).toEqual([
        "10.9.1.0/24",
        "10.9.3.0/24",
      ]);
    });
  });

  test("netlink - an onlink nexthop on a vxlan device reads back onlink; the monitor reports nexthop changes", async () => {
    await withHost(async ({ ns }) => {
      const stop = "10.77.0.0/24";
      const { proc, pump, waitFor } = startMonitor(ns, stop);
      const seen = async (match: (line: Record<string, unknown>) => boolean) =>
        (await waitFor(match, 2000)) !== undefined;
      try {
        expect(await seen((l) => "ready" in l)).toBe(true);
        await ns.ip(
          "link",
          "add",
          "flannel.1",
          "type",
          "vxlan",
          "id",
          "1",
          "local",
          ADDRESSES[0] ?? "",
          "dev",
          "eth0",
          "dstport",
          "8472",
          "nolearning",
        );
        await ns.ip("link", "set", "flannel.1", "up");
        const [, list] = (await steps(ns, [
          {
            op: "nexthopReplace",
            nexthops: [{ id: 5, gateway: "10.5.2.0", dev: "flannel.1", onlink: true, protocol: RTPROT_WEFT }],
          },
          { op: "nexthopList" },
        ])) as [BatchOut, { items: { id: number; onlink?: boolean }[] }];
        expect(list.items).toEqual([
          expect.objectContaining({ id: 5, gateway: "10.5.2.0", onlink: true, protocol: RTPROT_WEFT }),
        ]);
        expect(await seen((l) => l.handler === "nexthop" && l.id === 5 && l.deleted === false)).toBe(true);
        await ns.ip("nexthop", "del", "id", "5");
        expect(await seen((l) => l.handler === "nexthop" && l.id === 5 && l.deleted === true)).toBe(true);
        await ns.ip("route", "add", stop, "via", GATEWAY);
        await ns.ip("route", "del", stop);
        const exited = await Promise.race([proc.exited, Bun.sleep(3000).then(() => "still running")]);
        expect(exited).toBe(0);
        await pump;
      } finally {
        proc.kill();
        await proc.exited;
      }
    });
  });
});
