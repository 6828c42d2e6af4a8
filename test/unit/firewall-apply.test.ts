import { describe, expect, test } from "bun:test";
import { isWeftError } from "../../src/errors.ts";
import { FirewallError } from "../../src/firewall/errors.ts";
import { FindingCode } from "../../src/firewall/findings.ts";
import {
  createFirewall,
  FirewallMode,
  modeFromConfig,
  removeOtherMode,
} from "../../src/firewall/firewall.ts";
import { IptablesFirewall } from "../../src/firewall/iptables.ts";
import { NftablesFirewall } from "../../src/firewall/nftables.ts";
import type { FirewallSpec } from "../../src/firewall/rules.ts";
import { type CommandResult, type CommandRunner, spawnRunner } from "../../src/firewall/runner.ts";
import { checkSysctls } from "../../src/firewall/sysctl.ts";

const spec: FirewallSpec = {
  network: "10.5.0.0/16",
  subnet: "10.5.72.0/24",
  ipMasq: true,
  forwardRules: true,
};

type Handler = (argv: readonly string[], stdin: string | undefined) => CommandResult | undefined;

/** A fake runner: handlers answer in order; every call is recorded; unanswered calls fail the test. */
function fake(...handlers: Handler[]) {
  const calls: { argv: string; stdin: string | undefined }[] = [];
  const run: CommandRunner = async (argv, stdin) => {
    calls.push({ argv: argv.join(" "), stdin });
    for (const h of handlers) {
      const r = h(argv, stdin);
      if (r !== undefined) return r;
    }
    throw new FirewallError(`unexpected command ${argv.join(" ")}`);
  };
  return { run, calls };
}

const ok = (stdout = ""): CommandResult => ({ code: 0, stdout, stderr: "" });
const fail = (code: number, stderr: string): CommandResult => ({ code, stdout: "", stderr });

/** Turns a fresh-install restore script into what iptables-save would print afterwards. */
function saveOf(script: string): string {
  return script.replace(/^-I (\w+) 1 /gm, "-A $1 ");
}

/** A tiny iptables: restore of a fresh script makes save print it; `refuse` rejects matching scripts. */
function fakeIptables(refuse?: RegExp, refuseTimes = Number.POSITIVE_INFINITY) {
  let state = "";
  let refused = 0;
  return fake((argv, stdin) => {
    if (argv[0] === "iptables-save") return ok(state);
    if (argv[0] !== "iptables-restore" || stdin === undefined) return undefined;
    if (refuse?.test(stdin) && refused < refuseTimes) {
      refused += 1;
      return fail(
        2,
        'iptables-restore v1.8.9 (nf_tables): unknown option "--random-fully"\nError occurred at line: 11',
      );
    }
    state = saveOf(stdin);
    return ok();
  });
}

describe("firewall apply (fake runner)", () => {
  test("firewall - apply on a fresh host runs one save and one restore", async () => {
    const { run, calls } = fakeIptables();
    const fw = new IptablesFirewall({ run, spec });
    const result = await fw.apply();
    expect(result.changed).toBe(true);
    expect(calls.map((c) => c.argv)).toEqual(["iptables-save", "iptables-restore --noflush --wait"]);
    expect(result.lines).toContain('filter: + -I FORWARD 1 -m comment --comment "weft:fwd" -j WEFT-FWD');
  });

  test("firewall - a second apply runs only the save", async () => {
    const { run, calls } = fakeIptables();
    const fw = new IptablesFirewall({ run, spec });
    await fw.apply();
    calls.length = 0;
    expect(await fw.apply()).toEqual({ changed: false, lines: [], findings: [] });
    expect(calls.map((c) => c.argv)).toEqual(["iptables-save"]);
  });

  test("firewall - random-fully refused once falls back, is remembered and reported", async () => {
    const { run, calls } = fakeIptables(/--random-fully/);
    const fw = new IptablesFirewall({ run, spec });
    const result = await fw.apply();
    expect(result.findings.map((f) => f.code)).toEqual([FindingCode.RandomFullyUnsupported]);
    expect(calls.map((c) => c.argv)).toEqual([
      "iptables-save",
      "iptables-restore --noflush --wait",
      "iptables-restore --noflush --wait",
    ]);
    expect(calls[2]?.stdin).toContain("-j MASQUERADE\n");
    expect(fw.describe().randomFully).toBe(false);
    calls.length = 0;
    await fw.ensure();
    expect(calls.map((c) => c.argv)).toEqual(["iptables-save"]);
  });

  test("firewall - overlapping applies are serialised, so a missing jump is inserted once", async () => {
    const { run, calls } = fakeIptables();
    const fw = new IptablesFirewall({ run, spec, randomFully: true });
    const [first, second] = await Promise.all([fw.apply(), fw.ensure()]);
    expect([first.changed, second.changed]).toEqual([true, false]);
    expect(calls.map((c) => c.argv)).toEqual([
      "iptables-save",
      "iptables-restore --noflush --wait",
      "iptables-save",
    ]);
  });

  test("firewall - a failed restore is retried once after a fresh read", async () => {
    const { run, calls } = fakeIptables(/WEFT-FWD/, 1);
    const fw = new IptablesFirewall({ run, spec, randomFully: true });
    expect((await fw.apply()).changed).toBe(true);
    expect(calls.map((c) => c.argv)).toEqual([
      "iptables-save",
      "iptables-restore --noflush --wait",
      "iptables-save",
      "iptables-restore --noflush --wait",
    ]);
  });

  test("firewall - failures are FIREWALL errors carrying command, exit code, stderr and input", async () => {
    const { run } = fake((argv) =>
      argv[0] === "iptables-save" ? ok() : fail(4, "iptables-restore: line 3 failed"),
    );
    const fw = new IptablesFirewall({ run, spec, randomFully: true });
    const err = await fw.apply().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(FirewallError);
    expect(isWeftError(err, "FIREWALL")).toBe(true);
    const fe = err as FirewallError;
    expect(fe.command).toEqual(["iptables-restore", "--noflush", "--wait"]);
    expect(fe.exitCode).toBe(4);
    expect(fe.stderr).toBe("iptables-restore: line 3 failed");
    expect(fe.input).toContain(":WEFT-FWD - [0:0]");
    expect(fe.message).toContain("exited 4");

    const missing = fake(() => fail(127, "iptables-save: not found"));
    const err2 = await new IptablesFirewall({ run: missing.run, spec }).plan().catch((e: unknown) => e);
    expect((err2 as FirewallError).message).toContain("install iptables");
  });

  test("firewall - plan shows the diff and the exact step without changing anything", async () => {
    const { run, calls } = fakeIptables();
    const plan = await new IptablesFirewall({ run, spec }).plan();
    expect(plan.inSync).toBe(false);
    expect(plan.steps).toHaveLength(1);
    expect(plan.steps[0]?.command).toEqual(["iptables-restore", "--noflush", "--wait"]);
    expect(calls.map((c) => c.argv)).toEqual(["iptables-save"]);
  });

  test("firewall - FORWARD policy DROP with forward rules off is reported", async () => {
    const { run } = fake(() => ok("*filter\n:FORWARD DROP [0:0]\nCOMMIT\n"));
    const plan = await new IptablesFirewall({
      run,
      spec: { ...spec, forwardRules: false, ipMasq: false },
    }).plan();
    expect(plan.findings.map((f) => f.code)).toEqual([FindingCode.ForwardDropWithoutRules]);
  });
});

const EMPTY_CHAINS = JSON.stringify({ nftables: [{ metainfo: {} }] });
const NO_TABLE = fail(1, "Error: No such file or directory\nlist table ip weft");

describe("firewall nft apply (fake runner)", () => {
  test("firewall - nft fully-random refused falls back once", async () => {
    let applied = 0;
    const { run, calls } = fake((argv, stdin) => {
      if (argv.join(" ") === "nft -j list table ip weft") return NO_TABLE;
      if (argv.join(" ") === "nft -j list chains") return ok(EMPTY_CHAINS);
      if (argv.join(" ") === "nft -f -") {
        applied += 1;
        return stdin?.includes("fully-random")
          ? fail(1, "Error: Could not process rule: Not supported")
          : ok();
      }
      return undefined;
    });
    const fw = new NftablesFirewall({ run, spec });
    const result = await fw.apply();
    expect(applied).toBe(2);
    expect(result.findings.map((f) => f.code)).toEqual([FindingCode.RandomFullyUnsupported]);
    expect(calls[2]?.stdin).not.toContain("fully-random");
    expect(fw.describe().randomFully).toBe(false);
  });

  test("firewall - nft mode keeps the iptables forward accept when iptables' FORWARD chain exists", async () => {
    const chains = JSON.stringify({
      nftables: [
        {
          chain: { family: "ip", table: "filter", name: "FORWARD", hook: "forward", policy: "drop", prio: 0 },
        },
      ],
    });
    const { run, calls } = fake((argv) => {
      const cmd = argv.join(" ");
      if (cmd === "nft -j list table ip weft") return NO_TABLE;
      if (cmd === "nft -j list chains") return ok(chains);
      if (cmd === "nft -f -" || cmd === "iptables-save" || cmd.startsWith("iptables-restore")) return ok();
      return undefined;
    });
    const result = await new NftablesFirewall({ run, spec }).apply();
    expect(calls.map((c) => c.argv)).toEqual([
      "nft -j list table ip weft",
      "nft -f -",
      "nft -j list chains",
      "iptables-save",
      "iptables-restore --noflush --wait",
    ]);
    expect(calls[4]?.stdin).toContain(":WEFT-FWD");
    expect(calls[4]?.stdin).not.toContain("WEFT-POSTRTG");
    expect(result.findings.map((f) => f.code)).toEqual([FindingCode.IptablesForwardBridge]);
  });

  test("firewall - nft mode reports a foreign forward chain that drops by policy", async () => {
    const chains = JSON.stringify({
      nftables: [
        { chain: { family: "inet", table: "fw", name: "fwd", hook: "forward", policy: "drop", prio: 0 } },
      ],
    });
    const { run } = fake((argv) => {
      const cmd = argv.join(" ");
      if (cmd === "nft -j list table ip weft") return NO_TABLE;
      if (cmd === "nft -j list chains") return ok(chains);
      return undefined;
    });
    const plan = await new NftablesFirewall({ run, spec }).plan();
    expect(plan.findings.map((f) => [f.code, f.subject])).toEqual([
      [FindingCode.ForeignForwardDrop, "inet fw fwd"],
    ]);
    expect(plan.steps.map((s) => s.command.join(" "))).toEqual(["nft -f -"]);
  });

  test("firewall - factory and mode switch cleanup", async () => {
    expect(modeFromConfig(true)).toBe(FirewallMode.Nftables);
    expect(createFirewall({ mode: modeFromConfig(false), spec, run: fake().run }).mode).toBe("iptables");
    expect(createFirewall({ mode: "nftables", spec, run: fake().run })).toBeInstanceOf(NftablesFirewall);
    const present = fake(() => ok());
    expect(await removeOtherMode("iptables", present.run)).toBe(true);
    expect(present.calls.map((c) => c.argv)).toEqual(["nft list table ip weft", "nft delete table ip weft"]);
    expect(await removeOtherMode("iptables", fake(() => fail(127, "nft: not found")).run)).toBe(false);
    expect(await removeOtherMode("nftables", fake().run)).toBe(false);
  });
});

describe("firewall sysctl (fake reader)", () => {
  const reader = (values: Record<string, string>) => async (path: string) => {
    const value = values[path];
    if (value === undefined) throw new FirewallError(`ENOENT: ${path}`);
    return `${value}\n`;
  };

  test("firewall - sysctl findings for ip_forward=0 and strict rp_filter on the interface", async () => {
    const findings = await checkSysctls(
      "eth0.100",
      reader({
        "/proc/sys/net/ipv4/ip_forward": "0",
        "/proc/sys/net/ipv4/conf/all/rp_filter": "0",
        "/proc/sys/net/ipv4/conf/eth0.100/rp_filter": "1",
      }),
    );
    expect(findings.map((f) => [f.code, f.subject, f.value])).toEqual([
      [FindingCode.IpForwardDisabled, "net.ipv4.ip_forward", "0"],
      [FindingCode.RpFilterStrict, "net.ipv4.conf.eth0.100.rp_filter", "1"],
    ]);
  });

  test("firewall - sysctl loose rp_filter wins over strict (max of all and iface) and a missing iface is reported", async () => {
    const loose = await checkSysctls(
      "eth0",
      reader({
        "/proc/sys/net/ipv4/ip_forward": "1",
        "/proc/sys/net/ipv4/conf/all/rp_filter": "1",
        "/proc/sys/net/ipv4/conf/eth0/rp_filter": "2",
      }),
    );
    expect(loose).toEqual([]);
    const gone = await checkSysctls(
      "eth9",
      reader({ "/proc/sys/net/ipv4/ip_forward": "1", "/proc/sys/net/ipv4/conf/all/rp_filter": "0" }),
    );
    expect(gone.map((f) => f.code)).toEqual([FindingCode.SysctlUnreadable]);
  });
});

describe("firewall runner", () => {
  test("firewall - spawnRunner feeds stdin, reports exit codes and 127 for a missing binary", async () => {
    const run = spawnRunner({ timeoutMs: 5_000 });
    expect(await run(["sh", "-c", "tr a-z A-Z; echo oops >&2; exit 3"], "restore me")).toEqual({
      code: 3,
      stdout: "RESTORE ME",
      stderr: "oops\n",
    });
    expect((await run(["weft-no-such-binary-xyz"])).code).toBe(127);
    const slow = await spawnRunner({ timeoutMs: 100 })(["sleep", "5"]);
    expect(slow.code).not.toBe(0);
  });
});
