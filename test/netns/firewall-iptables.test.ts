/**
 * The iptables mode against the real kernel (iptables 1.8.9, whichever backend the host selects), in
 * namespaces created here and removed afterwards. Every iptables command runs through
 * `ip netns exec <ns>`; nothing touches the test runner's own namespace.
 */
import { expect, test } from "bun:test";
import { FindingCode } from "../../src/firewall/findings.ts";
import { IptablesFirewall } from "../../src/firewall/iptables.ts";
import type { FirewallSpec } from "../../src/firewall/rules.ts";
import { describeNetns, netnsUsable } from "../harness/netns.ts";
import {
  lossDuring,
  must,
  nsRunner,
  scratchTopologies,
  sourcesDuring,
  weftSaveLines,
} from "./fixtures/firewall-topology.ts";

const usable = netnsUsable;
if (!usable) console.warn("firewall netns tests skipped: they need root and `ip netns` (network namespaces)");

const spec: FirewallSpec = {
  network: "10.5.0.0/16",
  subnet: "10.5.72.0/24",
  ipMasq: true,
  forwardRules: true,
};

const EXPECTED_SAVE_LINES = [
  ":WEFT-FWD - [0:0]",
  '-A FORWARD -m comment --comment "weft:fwd" -j WEFT-FWD',
  '-A WEFT-FWD -s 10.5.0.0/16 -m comment --comment "weft:fwd" -j ACCEPT',
  '-A WEFT-FWD -d 10.5.0.0/16 -m comment --comment "weft:fwd" -j ACCEPT',
  ":WEFT-POSTRTG - [0:0]",
  '-A POSTROUTING -m comment --comment "weft:masq" -j WEFT-POSTRTG',
  '-A WEFT-POSTRTG -m mark --mark 0x4000/0x4000 -m comment --comment "weft:masq" -j RETURN',
  '-A WEFT-POSTRTG -s 10.5.72.0/24 -d 10.5.0.0/16 -m comment --comment "weft:masq" -j RETURN',
  '-A WEFT-POSTRTG -s 10.5.0.0/16 -d 10.5.72.0/24 -m comment --comment "weft:masq" -j RETURN',
  '-A WEFT-POSTRTG ! -s 10.5.0.0/16 -d 10.5.72.0/24 -m comment --comment "weft:masq" -j RETURN',
  '-A WEFT-POSTRTG -s 10.5.0.0/16 ! -d 224.0.0.0/4 -m comment --comment "weft:masq" -j MASQUERADE --random-fully',
  '-A WEFT-POSTRTG ! -s 10.5.0.0/16 -d 10.5.0.0/16 -m comment --comment "weft:masq" -j MASQUERADE --random-fully',
];

describeNetns("firewall iptables in a namespace", () => {
  const { namespace, routed } = scratchTopologies("wfw");

  test("firewall - apply installs exactly the expected iptables-save lines", async () => {
    const ns = await namespace();
    const { run, calls } = nsRunner(ns);
    const result = await new IptablesFirewall({ run, spec }).apply();
    expect(result.changed).toBe(true);
    expect(calls.map((c) => c.argv[0])).toEqual(["iptables-save", "iptables-restore"]);
    expect(await weftSaveLines(ns)).toEqual(EXPECTED_SAVE_LINES);
  });

  test("firewall - a second apply is a no-op: only iptables-save runs", async () => {
    const ns = await namespace();
    const { run, calls } = nsRunner(ns);
    const fw = new IptablesFirewall({ run, spec });
    await fw.apply();
    calls.length = 0;
    const result = await fw.apply();
    expect(result.changed).toBe(false);
    expect(calls.map((c) => c.argv)).toEqual([["iptables-save"]]);
    expect(fw.describe().randomFully).toBe(true);
  });

  test("firewall - a rule or jump deleted by hand is detected and repaired by ensure()", async () => {
    const ns = await namespace();
    const { run } = nsRunner(ns);
    const fw = new IptablesFirewall({ run, spec });
    await fw.apply();
    await must(ns, [
      "iptables",
      "-D",
      "WEFT-FWD",
      "-d",
      "10.5.0.0/16",
      "-m",
      "comment",
      "--comment",
      "weft:fwd",
      "-j",
      "ACCEPT",
    ]);
    await must(ns, [
      "iptables",
      "-t",
      "nat",
      "-D",
      "POSTROUTING",
      "-m",
      "comment",
      "--comment",
      "weft:masq",
      "-j",
      "WEFT-POSTRTG",
    ]);
    expect(await weftSaveLines(ns)).not.toEqual(EXPECTED_SAVE_LINES);
    const repaired = await fw.ensure();
    expect(repaired.changed).toBe(true);
    expect(repaired.lines).toEqual([
      'filter: + -A WEFT-FWD -d 10.5.0.0/16 -m comment --comment "weft:fwd" -j ACCEPT',
      'nat: + -I POSTROUTING 1 -m comment --comment "weft:masq" -j WEFT-POSTRTG',
    ]);
    expect(await weftSaveLines(ns)).toEqual(EXPECTED_SAVE_LINES);
    expect((await fw.ensure()).changed).toBe(false);
  });

  test("firewall - a duplicated jump and a foreign rule inside our chain are repaired", async () => {
    const ns = await namespace();
    const { run } = nsRunner(ns);
    const fw = new IptablesFirewall({ run, spec });
    await fw.apply();
    await must(ns, ["iptables", "-A", "FORWARD", "-j", "WEFT-FWD"]);
    await must(ns, ["iptables", "-I", "WEFT-FWD", "1", "-j", "DROP"]);
    await fw.ensure();
    expect(await weftSaveLines(ns)).toEqual(EXPECTED_SAVE_LINES);
  });

  test("firewall - foreign rules, a foreign chain and the FORWARD policy are untouched", async () => {
    const ns = await namespace();
    const { run } = nsRunner(ns);
    await must(ns, ["iptables", "-P", "FORWARD", "DROP"]);
    await must(ns, ["iptables", "-A", "FORWARD", "-s", "1.2.3.0/24", "-j", "ACCEPT"]);
    await must(ns, ["iptables", "-N", "FOREIGN"]);
    await must(ns, ["iptables", "-A", "FOREIGN", "-d", "9.9.9.9/32", "-j", "DROP"]);
    await must(ns, ["iptables", "-A", "FORWARD", "-j", "FOREIGN"]);
    await must(ns, ["iptables", "-t", "nat", "-A", "POSTROUTING", "-s", "172.17.0.0/16", "-j", "MASQUERADE"]);
    const foreign = async () =>
      (await must(ns, ["iptables-save"]))
        .split("\n")
        .filter((l) => /FOREIGN|1\.2\.3|172\.17|^:FORWARD/.test(l));
    const before = await foreign();
    expect(before).toHaveLength(6);

    const fw = new IptablesFirewall({ run, spec });
    await fw.apply();
    expect(await foreign()).toEqual(before);
    const forward = (await must(ns, ["iptables", "-S", "FORWARD"])).trim().split("\n");
    expect(forward[1]).toBe('-A FORWARD -m comment --comment "weft:fwd" -j WEFT-FWD'); // inserted at the top

    await fw.remove();
    expect(await foreign()).toEqual(before);
    expect(await weftSaveLines(ns)).toEqual([]);
  });

  test("firewall - FORWARD policy DROP drops routed traffic without our rules and passes it with them", async () => {
    const r = await routed();
    expect(await r.ping()).toBe(true);
    await must(r.m, ["iptables", "-P", "FORWARD", "DROP"]);
    expect(await r.ping()).toBe(false);
    const { run } = nsRunner(r.m);
    const fw = new IptablesFirewall({ run, spec: { ...spec, subnet: "10.5.1.0/24" } });
    await fw.apply();
    expect(await r.ping()).toBe(true);
    await fw.remove();
    expect(await r.ping()).toBe(false);
  });

  test("firewall - an earlier DROP rule in FORWARD does not defeat the jump (inserted at the top)", async () => {
    const r = await routed();
    await must(r.m, ["iptables", "-A", "FORWARD", "-j", "DROP"]);
    expect(await r.ping()).toBe(false);
    await new IptablesFirewall({ run: nsRunner(r.m).run, spec }).apply();
    expect(await r.ping()).toBe(true);
  });

  test("firewall - a network change swaps the rules in one transaction", async () => {
    const ns = await namespace();
    const { run, calls } = nsRunner(ns);
    const fw = new IptablesFirewall({ run, spec });
    await fw.apply();
    calls.length = 0;
    fw.setSpec({ ...spec, network: "10.6.0.0/16", subnet: "10.6.9.0/24" });
    const result = await fw.apply();
    expect(result.changed).toBe(true);
    expect(calls.map((c) => c.argv[0])).toEqual(["iptables-save", "iptables-restore"]);
    const lines = await weftSaveLines(ns);
    expect(lines.join("\n")).not.toContain("10.5.");
    expect(lines).toEqual(
      EXPECTED_SAVE_LINES.map((l) =>
        l.replaceAll("10.5.72.0/24", "10.6.9.0/24").replaceAll("10.5.0.0", "10.6.0.0"),
      ),
    );
  });

  test("firewall - turning --ip-masq off removes the nat chain and its jump only", async () => {
    const ns = await namespace();
    const { run } = nsRunner(ns);
    const fw = new IptablesFirewall({ run, spec });
    await fw.apply();
    fw.setSpec({ ...spec, ipMasq: false });
    await fw.apply();
    expect(await weftSaveLines(ns)).toEqual(EXPECTED_SAVE_LINES.slice(0, 4));
  });

  test("firewall - a restarted agent over existing state runs nothing, and repairs drift without touching jumps", async () => {
    const ns = await namespace();
    await new IptablesFirewall({ run: nsRunner(ns).run, spec }).apply();

    const second = nsRunner(ns);
    const restarted = new IptablesFirewall({ run: second.run, spec });
    expect((await restarted.plan()).inSync).toBe(true);
    await restarted.apply();
    expect(second.calls.map((c) => c.argv)).toEqual([["iptables-save"], ["iptables-save"]]);

    await must(ns, ["iptables", "-t", "nat", "-D", "WEFT-POSTRTG", "1"]);
    const third = nsRunner(ns);
    await new IptablesFirewall({ run: third.run, spec }).apply();
    const script = third.calls.find((c) => c.argv[0] === "iptables-restore")?.stdin ?? "";
    expect(script).toContain(":WEFT-POSTRTG - [0:0]");
    expect(script).not.toMatch(/FORWARD|POSTROUTING|^-F|^-X/m);
    expect(await weftSaveLines(ns)).toEqual(EXPECTED_SAVE_LINES);
  });

  test("firewall - re-applying never leaves a moment without the forward accept (no packet lost)", async () => {
    const r = await routed();
    await must(r.m, ["iptables", "-P", "FORWARD", "DROP"]);
    const fw = new IptablesFirewall({ run: nsRunner(r.m).run, spec: { ...spec, subnet: "10.5.1.0/24" } });
    await fw.apply();
    // Control: flanneld's pattern (flush, then refill in a second exec) with a pause between loses packets.
    const control = await lossDuring(r, 60, 10, async () => {
      await must(r.m, ["iptables", "-F", "WEFT-FWD"]);
      await Bun.sleep(200);
      await fw.apply();
    });
    expect(control.lost).toBeGreaterThan(0);
    const ours = await lossDuring(r, 150, 5, async () => {
      for (let i = 0; i < 25; i += 1) await fw.apply({ force: true });
    });
    expect(ours.transmitted).toBeGreaterThanOrEqual(150);
    expect(ours.lost).toBe(0);
  }, 20_000);

  test("firewall - FORWARD DROP with forward rules disabled is reported as a finding", async () => {
    const ns = await namespace();
    await must(ns, ["iptables", "-P", "FORWARD", "DROP"]);
    const fw = new IptablesFirewall({ run: nsRunner(ns).run, spec: { ...spec, forwardRules: false } });
    const result = await fw.apply();
    expect(result.findings.map((f) => f.code)).toEqual([FindingCode.ForwardDropWithoutRules]);
  });

  test("firewall - iptables masquerades pod traffic leaving the Network and not pod-to-pod traffic", async () => {
    const r = await routed();
    const fw = new IptablesFirewall({ run: nsRunner(r.m).run, spec: { ...spec, subnet: "10.5.1.0/24" } });
    await fw.apply();
    expect(await sourcesDuring(r, 5, 5, async () => {})).toEqual({ sent: 5, from: { "192.168.77.1": 5 } });
    expect(await sourcesDuring(r, 5, 5, async () => {}, "10.5.2.2")).toEqual({
      sent: 5,
      from: { "10.5.1.2": 5 },
    });
    await fw.remove();
    expect(await sourcesDuring(r, 5, 5, async () => {})).toEqual({ sent: 5, from: { "10.5.1.2": 5 } });
  });

  test("firewall - iptables forced re-apply never leaves a moment without the masquerade rules", async () => {
    const r = await routed();
    const fw = new IptablesFirewall({ run: nsRunner(r.m).run, spec: { ...spec, subnet: "10.5.1.0/24" } });
    await fw.apply();
    const ours = await sourcesDuring(r, 150, 4, async () => {
      for (let i = 0; i < 25; i += 1) await fw.apply({ force: true });
    });
    expect(ours.sent).toBeGreaterThanOrEqual(150);
    expect(ours.from).toEqual({ "192.168.77.1": ours.sent });
  }, 30_000);
});
