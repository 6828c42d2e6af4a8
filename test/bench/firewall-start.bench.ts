/**
 * The agent's first firewall transaction at start, alone and next to the first route apply of 5,000
 * peers, each round in a throwaway network namespace (root only; skipped otherwise). What the agent
 * runs at start: `IptablesFirewall.apply()` (one `iptables-save`, one `iptables-restore --noflush`)
 * and the take-over (`nft list table ip weft`, the /proc scan for flanneld, `iptables-save` for
 * FLANNEL-* chains, two `nft list table`), while a `Netlink.routeReplace` of 5,000 routes (inline
 * gateways, or nexthop objects + `nhid` routes) runs at the same time. Printed per case: the apply and
 * take-over as the agent sees them, each exec's own run time (measured inside the child by bash) next
 * to the time until the agent saw it end, the route batch, and the longest gap of a 1 ms timer (how
 * long the JS thread was held). Figures are printed, never asserted.
 *
 * Finding (2 vCPU VM shared with other work, load 2.7–2.9, 5 rounds): alone, the first apply takes
 * 11–14 ms and the take-over 22–27 ms, each exec 2.7 ms (p50): no cold start, lock wait or slow FLANNEL-*
 * scan. Next to 5,000 inline-gateway routes sent 1,024 per netlink datagram the apply took 158–212 ms
 * (the 181 ms): the execs still ran 3.8 ms (p50), but the JS thread sat 123–158 ms at a time in
 * the synchronous `send` of one route batch (the kernel inserts the whole datagram inside it, O(N) per
 * inline-gateway route), so their ends were seen 92 ms (p50) late. With 64 routes per datagram the
 * longest hold was 15–34 ms and the apply 20–44 ms, at the same route time (424–605 against 415–511 ms);
 * with nexthop objects 35–87 ms (1,024 per send) and 17–55 ms (64). The agent opens its netlink socket
 * with 64 per send (src/cli/run-agent.ts).
 *
 *   bun test/bench/firewall-start.bench.ts        (ROUNDS=5)
 */
import { removeOtherMode } from "../../src/firewall/firewall.ts";
import { flanneldPids, removeFlannelLeftovers } from "../../src/firewall/flannel-leftovers.ts";
import { IptablesFirewall } from "../../src/firewall/iptables.ts";
import { type CommandRunner, spawnRunner } from "../../src/firewall/runner.ts";
import { Netlink, RTPROT_WEFT } from "../../src/netlink/netlink.ts";
import { canUseNetns, Netns, uniqueName } from "../../src/netns/netns.ts";
import { percentile, table } from "./stats.ts";

const ROUNDS = Number(process.env.ROUNDS ?? 5);
const PEERS = 5_000;
const CASES = [
  { name: "firewall alone", routes: "none", batch: 1024 },
  { name: "next to 5,000 inline-gateway routes, 1,024 per send", routes: "inline", batch: 1024 },
  { name: "next to 5,000 inline-gateway routes, 64 per send", routes: "inline", batch: 64 },
  { name: "next to 5,000 nexthops + routes, 1,024 per send", routes: "nexthop", batch: 1024 },
  { name: "next to 5,000 nexthops + routes, 64 per send", routes: "nexthop", batch: 64 },
] as const;
type Case = (typeof CASES)[number];

interface Round {
  readonly applyMs: number;
  readonly takeOverMs: number;
  readonly routesMs: number;
  readonly holdMs: number;
  /** Per exec: [its own run time, the time until the agent saw it end]. */
  readonly execs: readonly [number, number][];
}

/** Runs inside the namespace: one start, measured. */
async function inside(c: Case): Promise<Round> {
  const sh = (argv: string[]) => {
    const r = Bun.spawnSync(argv, { stderr: "pipe" });
    if (r.exitCode !== 0) throw new Error(`${argv.join(" ")}: ${r.stderr.toString()}`);
  };
  sh(["ip", "link", "set", "lo", "up"]);
  sh(["ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth0p"]);
  sh(["ip", "link", "set", "eth0p", "up"]);
  sh(["ip", "addr", "add", "172.16.0.1/16", "dev", "eth0"]);
  sh(["ip", "link", "set", "eth0", "up"]);
  const base = spawnRunner();
  const execs: [number, number][] = [];
  // bash times the command itself, so a late look at its end shows as the difference.
  const run: CommandRunner = async (argv, stdin) => {
    const start = performance.now();
    const wrapped = [
      "bash",
      "-c",
      's=$EPOCHREALTIME; "$@"; c=$?; echo "T $s $EPOCHREALTIME" >&2; exit $c',
      "-",
    ];
    const result = await base([...wrapped, ...argv], stdin);
    const seen = performance.now() - start;
    const mark = /T (\S+) (\S+)\n?$/.exec(result.stderr);
    const own = mark === null ? Number.NaN : (Number(mark[2]) - Number(mark[1])) * 1_000;
    execs.push([own, seen]);
    return { ...result, stderr: result.stderr.replace(/T \S+ \S+\n?$/, "") };
  };
  const netlink = Netlink.open({ batchSize: c.batch });
  const eth0 = (await netlink.linkByName("eth0"))?.index ?? 0;
  const firewall = new IptablesFirewall({
    run,
    spec: { network: "10.0.0.0/8", subnet: "10.200.0.0/24", ipMasq: false, forwardRules: true },
  });
  const gateway = (i: number) => `172.16.${(i + 2) >> 8}.${(i + 2) & 255}`;
  const dst = (i: number) => `10.${5 + (i >> 8)}.${i & 255}.0/24`;
  let routesMs = 0;
  const routes = async () => {
    const start = performance.now();
    if (c.routes === "nexthop") {
      await netlink.nexthopReplace(
        Array.from({ length: PEERS }, (_, i) => ({
          id: i + 1,
          gateway: gateway(i),
          oif: eth0,
          protocol: RTPROT_WEFT,
        })),
      );
      await netlink.routeReplace(
        Array.from({ length: PEERS }, (_, i) => ({ dst: dst(i), nhid: i + 1, protocol: RTPROT_WEFT })),
      );
    } else if (c.routes === "inline") {
      await netlink.routeReplace(
        Array.from({ length: PEERS }, (_, i) => ({
          dst: dst(i),
          gateway: gateway(i),
          oif: eth0,
          protocol: RTPROT_WEFT,
        })),
      );
    }
    routesMs = performance.now() - start;
  };
  let applyMs = 0;
  let takeOverMs = 0;
  const first = async () => {
    const start = performance.now();
    await firewall.apply();
    applyMs = performance.now() - start;
    const takeOver = performance.now();
    await removeOtherMode("iptables", run);
    if (flanneldPids().length === 0) await removeFlannelLeftovers(run);
    takeOverMs = performance.now() - takeOver;
  };
  let holdMs = 0;
  let last = performance.now();
  const tick = setInterval(() => {
    const now = performance.now();
    holdMs = Math.max(holdMs, now - last);
    last = now;
  }, 1);
  await Promise.all([first(), routes()]);
  clearInterval(tick);
  await netlink.close();
  return { applyMs, takeOverMs, routesMs, holdMs, execs };
}

async function main(): Promise<void> {
  const mode = process.argv[2];
  if (mode === "--inside") {
    const c = CASES[Number(process.argv[3])];
    if (c === undefined) throw new Error("--inside needs a case number");
    console.log(JSON.stringify(await inside(c)));
    return;
  }
  if (!canUseNetns()) {
    console.log("firewall start bench skipped: needs root and `ip netns`");
    return;
  }
  const load = async () => (await Bun.file("/proc/loadavg").text()).split(" ").slice(0, 3).join(" ");
  const loadBefore = await load();
  const results = new Map<Case, Round[]>(CASES.map((c) => [c, []]));
  for (let round = 0; round < ROUNDS; round++) {
    for (const [index, c] of CASES.entries()) {
      const ns = await Netns.create(uniqueName("wfs"));
      try {
        const child = Bun.spawn(
          ["ip", "netns", "exec", ns.name, process.execPath, import.meta.path, "--inside", String(index)],
          { stdout: "pipe", stderr: "inherit" },
        );
        const out = await new Response(child.stdout).text();
        if ((await child.exited) !== 0) throw new Error(`case ${c.name} failed`);
        results.get(c)?.push(JSON.parse(out.trim().split("\n").at(-1) ?? "{}") as Round);
      } finally {
        await ns.remove();
      }
    }
  }
  const range = (values: number[]) =>
    `${percentile(values, 0).toFixed(0)}–${percentile(values, 100).toFixed(0)}`;
  const rows = CASES.map((c) => {
    const rounds = results.get(c) ?? [];
    const own = rounds.flatMap((r) => r.execs.map(([o]) => o));
    const seen = rounds.flatMap((r) => r.execs.map(([, s]) => s));
    return [
      c.name,
      range(rounds.map((r) => r.applyMs)),
      range(rounds.map((r) => r.takeOverMs)),
      `${percentile(own, 50).toFixed(1)} / ${percentile(seen, 50).toFixed(1)}`,
      c.routes === "none" ? "-" : range(rounds.map((r) => r.routesMs)),
      range(rounds.map((r) => r.holdMs)),
    ];
  });
  console.log(
    `first firewall transaction at start, ${ROUNDS} rounds per case (min–max), load before ${loadBefore}, after ${await load()}`,
  );
  console.log(
    table(
      [
        "case (fresh netns each round)",
        "apply ms",
        "take-over ms",
        "exec own / seen p50 ms",
        "routes ms",
        "JS thread held ms",
      ],
      rows,
    ),
  );
}

await main();
