import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Check, Verdict } from "../../../src/cli/doctor/finding.ts";
import { existsInEtcdV2, readStore } from "../../../src/cli/doctor/store-facts.ts";
import {
  agentRule,
  alternativeConfigKeys,
  configRule,
  leaseRule,
  otherKeyspaceCandidate,
  storeFlags,
  storeRule,
} from "../../../src/cli/doctor/store-rules.ts";
import { parseFlags } from "../../../src/config/flags.ts";
import { parseLease } from "../../../src/lease/lease.ts";
import { parseCidr } from "../../../src/net/ipv4.ts";
import { openStore, storeDrivers, storeNames } from "../../../stores/index.ts";

const CONFIG = '{"Network":"192.168.0.0/16","SubnetLen":26,"Backend":{"Type":"host-gw"}}';
const NETWORK = parseCidr("192.168.0.0/16");

function lease(subnet: string, publicIP: string) {
  const parsed = parseLease(
    {
      key: `/p/subnets/${subnet.replace("/", "-")}`,
      value: JSON.stringify({ PublicIP: publicIP, BackendType: "host-gw" }),
      revision: 1n,
      expires: true,
    },
    { network: NETWORK, subnetLen: undefined, subnets: "/p/subnets/" },
  );
  if (!parsed.ok) throw new Error(parsed.reason);
  return parsed.lease;
}

describe("doctor - config", () => {
  test("doctor - alternative keys: doubled slash, no slash, and where the agent itself looks", () => {
    const candidates = alternativeConfigKeys("/cluster/network/");
    expect(candidates.map((c) => c.key)).toEqual([
      "/cluster/network//config",
      "/cluster/networkconfig",
      "cluster/network/config",
      "/coreos.com/network/config",
    ]);
    expect(candidates[0]?.where).toBe(
      "found at /cluster/network//config (the prefix was written with a trailing slash)",
    );
    expect(candidates[2]?.fix).toContain("run with --etcd-prefix=cluster/network");
    expect(alternativeConfigKeys("/coreos.com/network").map((c) => c.key)).not.toContain(
      "/coreos.com/network/config",
    );
    expect(
      alternativeConfigKeys("/coreos.com/network/config").find((c) => c.key === "/coreos.com/network/config")
        ?.where,
    ).toBe("--etcd-prefix=/coreos.com/network/config names the config key itself");
  });

  test("doctor - a config only in etcd's v2 keyspace says to use --store=etcd2 or copy it", () => {
    const f = configRule("/coreos.com/network/config", "etcd", {
      kind: "missing",
      elsewhere: [otherKeyspaceCandidate("etcd", "/coreos.com/network/config", "/coreos.com/network")],
    });
    expect(f.status).toBe(Verdict.Fail);
    expect(f.finding).toContain("found in etcd's v2 keyspace");
    expect(f.fix).toContain("run with --store=etcd2, or copy it with weft config set");
  });

  test("doctor - a missing config with nothing elsewhere says how to write it", () => {
    const f = configRule("/p/config", "sqlite", { kind: "missing", elsewhere: [] });
    expect(f).toMatchObject({ check: Check.Config, status: Verdict.Fail });
    expect(f.fix).toContain("weft config set --store=sqlite --etcd-prefix=/p < net-conf.json");
  });

  test("doctor - an invalid config is a FAIL carrying the parser's message", () => {
    const f = configRule("/p/config", "etcd", { kind: "invalid", message: "SubnetLen 40: must be 0..32" });
    expect(f.finding).toBe("/p/config is invalid: SubnetLen 40: must be 0..32");
    expect(f.status).toBe(Verdict.Fail);
  });
});

describe("doctor - lease", () => {
  const leases = [lease("192.168.1.0/26", "172.17.42.41"), lease("192.168.1.64/26", "172.17.42.42")];
  const base = {
    prefix: "/p",
    publicIP: "172.17.42.41",
    leases,
    subnetFile: "/run/flannel/subnet.env",
    envSubnet: parseCidr("192.168.1.0/26"),
    envMissing: false,
  };

  test("doctor - the own lease matching FLANNEL_SUBNET is ok", () => {
    expect(leaseRule(base)).toEqual({
      check: Check.Lease,
      status: Verdict.Ok,
      finding: "lease 192.168.1.0/26 (PublicIP 172.17.42.41) matches FLANNEL_SUBNET",
      fix: "",
    });
  });

  test("doctor - no lease with this host's PublicIP is a FAIL", () => {
    const f = leaseRule({ ...base, publicIP: "172.17.42.43" });
    expect(f.status).toBe(Verdict.Fail);
    expect(f.finding).toBe("no lease under /p/subnets/ has PublicIP 172.17.42.43: this host holds no subnet");
  });

  test("doctor - subnet.env naming another subnet than the lease is a FAIL", () => {
    const f = leaseRule({ ...base, envSubnet: parseCidr("192.168.1.64/26") });
    expect(f.status).toBe(Verdict.Fail);
    expect(f.finding).toContain(
      "FLANNEL_SUBNET is in 192.168.1.64/26 but this host's lease is 192.168.1.0/26",
    );
    expect(f.fix).toContain("restart weft");
  });

  test("doctor - a missing subnet.env is a FAIL; two own leases a WARN", () => {
    expect(leaseRule({ ...base, envMissing: true, envSubnet: undefined }).finding).toContain(
      "does not exist",
    );
    const two = leaseRule({ ...base, leases: [...leases, lease("192.168.2.0/26", "172.17.42.41")] });
    expect(two.status).toBe(Verdict.Warn);
    expect(two.finding).toContain("192.168.1.0/26, 192.168.2.0/26");
  });
});

describe("doctor - store and agent", () => {
  test("doctor - an unreachable store is a FAIL naming the store's flags", () => {
    const f = storeRule("etcd", ["http://127.0.0.1:2379"], { ok: false, error: "connection refused" });
    expect(f.finding).toBe("cannot use etcd at http://127.0.0.1:2379: connection refused");
    expect(f.fix).toContain("--etcd-endpoints");
    expect(storeRule("nats", ["nats://x:4222"], { ok: true }).status).toBe(Verdict.Ok);
  });

  test("doctor - each store's flags in a fix are read from its driver descriptor", () => {
    expect(storeFlags("etcd")).toBe(
      "--store=etcd, --etcd-endpoints, --etcd-username/--etcd-password, --etcd-certfile/--etcd-keyfile/--etcd-cafile",
    );
    expect(storeFlags("sqlite")).toBe("--store=sqlite, --store-endpoints=<database file>");
    // Consul reads the TLS flags too (issue 12, item 19), NATS also the user and password.
    expect(storeFlags("consul")).toContain("--etcd-cafile");
    expect(storeFlags("nats")).toContain("--etcd-username/--etcd-password");
    for (const name of storeNames) {
      const driver = storeDrivers[name];
      const text = storeFlags(name);
      expect(text.startsWith(`--store=${name}, `)).toBe(true);
      // Whatever flags a driver declares (more may come) are named, and only its own.
      for (const other of storeNames)
        for (const flag of storeDrivers[other].flags)
          expect(text.includes(`--${flag.name}`)).toBe(other === name);
      expect(text.includes("--etcd-certfile")).toBe(driver.uses.tls);
      expect(text.includes("--etcd-username")).toBe(driver.uses.userPassword);
      expect(text.includes("--etcd-endpoints")).toBe(driver.endpoints === "etcd-urls");
    }
  });

  test("doctor - the agent's answer: ready ok, not ready FAIL with the reason, none FAIL", () => {
    const ready = agentRule({ kind: "answered", where: "/s", ready: { ready: true, reason: "" }, peers: 2 });
    expect(ready).toMatchObject({ status: Verdict.Ok, finding: "the agent answers on /s: ready (2 peers)" });
    const waiting = agentRule({
      kind: "answered",
      where: "/s",
      ready: { ready: false, reason: "waiting for the network config at /p/config" },
    });
    expect(waiting.status).toBe(Verdict.Fail);
    expect(waiting.finding).toBe(
      "the agent answers on /s but is not ready: waiting for the network config at /p/config",
    );
    expect(agentRule({ kind: "unreachable", message: "is weft running?" }).status).toBe(Verdict.Fail);
  });
});

describe("doctor - reading the store", () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "weft-doctor-"));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const flagsFor = (db: string, prefix: string) =>
    parseFlags(["--store=sqlite", `--store-endpoints=${db}`, `--etcd-prefix=${prefix}`], {});

  test("doctor - a SQLite file that does not exist is reported and not created", async () => {
    const db = join(dir, "absent.db");
    const facts = await readStore(flagsFor(db, "/p"));
    expect(facts.reach).toEqual({ ok: false, error: `the database file ${db} does not exist` });
    expect(await Bun.file(db).exists()).toBe(false);
  });

  test("doctor - a config under flanneld's default prefix is found when --etcd-prefix differs", async () => {
    const db = join(dir, "default-prefix.db");
    const store = openStore("sqlite", { endpoints: [db] });
    await store.create("/coreos.com/network/config", CONFIG);
    await store.close();
    const facts = await readStore(flagsFor(db, "/other/network"));
    expect(facts.reach.ok).toBe(true);
    expect(facts.config?.kind).toBe("missing");
    const f = configRule(facts.key, "sqlite", facts.config ?? { kind: "missing", elsewhere: [] });
    expect(f.finding).toBe(
      "no network config at /other/network/config; found under flanneld's default prefix /coreos.com/network",
    );
    expect(f.fix).toContain("--etcd-prefix=/coreos.com/network");
  });

  test("doctor - the config and the valid leases are read; invalid leases are left out", async () => {
    const db = join(dir, "leases.db");
    const store = openStore("sqlite", { endpoints: [db] });
    await store.create("/p/config", CONFIG);
    await store.create("/p/subnets/192.168.1.0-26", '{"PublicIP":"172.17.42.41","BackendType":"host-gw"}');
    await store.create("/p/subnets/10.9.0.0-24", '{"PublicIP":"172.17.42.42","BackendType":"host-gw"}');
    await store.close();
    const facts = await readStore(flagsFor(db, "/p"));
    expect(facts.config?.kind).toBe("valid");
    expect(facts.leases?.map((l) => l.subnetText)).toEqual(["192.168.1.0/26"]);
  });

  test("doctor - the etcd v2 lookup GETs /v2/keys<key> with the credentials and trusts only 200", async () => {
    const seen: { path: string; auth: string | null }[] = [];
    const server = Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      fetch(req) {
        const url = new URL(req.url);
        seen.push({ path: url.pathname, auth: req.headers.get("authorization") });
        return url.pathname === "/v2/keys/coreos.com/network/config"
          ? Response.json({ action: "get", node: { key: "/coreos.com/network/config", value: CONFIG } })
          : new Response("404 page not found\n", { status: 404 });
      },
    });
    try {
      const flags = parseFlags(
        [`--etcd-endpoints=http://127.0.0.1:${server.port}`, "--etcd-username=root", "--etcd-password=pw"],
        {},
      );
      expect(await existsInEtcdV2(flags, "/coreos.com/network/config", 2_000)).toBe(true);
      expect(await existsInEtcdV2(flags, "/other/config", 2_000)).toBe(false);
      expect(seen[0]).toEqual({
        path: "/v2/keys/coreos.com/network/config",
        auth: `Basic ${Buffer.from("root:pw").toString("base64")}`,
      });
    } finally {
      await server.stop(true);
    }
  });
});
