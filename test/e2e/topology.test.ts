// The routed test topology itself (Cluster.start with `segments`): two L2 segments joined by a router,
// the store on the router's segment-0 address, and what a host-gw agent makes of peers behind it.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { describeNetns } from "../harness/netns.ts";
import { Cluster, eventually, routerAddress, SEED_000_CONFIG, STORE_IP } from "./cluster.ts";

describeNetns("routed segments", () => {
  let cluster: Cluster;
  beforeAll(async () => {
    cluster = await Cluster.start({ store: "etcd", hosts: 3, segments: [2, 1] });
  }, 60_000);
  afterAll(async () => {
    await cluster?.stop();
  }, 60_000);

  test("topology - hosts sit on their segment with the router as default gateway", async () => {
    const hosts = cluster.routed?.hosts ?? [];
    expect(hosts.map((h) => [h.address, h.segment, h.router])).toEqual([
      ["172.17.42.41", 0, "172.17.42.1"],
      ["172.17.42.42", 0, "172.17.42.1"],
      ["172.17.43.41", 1, "172.17.43.1"],
    ]);
    expect(routerAddress(0)).toBe(STORE_IP);
    for (const [i, h] of hosts.entries()) {
      const addr = (await h.ns.ip("-4", "-o", "addr", "show", "dev", "eth0")).stdout;
      expect({ i, addr: addr.match(/inet (\S+)/)?.[1] }).toEqual({ i, addr: `${h.address}/24` });
      const def = (await h.ns.ip("route", "show", "default")).stdout.trim();
      expect(def).toBe(`default via ${h.router} dev eth0`);
    }
    const lan = (await cluster.segment.lan.ip("-4", "-o", "addr", "show")).stdout;
    expect(lan).toContain("br0    inet 172.17.42.1/24");
    expect(lan).toContain("br1    inet 172.17.43.1/24");
    const forward = await cluster.segment.lan.exec(["sysctl", "-n", "net.ipv4.ip_forward"]);
    expect(forward.stdout.trim()).toBe("1");
  });

  test("topology - hosts on different segments ping each other's eth0 through the router (one hop)", async () => {
    const [a, , b] = cluster.routed?.hosts ?? [];
    if (a === undefined || b === undefined) throw new Error("the routed cluster has no hosts 0 and 2");
    for (const [from, to] of [
      [a, b],
      [b, a],
    ] as const) {
      const r = await from.ns.exec(["ping", "-c", "1", "-W", "2", to.address], { allowFailure: true });
      expect({ from: from.address, to: to.address, code: r.code }).toEqual({
        from: from.address,
        to: to.address,
        code: 0,
      });
      // One router on the path: the reply's TTL is 64 − 1.
      expect(r.stdout).toContain("ttl=63");
      expect((await from.ns.ip("route", "get", to.address)).stdout).toContain(`via ${from.router} dev eth0`);
    }
    const same = await a.ns.exec(["ping", "-c", "1", "-W", "2", cluster.host(1).address]);
    expect(same.stdout).toContain("ttl=64");
  });

  test("topology - the store on 172.17.42.1 answers from segment 1", async () => {
    const r = await cluster
      .host(2)
      .ns.exec(["etcdctl", `--endpoints=${cluster.endpoint}`, "endpoint", "health"], {
        allowFailure: true,
      });
    expect(r.code).toBe(0);
  });

  test("topology - a host-gw agent on segment 1 reports the peers on segment 0 as not directly reachable", async () => {
    await cluster.writeConfig(SEED_000_CONFIG);
    for (let i = 0; i < 3; i++) cluster.startAgent(i);
    // Hosts 0 and 1 share segment 0 and route to each other; host 2 is behind the router.
    await eventually("hosts 0 and 1 to route to each other", async () => {
      return (await cluster.routes(0)).length === 1 && (await cluster.routes(1)).length === 1;
    });
    const unreachable = /peer gets no route: not directly reachable.*peer=(172\.17\.4[23]\.\d+)/g;
    const reported = (i: number) =>
      new Set([...(cluster.agents.get(i)?.log() ?? "").matchAll(unreachable)].map((m) => m[1]));
    await eventually(
      "host 2 to report both peers on segment 0",
      () => reported(2).has("172.17.42.41") && reported(2).has("172.17.42.42"),
    );
    await eventually(
      "hosts 0 and 1 to report host 2",
      () => reported(0).has("172.17.43.41") && reported(1).has("172.17.43.41"),
    );
    expect(await cluster.routes(2)).toEqual([]);
    expect(await cluster.routesAll(2)).toEqual([]);
    expect((await cluster.routes(0))[0]).toMatch(/ via 172\.17\.42\.42 dev eth0 proto 77$/);
    expect((await cluster.routes(1))[0]).toMatch(/ via 172\.17\.42\.41 dev eth0 proto 77$/);
  }, 60_000);
});
