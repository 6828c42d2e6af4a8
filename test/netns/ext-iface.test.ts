// The external interface and PublicIP on a real kernel, compared with flanneld v0.28.9. Everything runs in
// one namespace this test creates and removes: eth0 (a veth) carries a link-local, a DHCP-style (dynamic),
// a deprecated, a static and a secondary VIP address, in that kernel order; eth1 one static address. weft's
// choice (a fixture started inside the namespace) must equal what flanneld's rules pick, and, when the
// Go-built flanneld is cached, what flanneld itself logs when run there against an etcd inside the same
// namespace (backend "alloc": it only leases a subnet; it is stopped as soon as it has chosen).
import { afterAll, beforeAll, expect, test } from "bun:test";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { homedir, tmpdir } from "node:os";
import { join } from "node:path";
import type { ExternalFlags } from "../../src/agent/ext-iface.ts";
import { ADDR_LIFETIME_FOREVER, type Addr, IFA_F } from "../../src/netlink/types.ts";
import { Netns, uniqueName } from "../../src/netns/netns.ts";
import { describeNetns, netnsUsable } from "../harness/netns.ts";

const BUN = process.execPath;
const CHOOSE = join(import.meta.dir, "fixtures", "ext-iface-choose.ts");
const FLANNELD = join(homedir(), ".cache", "weft-test-bin", "flanneld-v0.28.9", "flanneld");
const ETCD_PORT = 23_790;

const usable = netnsUsable;
if (!usable) console.warn("ext-iface netns tests skipped: they need root and `ip netns`");
const haveFlanneld =
  usable && existsSync(FLANNELD) && Bun.which("etcd") !== null && Bun.which("etcdctl") !== null;
if (usable && !haveFlanneld) {
  console.warn(
    `ext-iface: flanneld comparison skipped: needs ${FLANNELD} (build/test-bin.sh flanneld), etcd and etcdctl`,
  );
}

type Choice = { readonly name: string; readonly ifaceIP: string; readonly publicIP: string } | "refused";

interface Case {
  readonly flags: Partial<ExternalFlags>;
  /** What flanneld's rules give, with the rule that decides it. */
  readonly expected: Choice;
  readonly rule: string;
}

const CASES: readonly Case[] = [
  {
    flags: {},
    expected: { name: "eth0", ifaceIP: "192.168.50.10", publicIP: "192.168.50.10" },
    rule: "default route; link-local last, permanent first, deprecated skipped, primary before the VIP",
  },
  {
    flags: { iface: ["eth0"] },
    expected: { name: "eth0", ifaceIP: "192.168.50.10", publicIP: "192.168.50.10" },
    rule: "--iface=<name>: the same first usable address",
  },
  {
    flags: { iface: ["10.20.0.100"] },
    expected: { name: "eth0", ifaceIP: "10.20.0.100", publicIP: "10.20.0.100" },
    rule: "--iface=<IP> is the address",
  },
  {
    flags: { iface: ["eth9"], ifaceRegex: ["^10\\.20\\."] },
    expected: { name: "eth0", ifaceIP: "10.20.0.100", publicIP: "10.20.0.100" },
    rule: "regex after a missed --iface; the permanent VIP sorts before the dynamic address",
  },
  {
    flags: { ifaceRegex: ["^eth0$|^172\\."] },
    expected: { name: "eth1", ifaceIP: "172.16.5.5", publicIP: "172.16.5.5" },
    rule: "regex: every interface's addresses before any name",
  },
  {
    flags: { publicIp: "172.16.5.5" },
    expected: { name: "eth1", ifaceIP: "172.16.5.5", publicIP: "172.16.5.5" },
    rule: "--public-ip alone: the interface owning it",
  },
  {
    flags: { iface: ["eth0"], publicIp: "203.0.113.9" },
    expected: { name: "eth0", ifaceIP: "192.168.50.10", publicIP: "203.0.113.9" },
    rule: "--public-ip with --iface: published as given",
  },
  {
    flags: { ifaceCanReach: "10.99.1.1" },
    expected: { name: "eth1", ifaceIP: "172.16.5.5", publicIP: "172.16.5.5" },
    rule: "--iface-can-reach: the route's device and the kernel's source address",
  },
  { flags: { publicIp: "203.0.113.9" }, expected: "refused", rule: "--public-ip alone on no interface" },
];

const SETUP: readonly string[][] = [
  ["link", "add", "eth0", "type", "veth", "peer", "name", "eth0p"],
  ["link", "add", "eth1", "type", "veth", "peer", "name", "eth1p"],
  ...["eth0", "eth0p", "eth1", "eth1p"].map((dev) => ["link", "set", dev, "up"]),
  ["addr", "add", "169.254.7.7/16", "dev", "eth0"],
  ["addr", "add", "10.20.0.5/24", "dev", "eth0", "valid_lft", "3600", "preferred_lft", "3600"],
  ["addr", "add", "10.40.0.1/24", "dev", "eth0", "valid_lft", "forever", "preferred_lft", "0"],
  ["addr", "add", "192.168.50.10/24", "dev", "eth0"],
  ["addr", "add", "10.20.0.100/24", "dev", "eth0"],
  ["addr", "add", "172.16.5.5/24", "dev", "eth1"],
  ["route", "add", "default", "via", "10.20.0.1", "dev", "eth0"],
  ["route", "add", "10.99.0.0/16", "via", "172.16.5.1", "dev", "eth1"],
];

/** Runs the fixture in the namespace: weft's choice per case, then eth0's decoded addresses. */
async function weftChoices(ns: Netns, sets: readonly Partial<ExternalFlags>[]) {
  const { stdout } = await ns.exec([BUN, CHOOSE, JSON.stringify(sets)]);
  const lines = stdout
    .trim()
    .split("\n")
    .map((line) => JSON.parse(line) as Record<string, unknown>);
  const addrs = (lines.pop()?.addrs ?? []) as Addr[];
  const choices = lines.map((l): Choice => ("error" in l ? "refused" : (l as Exclude<Choice, "refused">)));
  return { choices, addrs };
}

function flanneldArgs(flags: Partial<ExternalFlags>): string[] {
  return [
    ...(flags.iface ?? []).map((v) => `-iface=${v}`),
    ...(flags.ifaceRegex ?? []).map((v) => `-iface-regex=${v}`),
    ...(flags.ifaceCanReach === undefined ? [] : [`-iface-can-reach=${flags.ifaceCanReach}`]),
    ...(flags.publicIp === undefined ? [] : [`-public-ip=${flags.publicIp}`]),
  ];
}

/** Starts flanneld in the namespace, reads its choice from the log, stops it. */
async function flanneldChoice(
  ns: Netns,
  dir: string,
  n: number,
  flags: Partial<ExternalFlags>,
): Promise<Choice> {
  const proc = ns.spawn([
    "env",
    "-i",
    "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
    FLANNELD,
    `-etcd-endpoints=http://127.0.0.1:${ETCD_PORT}`,
    `-subnet-file=${join(dir, `subnet-${n}.env`)}`,
    ...flanneldArgs(flags),
  ]);
  let log = "";
  const decoder = new TextDecoder();
  const reading = (async () => {
    for await (const chunk of proc.stderr) log += decoder.decode(chunk);
  })();
  try {
    const deadline = Date.now() + 20_000;
    while (Date.now() < deadline) {
      const iface = /Using interface with name (\S+) and address (\S+)/.exec(log);
      const ext =
        /Using (\S+) as external address/.exec(log) ??
        /Defaulting external address to interface address \((\S+)\)/.exec(log);
      if (iface !== null && ext !== null) {
        return { name: iface[1] ?? "", ifaceIP: iface[2] ?? "", publicIP: ext[1] ?? "" };
      }
      if (/Failed to find (any valid interface|interface to use)/.test(log)) return "refused";
      if (proc.exitCode !== null) break;
      await Bun.sleep(50);
    }
    throw new Error(`flanneld ${flanneldArgs(flags).join(" ")} chose nothing; its log:\n${log}`);
  } finally {
    proc.kill();
    await proc.exited;
    await reading;
  }
}

describeNetns("ext-iface in a namespace", () => {
  let ns: Netns | undefined;
  const the = () => {
    if (ns === undefined) throw new TypeError("namespace not created");
    return ns;
  };

  beforeAll(async () => {
    ns = await Netns.create(uniqueName("wxi"));
    for (const args of SETUP) await ns.ip(...args);
  });

  afterAll(async () => {
    await ns?.remove();
  });

  test("ext-iface - the kernel lists eth0's addresses in an order flanneld does not use", async () => {
    const { stdout } = await the().ip("-j", "-4", "addr", "show", "dev", "eth0");
    const shown = JSON.parse(stdout) as { addr_info: { local: string }[] }[];
    expect(shown[0]?.addr_info.map((a) => a.local)).toEqual([
      "169.254.7.7",
      "10.20.0.5",
      "10.40.0.1",
      "192.168.50.10",
      "10.20.0.100",
    ]);
    const { addrs } = await weftChoices(the(), []);
    const by = new Map(addrs.map((a) => [a.address, a]));
    expect((by.get("10.20.0.5")?.flags ?? 0) & IFA_F.PERMANENT).toBe(0);
    expect(by.get("10.20.0.5")?.validLifetime).toBeLessThanOrEqual(3600);
    expect(by.get("10.40.0.1")?.flags).toBe(IFA_F.PERMANENT | IFA_F.DEPRECATED);
    expect(by.get("10.20.0.100")?.flags).toBe(IFA_F.PERMANENT | IFA_F.SECONDARY);
    expect(by.get("192.168.50.10")?.validLifetime).toBe(ADDR_LIFETIME_FOREVER);
  });

  test("ext-iface - weft chooses what flanneld's rules choose", async () => {
    const { choices } = await weftChoices(
      the(),
      CASES.map((c) => c.flags),
    );
    expect(choices.map((c, i) => [CASES[i]?.rule, c])).toEqual(CASES.map((c) => [c.rule, c.expected]));
  });

  test("ext-iface - --iface-can-reach takes the device and source address of ip route get", async () => {
    const targets = ["10.99.1.1", "10.20.0.77", "198.51.100.7", "192.168.50.200"];
    const { choices } = await weftChoices(
      the(),
      targets.map((ifaceCanReach) => ({ ifaceCanReach })),
    );
    for (const [i, target] of targets.entries()) {
      const { stdout } = await the().ip("-j", "route", "get", target);
      const [kernel] = JSON.parse(stdout) as { dev: string; prefsrc: string }[];
      expect([target, choices[i]]).toEqual([
        target,
        { name: kernel?.dev ?? "", ifaceIP: kernel?.prefsrc ?? "", publicIP: kernel?.prefsrc ?? "" },
      ]);
    }
  });

  test.skipIf(!haveFlanneld)(
    "ext-iface - the Go-built flanneld v0.28.9 chooses the same in the same namespace",
    async () => {
      const dir = mkdtempSync(join(tmpdir(), "weft-ext-iface-"));
      const url = `http://127.0.0.1:${ETCD_PORT}`;
      const peer = `http://127.0.0.1:${ETCD_PORT + 10}`;
      const etcd = the().spawn([
        "etcd",
        "--name=wxi",
        `--data-dir=${join(dir, "etcd")}`,
        `--listen-client-urls=${url}`,
        `--advertise-client-urls=${url}`,
        `--listen-peer-urls=${peer}`,
        `--initial-advertise-peer-urls=${peer}`,
        `--initial-cluster=wxi=${peer}`,
        "--log-level=warn",
      ]);
      void new Response(etcd.stdout).text();
      void new Response(etcd.stderr).text();
      try {
        const config = JSON.stringify({
          Network: "10.100.0.0/16",
          Backend: { Type: "alloc" },
          EnableNFTables: true,
        });
        const put = [
          "env",
          "ETCDCTL_API=3",
          "etcdctl",
          `--endpoints=${url}`,
          "put",
          "/coreos.com/network/config",
          config,
        ];
        let stored = false;
        for (let attempt = 0; attempt < 50 && !stored; attempt++) {
          stored = (await the().exec(put, { allowFailure: true })).code === 0;
          if (!stored) await Bun.sleep(200);
        }
        expect(stored).toBe(true);
        const { choices: weft } = await weftChoices(
          the(),
          CASES.map((c) => c.flags),
        );
        for (const [i, c] of CASES.entries()) {
          const flanneld = await flanneldChoice(the(), dir, i, c.flags);
          expect([c.rule, weft[i]]).toEqual([c.rule, flanneld]);
        }
      } finally {
        etcd.kill();
        await etcd.exited;
        rmSync(dir, { recursive: true, force: true });
      }
    },
    120_000,
  );
});
