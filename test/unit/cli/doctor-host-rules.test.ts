import { describe, expect, test } from "bun:test";
import {
  Check,
  combine,
  exitStatus,
  fail,
  ok,
  renderFindings,
  Verdict,
  warn,
} from "../../../src/cli/doctor/finding.ts";
import { toThresh } from "../../../src/cli/doctor/host-facts.ts";
import {
  flannelObjects,
  foreignForwardDrops,
  forwardRule,
  gcThreshRule,
  leftoverRule,
  mtuRule,
  secondAgentRule,
  suggestedGcThresh,
  sysctlRules,
} from "../../../src/cli/doctor/host-rules.ts";
import { parseIptablesSave } from "../../../src/firewall/iptables-text.ts";
import { checkSysctls, type SysctlReader } from "../../../src/firewall/sysctl.ts";

const NET = "192.168.0.0/16";

/** An iptables-save dump with FORWARD's policy and, optionally, weft's chain and flanneld's. */
function dump(options: { policy: string; weft?: boolean; flannel?: boolean }): string {
  const filter = [
    "*filter",
    ":INPUT ACCEPT [0:0]",
    `:FORWARD ${options.policy} [0:0]`,
    ":OUTPUT ACCEPT [0:0]",
    ...(options.weft === true ? [":WEFT-FWD - [0:0]"] : []),
    ...(options.flannel === true ? [":FLANNEL-FWD - [0:0]"] : []),
    ...(options.weft === true ? ['-A FORWARD -m comment --comment "weft:fwd" -j WEFT-FWD'] : []),
    ...(options.flannel === true
      ? ['-A FORWARD -m comment --comment "flanneld forward" -j FLANNEL-FWD']
      : []),
    ...(options.weft === true
      ? [
          `-A WEFT-FWD -s ${NET} -m comment --comment "weft:fwd" -j ACCEPT`,
          `-A WEFT-FWD -d ${NET} -m comment --comment "weft:fwd" -j ACCEPT`,
        ]
      : []),
    ...(options.flannel === true
      ? [`-A FLANNEL-FWD -s ${NET} -m comment --comment "flanneld forward" -j ACCEPT`]
      : []),
    "COMMIT",
  ];
  const nat =
    options.flannel === true
      ? [
          "*nat",
          ":POSTROUTING ACCEPT [0:0]",
          ":FLANNEL-POSTRTG - [0:0]",
          '-A POSTROUTING -m comment --comment "flanneld masq" -j FLANNEL-POSTRTG',
          `-A FLANNEL-POSTRTG -s ${NET} ! -d 224.0.0.0/4 -m comment --comment "flanneld masq" -j MASQUERADE --random-fully`,
          "COMMIT",
        ]
      : [];
  return [...filter, ...nat, ""].join("\n");
}

function reader(values: Record<string, string>): SysctlReader {
  return async (path) => {
    const value = values[path];
    if (value === undefined) throw new Error(`ENOENT: ${path}`);
    return `${value}\n`;
  };
}

describe("doctor - findings", () => {
  test("doctor - exit status is 1 only when a check FAILs; WARN alone is 0", () => {
    expect(exitStatus([ok(Check.Mtu, "fine"), warn(Check.RpFilter, "strict", "loosen")])).toBe(0);
    expect(exitStatus([ok(Check.Mtu, "fine"), fail(Check.IpForward, "off", "turn on")])).toBe(1);
    expect(exitStatus([])).toBe(0);
  });

  test("doctor - one line per check with status, finding and fix", () => {
    const text = renderFindings([
      ok(Check.Mtu, "docker0 MTU 1450 ≤ FLANNEL_MTU 1450"),
      fail(Check.IpForward, "net.ipv4.ip_forward is 0", "sysctl -w net.ipv4.ip_forward=1"),
    ]);
    expect(text.split("\n")).toEqual([
      "ok    mtu         docker0 MTU 1450 ≤ FLANNEL_MTU 1450",
      "FAIL  ip_forward  net.ipv4.ip_forward is 0 — fix: sysctl -w net.ipv4.ip_forward=1",
      "",
    ]);
  });

  test("doctor - combining keeps the worst status and only the problems", () => {
    const c = combine(Check.Mtu, [
      ok(Check.Mtu, "a fine"),
      warn(Check.Mtu, "b", "fix b"),
      fail(Check.Mtu, "c", "fix c"),
    ]);
    expect(c).toEqual({ check: Check.Mtu, status: Verdict.Fail, finding: "b; c", fix: "fix b; fix c" });
    expect(combine(Check.Mtu, [])).toBeUndefined();
  });
});

describe("doctor - kernel settings", () => {
  test("doctor - ip_forward 0 is a FAIL naming the sysctl command", async () => {
    const findings = await checkSysctls(
      "eth0",
      reader({
        "/proc/sys/net/ipv4/ip_forward": "0",
        "/proc/sys/net/ipv4/conf/all/rp_filter": "0",
        "/proc/sys/net/ipv4/conf/eth0/rp_filter": "0",
      }),
    );
    const [forward, rp] = sysctlRules(findings, "eth0");
    expect(forward).toEqual({
      check: Check.IpForward,
      status: Verdict.Fail,
      finding: "net.ipv4.ip_forward is 0: this host forwards no pod traffic",
      fix: "sysctl -w net.ipv4.ip_forward=1 and persist it in /etc/sysctl.d/",
    });
    expect(rp?.status).toBe(Verdict.Ok);
  });

  test("doctor - strict rp_filter on the external interface is a WARN naming that interface", async () => {
    const findings = await checkSysctls(
      "eth0",
      reader({
        "/proc/sys/net/ipv4/ip_forward": "1",
        "/proc/sys/net/ipv4/conf/all/rp_filter": "0",
        "/proc/sys/net/ipv4/conf/eth0/rp_filter": "1",
      }),
    );
    const [forward, rp] = sysctlRules(findings, "eth0");
    expect(forward?.status).toBe(Verdict.Ok);
    expect(rp?.status).toBe(Verdict.Warn);
    expect(rp?.finding).toContain("net.ipv4.conf.eth0.rp_filter is 1 (strict");
    expect(rp?.fix).toBe("sysctl -w net.ipv4.conf.eth0.rp_filter=2 (loose) and persist it in /etc/sysctl.d/");
  });
});

describe("doctor - FORWARD policy", () => {
  test("doctor - policy DROP without WEFT-FWD is a FAIL", () => {
    const f = forwardRule({
      saved: parseIptablesSave(dump({ policy: "DROP" })),
      network: NET,
      nftChains: [],
    });
    expect(f.status).toBe(Verdict.Fail);
    expect(f.finding).toBe(
      `iptables FORWARD policy is DROP and weft's WEFT-FWD accept rules are missing: traffic of ${NET} routed through this host is dropped`,
    );
    expect(f.fix).toContain("--iptables-forward-rules=true");
    expect(f.fix).toContain(`iptables -I FORWARD -s ${NET} -j ACCEPT`);
  });

  test("doctor - policy DROP with WEFT-FWD accepting the Network is ok; ACCEPT is ok", () => {
    const withRules = forwardRule({
      saved: parseIptablesSave(dump({ policy: "DROP", weft: true })),
      network: NET,
      nftChains: [],
    });
    expect(withRules).toEqual(
      ok(Check.ForwardPolicy, `iptables FORWARD policy is DROP; WEFT-FWD accepts ${NET}`),
    );
    const accept = forwardRule({
      saved: parseIptablesSave(dump({ policy: "ACCEPT" })),
      network: NET,
      nftChains: [],
    });
    expect(accept.status).toBe(Verdict.Ok);
  });

  test("doctor - WEFT-FWD for another Network does not count", () => {
    const f = forwardRule({
      saved: parseIptablesSave(dump({ policy: "DROP", weft: true })),
      network: "10.5.0.0/16",
      nftChains: [],
    });
    expect(f.status).toBe(Verdict.Fail);
    expect(f.finding).toContain("incomplete");
  });

  test("doctor - a foreign nftables forward chain with policy drop is a WARN; iptables' and weft's are not", () => {
    const chains = [
      { family: "ip", table: "filter", name: "FORWARD", hook: "forward", policy: "drop" },
      { family: "ip", table: "weft", name: "forward", hook: "forward", policy: "accept" },
      { family: "inet", table: "firewalld", name: "filter_FORWARD", hook: "forward", policy: "drop" },
      { family: "inet", table: "mine", name: "in", hook: "input", policy: "drop" },
    ];
    expect(foreignForwardDrops(chains).map((c) => c.table)).toEqual(["firewalld"]);
    const f = forwardRule({
      saved: parseIptablesSave(dump({ policy: "ACCEPT" })),
      network: NET,
      nftChains: chains,
    });
    expect(f.status).toBe(Verdict.Warn);
    expect(f.finding).toContain("inet firewalld filter_FORWARD");
    expect(f.fix).toContain(`nft insert rule inet firewalld filter_FORWARD ip saddr ${NET} accept`);
  });

  test("doctor - unreadable iptables is a WARN, not a pass", () => {
    const f = forwardRule({
      saved: { error: "iptables-save exited 127" },
      network: NET,
      nftChains: undefined,
    });
    expect(f.status).toBe(Verdict.Warn);
    expect(f.finding).toContain("iptables-save exited 127");
  });
});

describe("doctor - MTU", () => {
  const base = {
    flannelMtu: 1450,
    subnetFile: "/run/flannel/subnet.env",
    docker0Mtu: undefined,
    backend: "vxlan" as const,
    device: undefined,
    ext: { name: "eth0", mtu: 1500 },
  };

  test("doctor - docker0 larger than FLANNEL_MTU is a FAIL with docker's --mtu", () => {
    const f = mtuRule({ ...base, docker0Mtu: 1500 });
    expect(f?.status).toBe(Verdict.Fail);
    expect(f?.finding).toContain("docker0's MTU is 1500, larger than FLANNEL_MTU=1450");
    expect(f?.fix).toContain("--mtu=1450");
  });

  test("doctor - the vxlan device's MTU must equal FLANNEL_MTU", () => {
    expect(mtuRule({ ...base, device: { name: "flannel.1", mtu: 1450 }, docker0Mtu: 1450 })?.status).toBe(
      Verdict.Ok,
    );
    const f = mtuRule({ ...base, device: { name: "flannel.1", mtu: 1400 } });
    expect(f?.status).toBe(Verdict.Fail);
    expect(f?.finding).toContain("flannel.1's MTU is 1400 but FLANNEL_MTU is 1450");
  });

  test("doctor - FLANNEL_MTU above what the external interface carries is a FAIL", () => {
    expect(mtuRule({ ...base, flannelMtu: 1500 })?.finding).toContain(
      "eth0's MTU 1500 − 50 (VXLAN header) = 1450",
    );
    expect(mtuRule({ ...base, flannelMtu: 1500 })?.status).toBe(Verdict.Fail);
    expect(mtuRule({ ...base, backend: "host-gw", flannelMtu: 1500 })?.status).toBe(Verdict.Ok);
    expect(mtuRule({ ...base, backend: "host-gw", flannelMtu: 9000 })?.status).toBe(Verdict.Fail);
  });

  test("doctor - no FLANNEL_MTU, no MTU finding (the lease check reports the missing subnet.env)", () => {
    expect(mtuRule({ ...base, flannelMtu: undefined, docker0Mtu: 9000 })).toBeUndefined();
  });
});

describe("doctor - neighbour table", () => {
  const thresh = { thresh1: 128, thresh2: 512, thresh3: 1024 };

  test("doctor - peers at gc_thresh3 FAIL, above gc_thresh2 WARN, below ok", () => {
    expect(gcThreshRule(thresh, 1024)?.status).toBe(Verdict.Fail);
    expect(gcThreshRule(thresh, 1024)?.finding).toContain("neighbour table overflow");
    expect(gcThreshRule(thresh, 600)?.status).toBe(Verdict.Warn);
    expect(gcThreshRule(thresh, 1)?.status).toBe(Verdict.Ok);
    expect(gcThreshRule(thresh, 1)?.finding).toBe(
      "net.ipv4.neigh.default.gc_thresh1/2/3 are 128/512/1024: room for 1 peer",
    );
    expect(gcThreshRule(thresh, undefined)).toBeUndefined();
  });

  test("doctor - the fix gives thresholds with room for four entries per peer", () => {
    expect(suggestedGcThresh(10)).toEqual({ thresh1: 256, thresh2: 512, thresh3: 1024 });
    expect(suggestedGcThresh(2000)).toEqual({ thresh1: 2048, thresh2: 4096, thresh3: 8192 });
    expect(gcThreshRule(thresh, 2000)?.fix).toContain("net.ipv4.neigh.default.gc_thresh3=8192");
  });

  test("doctor - thresholds read from ip -j ntable must be whole numbers", () => {
    expect(toThresh([128, 512, 1024])).toEqual(thresh);
    expect(toThresh(["128", "x", "1024"])).toBeUndefined();
  });
});

describe("doctor - flanneld", () => {
  test("doctor - leftover FLANNEL-* chains are named with the commands that remove them, jumps first", () => {
    const objects = flannelObjects(parseIptablesSave(dump({ policy: "ACCEPT", flannel: true })), [
      { family: "ip", name: "flannel-ipv4" },
      { family: "ip", name: "weft" },
    ]);
    expect(objects.map((o) => o.what)).toEqual([
      "iptables filter FLANNEL-FWD",
      "iptables nat FLANNEL-POSTRTG",
      "nftables ip flannel-ipv4",
    ]);
    expect(objects[0]?.remove).toEqual([
      'iptables -t filter -D FORWARD -m comment --comment "flanneld forward" -j FLANNEL-FWD',
      "iptables -t filter -F FLANNEL-FWD",
      "iptables -t filter -X FLANNEL-FWD",
    ]);
    const f = leftoverRule(objects, false);
    expect(f.status).toBe(Verdict.Warn);
    expect(f.finding).toContain("left over");
    expect(f.fix).toContain("nft delete table ip flannel-ipv4");
    expect(leftoverRule([], false).status).toBe(Verdict.Ok);
  });

  test("doctor - a running flanneld is a FAIL naming its pid", () => {
    const f = secondAgentRule([{ pid: 4242, comm: "flanneld" }]);
    expect(f.status).toBe(Verdict.Fail);
    expect(f.finding).toContain("pid 4242");
    expect(f.fix).toContain("systemctl disable --now flanneld");
    expect(secondAgentRule([]).status).toBe(Verdict.Ok);
  });
});
