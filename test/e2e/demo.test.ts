// Seed 000 end to end on the SQLite store: `weft demo` builds three hosts in network namespaces,
// runs one agent each, and must show cross-host container pings with FORWARD policy DROP.
import { expect, test } from "bun:test";
import { join } from "node:path";
import { testNetns } from "../harness/netns.ts";

const main = join(import.meta.dir, "..", "..", "src", "main.ts");

/**
 * Runs `weft demo <args>` and returns what it printed; fails the test unless it exits 0, or when a
 * namespace of the demo's (`<prefix>-<its pid>-<n>`) is left behind.
 */
async function demo(...args: string[]): Promise<string> {
  const proc = Bun.spawn([process.execPath, main, "demo", ...args], { stdout: "pipe", stderr: "pipe" });
  const [out, err, code] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  if (code !== 0) console.error(out, err);
  expect(code).toBe(0);
  const left = Bun.spawnSync(["ip", "netns", "list"]).stdout.toString();
  expect(left).not.toMatch(new RegExp(`-${proc.pid}-\\d+`));
  return out;
}

testNetns(
  "demo - seed 000 host-gw on sqlite: routes, subnet.env, pings and a 3-hop trace",
  async () => {
    const out = await demo();
    const routes =
      out.match(/^192\.168\.\d+\.\d+\/26(?: nhid \d+)? via 172\.17\.42\.4[123] dev eth0 proto 77 ?$/gm) ?? [];
    expect(routes.length).toBe(6);
    const subnets = [...out.matchAll(/^FLANNEL_SUBNET=(192\.168\.\d+\.\d+)\/26$/gm)].map((m) => m[1]);
    expect(new Set(subnets).size).toBe(3);
    expect(out.match(/^FLANNEL_NETWORK=192\.168\.0\.0\/16$/gm)?.length).toBe(3);
    expect(out.match(/^FLANNEL_MTU=1500$/gm)?.length).toBe(3);
    expect(out.match(/2 received, 0% packet loss/g)?.length).toBe(6);
    expect(out).toMatch(/^ 2 {2}172\.17\.42\.43 /m);
    expect(out).toMatch(/^ 3 {2}192\.168\.\d+\.\d+ /m);
  },
  120_000,
);

testNetns(
  "demo - --backend=vxlan runs seed 003 across two segments: flannel.100, onlink routes, neighbours, FDB, pings",
  async () => {
    const out = await demo("--backend=vxlan");
    expect(out).toContain("-iface=192.168.206.10 &");
    expect(
      out.match(/vxlan id 100 local 192\.168\.20[56]\.1[01] dev eth0 .*dstport 8472 nolearning/g)?.length,
    ).toBe(3);
    expect(
      out.match(
        /^10\.\d+\.\d+\.0\/20(?: nhid \d+)? via 10\.\d+\.\d+\.0 dev flannel\.100 proto 77 onlink ?$/gm,
      )?.length,
    ).toBe(6);
    expect(out.match(/^10\.\d+\.\d+\.0 lladdr [0-9a-f:]{17} PERMANENT ?$/gm)?.length).toBe(6);
    expect(out.match(/^[0-9a-f:]{17} dst 192\.168\.20[56]\.1[01] self permanent$/gm)?.length).toBe(6);
    expect(out.match(/^FLANNEL_MTU=1450$/gm)?.length).toBe(3);
    expect(out.match(/2 received, 0% packet loss/g)?.length).toBe(6);
  },
  120_000,
);

test("demo --help prints what it does and changes nothing; an argument is refused by name", async () => {
  const before = Bun.spawnSync(["ip", "netns", "list"]).stdout.toString();
  const help = Bun.spawnSync([process.execPath, main, "demo", "--help"]);
  expect(help.exitCode).toBe(0);
  expect(help.stdout.toString()).toStartWith("usage: weft demo [--backend=host-gw|vxlan]\n");
  const bad = Bun.spawnSync([process.execPath, main, "demo", "--hosts=5"]);
  expect(bad.exitCode).toBe(2);
  expect(bad.stderr.toString()).toContain('unexpected argument "--hosts=5"');
  const udp = Bun.spawnSync([process.execPath, main, "demo", "--backend=udp"]);
  expect(udp.exitCode).toBe(2);
  expect(udp.stderr.toString()).toContain(
    'unexpected argument "--backend=udp" (--backend takes host-gw or vxlan)',
  );
  expect(Bun.spawnSync(["ip", "netns", "list"]).stdout.toString()).toBe(before);
});
