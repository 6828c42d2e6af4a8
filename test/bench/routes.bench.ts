// Route programming through weft's netlink layer, inside a throw-away namespace.
//
//   bun test/bench/routes.bench.ts            (as root; prints tables, asserts nothing)
//
// The script runs twice: started plainly it creates a two-host segment (src/netns) and re-runs itself
// with `--inside` in host 1's namespace (`ip netns exec`), where all kernel work happens; it then prints
// what the inner run measured and removes the namespaces. Nothing touches the namespace it started in.
//
// Measured inside, each for N = 1,000 / 5,000 / 10,000 (5 runs after one warm-up, p50 and extremes):
// - lease list in memory → all routes acknowledged: map N leases to `10.x.y.0/24 via <gw> dev eth0
//   proto 77` routes and `routeReplace` them (batched sends, one ack per route);
// - the full-table dump (`routeList`, one RTM_GETROUTE dump of N+1 routes);
// - an emulation of flanneld's pattern (not the flanneld binary) at N = 1,000, in TypeScript on weft's
//   netlink layer: per route a fresh socket and a full dump, then a fresh socket and the add
//   (vishvananda/netlink package-level calls; flanneld does three dumps per lease, so this is a lower
//   bound for it). test/bench/scale.bench.ts measures the real flanneld binary;
// - route deletion → monitor callback latency over 200 deletes: once with the delete sent in-process
//   (kernel notification → JS callback) and once with `ip route del` spawned per route (adds fork/exec).
import { join } from "node:path";
import { RTPROT_WEFT } from "../../src/netlink/netlink.ts";
import { canUseNetns, createSegment } from "../../src/netns/netns.ts";
import { percentile, table } from "./stats.ts";

const GATEWAY = "172.31.78.2";
const SIZES = [1000, 5000, 10000] as const;
const RUNS = 5;
const FLANNEL_N = 1000;
const FLANNEL_RUNS = 3;
const DELETES = 200;

interface SizeResult {
  readonly n: number;
  readonly replaceMs: number[];
  readonly dumpMs: number[];
  readonly deleteMs: number[];
  readonly failures: number;
}

interface InsideResult {
  readonly batchSize: number;
  readonly coldReplaceMs: number;
  readonly sizes: SizeResult[];
  readonly flannelMs: number[];
  readonly monitorInProcessMs: number[];
  readonly monitorSpawnMs: number[];
  readonly monitorMissed: number;
}

if (process.argv[2] === "--inside") {
  console.log(JSON.stringify(await inside(process.argv[3] ?? GATEWAY)));
} else {
  await outside();
}

async function inside(gateway: string): Promise<InsideResult> {
  const { Netlink } = await import("../../src/netlink/netlink.ts");
  const { Monitor } = await import("../../src/netlink/monitor.ts");
  const nl = Netlink.open();
  const eth0 = await nl.linkByName("eth0");
  if (eth0 === undefined) throw new TypeError("no eth0 in the bench namespace");
  const leases = (n: number) =>
    Array.from({ length: n }, (_, i) => ({ subnet: `10.${i >> 8}.${i & 255}.0/24`, publicIP: gateway }));
  const toRoutes = (list: ReturnType<typeof leases>) =>
    list.map((l) => ({ dst: l.subnet, gateway: l.publicIP, oif: eth0.index, protocol: RTPROT_WEFT }));
  const time = async (fn: () => Promise<unknown>) => {
    const start = performance.now();
    await fn();
    return performance.now() - start;
  };

  const coldLeases = leases(1000);
  const coldReplaceMs = await time(() => nl.routeReplace(toRoutes(coldLeases)));
  await nl.routeDelete(toRoutes(coldLeases));

  const sizes: SizeResult[] = [];
  for (const n of SIZES) {
    const result: SizeResult = { n, replaceMs: [], dumpMs: [], deleteMs: [], failures: 0 };
    for (let run = 0; run <= RUNS; run++) {
      const list = leases(n);
      let failures = 0;
      const replaceMs = await time(async () => {
        failures += (await nl.routeReplace(toRoutes(list))).failures.length;
      });
      const dumpMs = await time(() => nl.routeList());
      const deleteMs = await time(async () => {
        failures += (await nl.routeDelete(toRoutes(list))).failures.length;
      });
      if (run === 0) continue; // warm-up
      result.replaceMs.push(replaceMs);
      result.dumpMs.push(dumpMs);
      result.deleteMs.push(deleteMs);
      (result as { failures: number }).failures += failures;
    }
    sizes.push(result);
  }

  const flannelMs: number[] = [];
  for (let run = 0; run < FLANNEL_RUNS; run++) {
    const routes = toRoutes(leases(FLANNEL_N));
    flannelMs.push(
      await time(async () => {
        for (const route of routes) {
          const lister = Netlink.open();
          const existing = await lister.routeList();
          await lister.close();
          if (existing.items.some((r) => r.dst === route.dst && r.gateway === route.gateway)) continue;
          const adder = Netlink.open();
          await adder.routeReplace([route]);
          await adder.close();
        }
      }),
    );
    await nl.routeDelete(routes);
  }

  const waiting = new Map<string, (at: number) => void>();
  const monitor = Monitor.open((event) => {
    if (event.type !== "route" || event.action !== "del") return;
    waiting.get(event.route.dst)?.(performance.now());
  });
  const probes = Array.from({ length: DELETES }, (_, i) => ({
    dst: `10.250.${i}.0/24`,
    gateway,
    oif: eth0.index,
    protocol: RTPROT_WEFT,
  }));
  let missed = 0;
  const measure = async (remove: (dst: string) => Promise<unknown>) => {
    await nl.routeReplace(probes);
    await Bun.sleep(20);
    const samples: number[] = [];
    for (const probe of probes) {
      const seen = new Promise<number>((resolve) => waiting.set(probe.dst, resolve));
      const start = performance.now();
      await remove(probe.dst);
      const at = await Promise.race([seen, Bun.sleep(1000).then(() => Number.NaN)]);
      waiting.delete(probe.dst);
      if (Number.isNaN(at)) missed++;
      else samples.push(at - start);
      await Bun.sleep(1 + Math.random() * 4); // spread the deletes like independent drift events
    }
    return samples;
  };
  const monitorInProcessMs = await measure((dst) => nl.routeDelete([{ dst, protocol: RTPROT_WEFT }]));
  const monitorSpawnMs = await measure(
    (dst) => Bun.spawn(["ip", "route", "del", dst], { stdout: "ignore" }).exited,
  );
  await monitor.close();
  const batchSize = nl.batchSize;
  await nl.close();
  return {
    batchSize,
    coldReplaceMs,
    sizes,
    flannelMs,
    monitorInProcessMs,
    monitorSpawnMs,
    monitorMissed: missed,
  };
}

async function outside(): Promise<void> {
  if (!canUseNetns()) {
    console.log("routes.bench: skipped, it needs root and `ip netns` to create its namespace");
    return;
  }
  const load = (await Bun.file("/proc/loadavg").text()).split(" ").slice(0, 3).join(" ");
  const segment = await createSegment("wnlb", ["172.31.78.1", GATEWAY], 24);
  let result: InsideResult;
  try {
    const host = segment.hosts[0];
    if (host === undefined) throw new TypeError("createSegment returned no host");
    const { stdout } = await host.ns.exec([
      process.execPath,
      join(import.meta.dir, "routes.bench.ts"),
      "--inside",
      GATEWAY,
    ]);
    result = JSON.parse(stdout) as InsideResult;
  } finally {
    await segment.remove();
  }
  const ms = (v: number) => v.toFixed(1);
  const us = (v: number, n: number) => ((v * 1000) / n).toFixed(1);
  console.log(
    `routes.bench: Bun ${Bun.version}, ${navigator.hardwareConcurrency} CPUs, load ${load}, ${result.batchSize} messages per send`,
  );
  console.log(
    table(
      ["N", "replace p50 ms", "min..max", "µs/route", "dump p50 ms", "µs/route", "delete p50 ms", "failures"],
      [
        ["1,000 cold", ms(result.coldReplaceMs), "", us(result.coldReplaceMs, 1000), "", "", "", ""],
        ...result.sizes.map((s) => {
          const replace = percentile(s.replaceMs, 50);
          const dump = percentile(s.dumpMs, 50);
          return [
            s.n.toLocaleString("en"),
            ms(replace),
            `${ms(Math.min(...s.replaceMs))}..${ms(Math.max(...s.replaceMs))}`,
            us(replace, s.n),
            ms(dump),
            us(dump, s.n),
            ms(percentile(s.deleteMs, 50)),
            String(s.failures),
          ];
        }),
      ],
    ),
  );
  const batched = percentile(result.sizes[0]?.replaceMs ?? [], 50);
  const flannel = percentile(result.flannelMs, 50);
  console.log();
  console.log(
    table(
      ["pattern, N = 1,000", "p50 ms", "µs/route", "ratio"],
      [
        ["weft: batched routeReplace, one socket", ms(batched), us(batched, 1000), "1.0"],
        [
          "emulation of flanneld's pattern (not the flanneld binary): per route new socket + full dump + add",
          ms(flannel),
          us(flannel, 1000),
          (flannel / batched).toFixed(0),
        ],
      ],
    ),
  );
  console.log();
  const row = (label: string, samples: readonly number[]) => [
    label,
    String(samples.length),
    percentile(samples, 50).toFixed(3),
    percentile(samples, 99).toFixed(3),
    Math.max(...samples).toFixed(3),
  ];
  console.log(
    table(
      ["route del → monitor callback", "n", "p50 ms", "p99 ms", "max ms"],
      [
        row("RTM_DELROUTE sent in-process", result.monitorInProcessMs),
        row("`ip route del` spawned (incl. fork/exec)", result.monitorSpawnMs),
      ],
    ),
  );
  if (result.monitorMissed > 0)
    console.log(`monitor: ${result.monitorMissed} deletes not reported within 1 s`);
}
