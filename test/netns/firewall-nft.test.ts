/**
 * The nftables mode against the real kernel (nft 1.0.6), in namespaces created here and removed
 * afterwards; every nft/iptables command runs through `ip netns exec <ns>`. Also records how an
 * iptables FORWARD policy DROP (Docker) interacts with our nftables accept.
 */
import { expect, test } from "bun:test";
import { FindingCode } from "../../src/firewall/findings.ts";
import { removeOtherMode } from "../../src/firewall/firewall.ts";
import { IptablesFirewall } from "../../src/firewall/iptables.ts";
import { NftablesFirewall } from "../../src/firewall/nftables.ts";
import type { FirewallSpec } from "../../src/firewall/rules.ts";
import type { Netns } from "../../src/netns/netns.ts";
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
if (!usable)
  console.warn("firewall nft netns tests skipped: they need root and `ip netns` (network namespaces)");

const spec: FirewallSpec = {
  network: "10.5.0.0/16",
  subnet: "10.5.72.0/24",
  ipMasq: true,
  forwardRules: true,
};

/** `nft list table ip weft` as nft 1.0.6 prints it after apply. */
const EXPECTED_TABLE = `table ip weft {
	chain forward {
		type filter hook forward priority filter; policy accept;
		ip saddr 10.5.0.0/16 accept comment "weft:fwd"
		ip daddr 10.5.0.0/16 accept comment "weft:fwd"
	}

	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		meta mark & 0x00004000 == 0x00004000 return comment "weft:masq"
		ip saddr 10.5.72.0/24 ip daddr 10.5.0.0/16 return comment "weft:masq"
		ip saddr 10.5.0.0/16 ip daddr 10.5.72.0/24 return comment "weft:masq"
		ip saddr != 10.5.0.0/16 ip daddr 10.5.72.0/24 return comment "weft:masq"
		ip saddr 10.5.0.0/16 ip daddr != 224.0.0.0/4 masquerade fully-random comment "weft:masq"
		ip saddr != 10.5.0.0/16 ip daddr 10.5.0.0/16 masquerade fully-random comment "weft:masq"
	}
}
`;

async function table(ns: Netns): Promise<string> {
  return (await ns.exec(["nft", "list", "table", "ip", "weft"], { allowFailure: true })).stdout;
}

/** Handles of the rules in one chain of our table, in order. */
async function handles(ns: Netns, chain: string): Promise<number[]> {
  const doc = JSON.parse(await must(ns, ["nft", "-j", "list", "chain", "ip", "weft", chain])) as {
    nftables: { rule?: { handle: number } }[];
  };
  return doc.nftables.flatMap((o) => (o.rule === undefined ? [] : [o.rule.handle]));
}

describeNetns("firewall nftables in a namespace", () => {
  const { namespace, routed } = scratchTopologies("wfn");

  test("firewall - nft apply installs exactly the expected table in one transaction", async () => {
    const ns = await namespace();
    const { run, calls } = nsRunner(ns);
    const result = await new NftablesFirewall({ run, spec }).apply();
    expect(result.changed).toBe(true);
    expect(calls.map((c) => c.argv.join(" "))).toEqual([
      "nft -j list table ip weft",
      "nft -f -",
      "nft -j list chains",
    ]);
    expect(await table(ns)).toBe(EXPECTED_TABLE);
  });

  test("firewall - a second nft apply only reads (table and chain list), no transaction", async () => {
    const ns = await namespace();
    const { run, calls } = nsRunner(ns);
    const fw = new NftablesFirewall({ run, spec });
    await fw.apply();
    calls.length = 0;
    expect((await fw.apply()).changed).toBe(false);
    expect(calls.map((c) => c.argv.join(" "))).toEqual(["nft -j list table ip weft", "nft -j list chains"]);
  });

  test("firewall - an nft rule deleted by hand is detected and repaired by ensure()", async () => {
    const ns = await namespace();
    const fw = new NftablesFirewall({ run: nsRunner(ns).run, spec });
    await fw.apply();
    const [first] = await handles(ns, "postrouting");
    await must(ns, ["nft", "delete", "rule", "ip", "weft", "postrouting", "handle", String(first)]);
    expect(await table(ns)).not.toBe(EXPECTED_TABLE);
    const repaired = await fw.ensure();
    expect(repaired.lines).toEqual([
      'nft: + postrouting: meta mark & 0x4000 == 0x4000 return comment "weft:masq"',
    ]);
    expect(await table(ns)).toBe(EXPECTED_TABLE);
    expect((await fw.ensure()).changed).toBe(false);
  });

  test("firewall - a network change swaps nft masquerade rules in one transaction", async () => {
    const ns = await namespace();
    const { run, calls } = nsRunner(ns);
    const fw = new NftablesFirewall({ run, spec });
    await fw.apply();
    calls.length = 0;
    fw.setSpec({ ...spec, network: "10.6.0.0/16", subnet: "10.6.9.0/24" });
    await fw.apply();
    expect(calls.filter((c) => c.argv.join(" ") === "nft -f -")).toHaveLength(1);
    expect(await table(ns)).toBe(
      EXPECTED_TABLE.replaceAll("10.5.72.0/24", "10.6.9.0/24").replaceAll("10.5.0.0", "10.6.0.0"),
    );
  });

  test("firewall - foreign nft tables survive apply and remove", async () => {
    const ns = await namespace();
    const foreign =
      "table inet foreign {\n\tchain c {\n\t\tip saddr 1.2.3.4 counter packets 0 bytes 0 drop\n\t}\n}\n";
    await ns.exec(["nft", "add", "table", "inet", "foreign"]);
    await ns.exec(["nft", "add", "chain", "inet", "foreign", "c"]);
    await ns.exec([
      "nft",
      "add",
      "rule",
      "inet",
      "foreign",
      "c",
      "ip",
      "saddr",
      "1.2.3.4",
      "counter",
      "drop",
    ]);
    const fw = new NftablesFirewall({ run: nsRunner(ns).run, spec });
    await fw.apply();
    expect(await must(ns, ["nft", "list", "table", "inet", "foreign"])).toBe(foreign);
    await fw.remove();
    expect(await table(ns)).toBe("");
    expect(await must(ns, ["nft", "list", "table", "inet", "foreign"])).toBe(foreign);
  });

  test("firewall - nft accept alone cannot override iptables FORWARD policy DROP; the iptables bridge can", async () => {
    const r = await routed();
    const local = { ...spec, subnet: "10.5.1.0/24" };
    await must(r.m, ["iptables", "-P", "FORWARD", "DROP"]);
    expect(await r.ping()).toBe(false);

    // flanneld's nftables behaviour: only the nft table. The packet is accepted there and dropped by
    // iptables-nft's ip filter FORWARD base chain: a drop in any base chain on the hook wins.
    const { run } = nsRunner(r.m);
    const alone = new NftablesFirewall({ run, spec: local, iptablesBridge: false });
    await alone.apply();
    expect(await table(r.m)).toContain("ip saddr 10.5.0.0/16 accept");
    expect(await r.ping()).toBe(false);

    // weft's default: the iptables WEFT-FWD accept is kept next to the table while FORWARD exists.
    const bridged = new NftablesFirewall({ run, spec: local });
    const result = await bridged.apply();
    expect(result.findings.map((f) => f.code)).toEqual([FindingCode.IptablesForwardBridge]);
    expect(await weftSaveLines(r.m)).toEqual([
      ":WEFT-FWD - [0:0]",
      '-A FORWARD -m comment --comment "weft:fwd" -j WEFT-FWD',
      '-A WEFT-FWD -s 10.5.0.0/16 -m comment --comment "weft:fwd" -j ACCEPT',
      '-A WEFT-FWD -d 10.5.0.0/16 -m comment --comment "weft:fwd" -j ACCEPT',
    ]);
    expect(await r.ping()).toBe(true);

    await bridged.remove();
    expect(await weftSaveLines(r.m)).toEqual([]);
    expect(await table(r.m)).toBe("");
    expect(await r.ping()).toBe(false);
  });

  test("firewall - a native nft forward chain with policy drop is reported, not edited", async () => {
    const r = await routed();
    await must(r.m, ["nft", "add", "table", "inet", "host"]);
    await must(r.m, [
      "nft",
      "add chain inet host hostfwd { type filter hook forward priority 0; policy drop; }",
    ]);
    const result = await new NftablesFirewall({ run: nsRunner(r.m).run, spec }).apply();
    expect(result.findings.map((f) => [f.code, f.subject])).toEqual([
      [FindingCode.ForeignForwardDrop, "inet host hostfwd"],
    ]);
    expect(await r.ping()).toBe(false);
    expect(await must(r.m, ["nft", "list", "chain", "inet", "host", "hostfwd"])).toContain("policy drop");
  });

  test("firewall - switching modes in either direction leaves no gap and no leftovers", async () => {
    const r = await routed();
    const local = { ...spec, subnet: "10.5.1.0/24" };
    await must(r.m, ["nft", "add", "table", "inet", "host"]);
    await must(r.m, [
      "nft",
      "add chain inet host hostfwd { type filter hook forward priority 0; policy accept; }",
    ]);
    const run = nsRunner(r.m).run;
    await must(r.m, ["iptables", "-P", "FORWARD", "DROP"]);
    await new IptablesFirewall({ run, spec: local }).apply();
    expect(await r.ping()).toBe(true);

    // iptables → nftables: WEFT-POSTRTG goes, WEFT-FWD stays (bridge, FORWARD exists).
    const nft = new NftablesFirewall({ run, spec: local });
    const loss = await lossDuring(r, 40, 5, async () => {
      await nft.apply();
    });
    expect(loss.lost).toBe(0);
    expect((await weftSaveLines(r.m)).some((l) => l.includes("WEFT-POSTRTG"))).toBe(false);
    expect(await table(r.m)).toContain("chain postrouting");

    // nftables → iptables: the agent applies iptables first, then removes the other mode's table.
    await new IptablesFirewall({ run, spec: local }).apply();
    expect(await removeOtherMode("iptables", run)).toBe(true);
    expect(await table(r.m)).toBe("");
    expect(await weftSaveLines(r.m)).toHaveLength(12);
    expect(await r.ping()).toBe(true);
  });

  test("firewall - nft forced re-apply never leaves a moment without the masquerade rules", async () => {
    const r = await routed();
    const fw = new NftablesFirewall({ run: nsRunner(r.m).run, spec: { ...spec, subnet: "10.5.1.0/24" } });
    await fw.apply();
    // Control: a flush of our postrouting chain with a pause before the refill lets datagrams out
    // un-NATed, which is what this test would see if a transaction had a gap.
    const control = await sourcesDuring(r, 80, 5, async () => {
      await must(r.m, ["nft", "flush", "chain", "ip", "weft", "postrouting"]);
      await Bun.sleep(150);
      await fw.apply();
    });
    expect(control.from["10.5.1.2"] ?? 0).toBeGreaterThan(0);
    const ours = await sourcesDuring(r, 150, 4, async () => {
      for (let i = 0; i < 25; i += 1) await fw.apply({ force: true });
    });
    expect(ours.sent).toBeGreaterThanOrEqual(150);
    expect(ours.from).toEqual({ "192.168.77.1": ours.sent });
  }, 30_000);

  test("firewall - nft masquerades pod traffic leaving the Network and not pod-to-pod traffic", async () => {
    const r = await routed();
    const fw = new NftablesFirewall({ run: nsRunner(r.m).run, spec: { ...spec, subnet: "10.5.1.0/24" } });
    await fw.apply();
    expect(await sourcesDuring(r, 5, 5, async () => {})).toEqual({ sent: 5, from: { "192.168.77.1": 5 } });
    expect(await sourcesDuring(r, 5, 5, async () => {}, "10.5.2.2")).toEqual({
      sent: 5,
      from: { "10.5.1.2": 5 },
    });
    await fw.remove();
    expect(await sourcesDuring(r, 5, 5, async () => {})).toEqual({ sent: 5, from: { "10.5.1.2": 5 } });
  });
});
