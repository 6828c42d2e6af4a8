import { expect, test } from "bun:test";
import { planFlannelCleanup, removeFlannelLeftovers } from "../../src/firewall/flannel-leftovers.ts";
import { parseIptablesSave } from "../../src/firewall/iptables-text.ts";

/** What flanneld v0.28.9 leaves with --ip-masq (its 12 FLANNEL lines), next to docker's and weft's rules. */
const SAVED = `*nat
:PREROUTING ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:FLANNEL-POSTRTG - [0:0]
:WEFT-POSTRTG - [0:0]
-A POSTROUTING -m comment --comment "flanneld masq" -j FLANNEL-POSTRTG
-A POSTROUTING -m comment --comment "weft:masq" -j WEFT-POSTRTG
-A FLANNEL-POSTRTG -m mark --mark 0x4000/0x4000 -m comment --comment "flanneld masq" -j RETURN
-A FLANNEL-POSTRTG -s 10.5.72.0/24 -d 10.5.0.0/16 -m comment --comment "flanneld masq" -j RETURN
-A FLANNEL-POSTRTG -s 10.5.0.0/16 -d 10.5.72.0/24 -m comment --comment "flanneld masq" -j RETURN
-A FLANNEL-POSTRTG ! -s 10.5.0.0/16 -d 10.5.72.0/24 -m comment --comment "flanneld masq" -j RETURN
-A FLANNEL-POSTRTG -s 10.5.0.0/16 ! -d 224.0.0.0/4 -m comment --comment "flanneld masq" -j MASQUERADE --random-fully
-A FLANNEL-POSTRTG ! -s 10.5.0.0/16 -d 10.5.0.0/16 -m comment --comment "flanneld masq" -j MASQUERADE --random-fully
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:FLANNEL-FWD - [0:0]
:DOCKER - [0:0]
-A FORWARD -m comment --comment "flanneld forward" -j FLANNEL-FWD
-A FORWARD -o docker0 -j DOCKER
-A FLANNEL-FWD -s 10.5.0.0/16 -m comment --comment "flanneld forward" -j ACCEPT
-A FLANNEL-FWD -d 10.5.0.0/16 -m comment --comment "flanneld forward" -j ACCEPT
COMMIT
`;

test("flannel leftovers - one transaction deletes the jumps, then flushes and deletes flanneld's chains; nothing else", () => {
  const { script, removed } = planFlannelCleanup(parseIptablesSave(SAVED));
  expect(script).toBe(`*filter
-D FORWARD -m comment --comment "flanneld forward" -j FLANNEL-FWD
-F FLANNEL-FWD
-X FLANNEL-FWD
COMMIT
*nat
-D POSTROUTING -m comment --comment "flanneld masq" -j FLANNEL-POSTRTG
-F FLANNEL-POSTRTG
-X FLANNEL-POSTRTG
COMMIT
`);
  expect(removed).toContain("nat: chain FLANNEL-POSTRTG (6 rules)");
  expect(removed).toContain("filter: chain FLANNEL-FWD (2 rules)");
});

test("flannel leftovers - nothing of flanneld's: no transaction at all", async () => {
  const clean = SAVED.split("\n")
    .filter((l) => !l.includes("FLANNEL"))
    .join("\n");
  expect(planFlannelCleanup(parseIptablesSave(clean))).toEqual({ script: "", removed: [] });
  const calls: string[] = [];
  const removed = await removeFlannelLeftovers(async (argv) => {
    calls.push(argv.join(" "));
    return argv[0] === "iptables-save"
      ? { code: 0, stdout: clean, stderr: "" }
      : { code: 1, stdout: "", stderr: "" };
  });
  expect(removed).toEqual([]);
  expect(calls).toEqual([
    "iptables-save",
    "nft list table ip flannel-ipv4",
    "nft list table ip6 flannel-ipv6",
  ]);
});
