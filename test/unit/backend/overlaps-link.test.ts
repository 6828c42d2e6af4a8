// A lease for a network of the external interface (issue 12, item 3): its route would replace the
// kernel's connected route (same destination) or shadow part of it. Both backends skip it with a
// reason, and the skip is logged and counted once per lease revision.
import { expect, test } from "bun:test";
import { SkipReporter } from "../../../src/agent/status.ts";
import type { PeerContext } from "../../../src/backend/backend.ts";
import { hostGwPeer } from "../../../src/backend/host-gw.ts";
import { type Lease, parseLease } from "../../../src/lease/lease.ts";
import { createLogger } from "../../../src/log.ts";
import { Metrics } from "../../../src/metrics.ts";
import { parseCidr } from "../../../src/net/ipv4.ts";

const rules = { network: parseCidr("10.100.0.0/16"), subnetLen: 24, subnets: "/p/subnets/" };
function lease(subnet: string, publicIP: string, revision = 1n): Lease {
  const value = JSON.stringify({ PublicIP: publicIP, BackendType: "host-gw" });
  const parsed = parseLease(
    { key: `/p/subnets/${subnet.replace("/", "-")}`, value, revision, expires: true },
    rules,
  );
  if (!parsed.ok) throw new Error(parsed.reason);
  return parsed.lease;
}
// eth0 holds 172.17.42.41/16 and a second network, 10.100.200.41/24, inside the Network.
const ctx: PeerContext = {
  ownSubnet: parseCidr("10.100.1.0/24"),
  ext: {
    index: 2,
    name: "eth0",
    mtu: 1500,
    addresses: [parseCidr("172.17.42.41/16", "keep"), parseCidr("10.100.200.41/24", "keep")],
  },
  protocol: 77,
};

test("backend - a lease for a network of the external interface gets no route, with the reason", () => {
  const outcome = hostGwPeer(lease("10.100.200.0/24", "172.17.42.42"), ctx);
  expect(outcome.kind).toBe("skipped");
  if (outcome.kind === "skipped") {
    expect(outcome.skipped.reason).toBe("overlaps-link");
    expect(outcome.skipped.detail).toContain("10.100.200.0/24, a network of eth0");
  }
  // Its neighbours in the Network are routed as before.
  expect(hostGwPeer(lease("10.100.2.0/24", "172.17.42.42"), ctx).kind).toBe("entries");
  // The own lease stays the own lease.
  expect(hostGwPeer(lease("10.100.1.0/24", "172.17.42.41"), ctx).kind).toBe("own");
});

test("backend - the skip is logged and counted once per lease revision", () => {
  const lines: string[] = [];
  const metrics = new Metrics();
  const reporter = new SkipReporter(createLogger({ write: (l) => lines.push(l) }), metrics);
  for (const revision of [1n, 1n, 1n, 2n]) {
    const l = lease("10.100.200.0/24", "172.17.42.42", revision);
    const outcome = hostGwPeer(l, ctx);
    reporter.report(l.key, outcome.kind === "skipped" ? outcome.skipped : undefined);
  }
  expect(metrics.leasesRejected.get({ reason: "overlaps-link" })).toBe(2);
  expect(lines.filter((l) => l.includes("claims a network of the external interface"))).toHaveLength(2);
});
