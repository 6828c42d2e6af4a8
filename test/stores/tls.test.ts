/**
 * TLS with client certificates and credentials on every store, against real servers on 127.0.0.1:
 * etcd 3.4 with `--client-cert-auth` (v3 JSON gateway and v2), Consul with HTTPS `verify_incoming`
 * and ACLs default-deny (bootstrapped here, a token with key_prefix and session_prefix write rules),
 * nats-server with `--tlsverify` and a user/password. Certificates come from `openssl` (harness/tls.ts).
 * Stores are opened the way the agent opens them: `parseFlags` → `storeFromFlags`. The failures a
 * person makes (wrong CA, missing file, http:// with TLS files, a denied token) must say what to fix.
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { join } from "node:path";
import { storeFromFlags } from "../../src/cli/store-from-flags.ts";
import { parseFlags } from "../../src/config/flags.ts";
import { isWeftError, WeftErrorCode } from "../../src/errors.ts";
import { isStoreError, StoreErrorCode } from "../../stores/errors.ts";
import type { Store } from "../../stores/store.ts";
import { type ConsulServer, startConsul } from "../harness/consul.ts";
import { type NatsServer, startNats } from "../harness/nats.ts";
import { clientTls, type EtcdServer, startEtcd } from "../harness/servers.ts";
import { makeTestCerts, type TestCerts } from "../harness/tls.ts";

setDefaultTimeout(30_000);
const MAIN = join(import.meta.dir, "..", "..", "src", "main.ts");
const CANARY = `canary-${crypto.randomUUID()}`;
let certs: TestCerts;
let unique = 0;

beforeAll(() => {
  certs = makeTestCerts();
});
afterAll(() => certs?.remove());

const tlsFlags = (ca = certs.caFile) => [
  `--etcd-certfile=${certs.clientCert}`,
  `--etcd-keyfile=${certs.clientKey}`,
  `--etcd-cafile=${ca}`,
];

function open(args: readonly string[], env: Record<string, string> = {}): Store {
  return storeFromFlags(parseFlags(args, env));
}

async function failure(promise: Promise<unknown>): Promise<Error> {
  try {
    await promise;
  } catch (err) {
    return err as Error;
  }
  throw new Error("expected a failure, but the call succeeded");
}

function thrown(fn: () => unknown): Error {
  try {
    fn();
  } catch (err) {
    return err as Error;
  }
  throw new Error("expected a throw");
}

/** create (with TTL), get, list, renew, a watch event and delete: the whole contract path once. */
async function roundTrip(store: Store): Promise<void> {
  const prefix = `/coreos.com/network/subnets/tls-${process.pid}-${++unique}/`;
  const key = `${prefix}10.5.1.0-24`;
  const { revision } = await store.list(prefix);
  const stop = new AbortController();
  const events = store
    .watch(prefix, { afterRevision: revision, signal: stop.signal })
    [Symbol.asyncIterator]();
  const seen = (async () => {
    for (let i = 0; i < 10; i++) {
      const next = await events.next();
      if (next.done === true) return false;
      const e = next.value;
      if (e.type === "put" && e.kv.key === key) return true;
      if (e.type === "resync" && e.entries.some((kv) => kv.key === key)) return true;
    }
    return false;
  })();
  try {
    await store.create(key, '{"PublicIP":"10.0.0.1"}', { ttlSeconds: 30 });
    expect((await store.get(key))?.value).toBe('{"PublicIP":"10.0.0.1"}');
    expect((await store.list(prefix)).entries.map((kv) => kv.key)).toEqual([key]);
    expect((await store.renew(key)).key).toBe(key);
    expect(await Promise.race([seen, Bun.sleep(10_000).then(() => "timeout")])).toBe(true);
    expect(await store.delete(key)).toBe(true);
  } finally {
    stop.abort();
    await store.close();
  }
}

/** `weft <args>` from source; resolves with its exit code and output. */
async function weft(args: readonly string[], env: Record<string, string> = {}, stdin?: string) {
  const p = Bun.spawn([process.execPath, MAIN, ...args], {
    env: { PATH: process.env.PATH ?? "/usr/bin:/bin", ...env },
    stdin: stdin === undefined ? "ignore" : new Blob([stdin]),
    stdout: "pipe",
    stderr: "pipe",
  });
  const [stdout, stderr, code] = await Promise.all([
    new Response(p.stdout).text(),
    new Response(p.stderr).text(),
    p.exited,
  ]);
  return { code, stdout, stderr };
}

/**
 * Runs the agent until its log says why it cannot read the network config (or it exits), then stops
 * it. It never gets further than the store (no config exists), so the kernel is never touched.
 */
async function agentStart(args: readonly string[], env: Record<string, string> = {}) {
  const socket = join(certs.dir, `agent-${++unique}.sock`);
  const p = Bun.spawn([process.execPath, MAIN, `--control-socket=${socket}`, ...args], {
    env: { PATH: process.env.PATH ?? "/usr/bin:/bin", ...env },
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  let log = "";
  const reader = (async () => {
    for await (const chunk of p.stderr) {
      log += new TextDecoder().decode(chunk);
      if (/network config/.test(log)) return "logged";
    }
    return "ended";
  })();
  const seen = await Promise.race([reader, Bun.sleep(15_000).then(() => "timeout")]);
  if (seen !== "ended") p.kill("SIGTERM");
  const code = await p.exited;
  const exited = seen === "ended";
  return { exited, code, log };
}

/** What every TLS failure must not say: the unreachable-server advice. */
const SERVER_DOWN = "check that the server runs";

describe("tls - etcd with --client-cert-auth (v3 gateway and v2)", () => {
  let etcd: EtcdServer;
  beforeAll(async () => {
    etcd = await startEtcd({ enableV2: true, tls: certs });
  });
  afterAll(() => etcd?.stop());

  for (const store of ["etcd", "etcd2"] as const) {
    const flags = () => [`--store=${store}`, `--etcd-endpoints=${etcd.endpoint}`];

    test(`tls - ${store}: create, get, list, renew, watch and delete over TLS with a client certificate`, async () => {
      await roundTrip(open([...flags(), ...tlsFlags()]));
    });

    test(`tls - ${store}: a CA that did not sign the server's certificate is an AUTH error naming the CA file`, async () => {
      const err = await failure(open([...flags(), ...tlsFlags(certs.otherCaFile)]).get("/x"));
      expect(isStoreError(err, StoreErrorCode.Auth)).toBe(true);
      expect(err.message).toContain("the server's certificate is not trusted");
      expect(err.message).toContain(`${certs.otherCaFile} (--etcd-cafile)`);
      expect(err.message).not.toContain(SERVER_DOWN);
    });

    test(`tls - ${store}: without a client certificate the refused handshake says a client certificate may be needed`, async () => {
      const err = await failure(open([...flags(), `--etcd-cafile=${certs.caFile}`]).get("/x"));
      expect(isStoreError(err, StoreErrorCode.Auth)).toBe(true);
      expect(err.message).toContain("may require a client certificate (--etcd-certfile and --etcd-keyfile)");
      expect(err.message).not.toContain(SERVER_DOWN);
    });
  }

  test("tls - etcd: a missing cert, key or CA file stops before any request, naming the flag and the file", () => {
    for (const flag of ["--etcd-certfile", "--etcd-keyfile", "--etcd-cafile"]) {
      const args = [
        `--etcd-endpoints=${etcd.endpoint}`,
        ...tlsFlags().map((a) => (a.startsWith(`${flag}=`) ? `${flag}=/nonexistent/weft-tls.pem` : a)),
      ];
      const err = thrown(() => open(args));
      expect(isWeftError(err, WeftErrorCode.FlagInvalid)).toBe(true);
      expect(err.message).toStartWith(`${flag}=/nonexistent/weft-tls.pem: cannot read the file (ENOENT`);
    }
    // From the environment, the variable is named.
    const err = thrown(() =>
      open([`--etcd-endpoints=${etcd.endpoint}`], { FLANNELD_ETCD_CAFILE: "/nonexistent/ca.pem" }),
    );
    expect(err.message).toStartWith("FLANNELD_ETCD_CAFILE=/nonexistent/ca.pem (--etcd-cafile): cannot read");
    // A key where the certificate belongs.
    const swapped = thrown(() =>
      open([
        `--etcd-endpoints=${etcd.endpoint}`,
        `--etcd-certfile=${certs.clientKey}`,
        `--etcd-keyfile=${certs.clientKey}`,
      ]),
    );
    expect(swapped.message).toBe(`--etcd-certfile=${certs.clientKey}: the file holds no PEM certificate`);
  });

  test("tls - etcd: http:// endpoints with TLS files are refused, naming the endpoint and https://", () => {
    const plain = etcd.endpoint.replace("https://", "http://");
    const err = thrown(() => open([`--etcd-endpoints=${plain}`, ...tlsFlags()]));
    expect(isWeftError(err, WeftErrorCode.FlagInvalid)).toBe(true);
    expect(err.message).toContain(`--etcd-endpoints: ${plain} is plain http://`);
    expect(err.message).toContain(`use https:// (${etcd.endpoint})`);
    // flanneld's default endpoints are http:// too.
    expect(thrown(() => open([`--etcd-cafile=${certs.caFile}`])).message).toStartWith(
      "--etcd-endpoints (default): http://127.0.0.1:4001,http://127.0.0.1:2379 are plain http://, but --etcd-cafile is given",
    );
  });

  test("tls - weft config set and get work through TLS with the flags; TLS mistakes exit 1 naming them", async () => {
    const args = [
      "--store=etcd",
      `--etcd-endpoints=${etcd.endpoint}`,
      "--etcd-prefix=/weft-tls/net",
      ...tlsFlags(),
    ];
    const config = '{"Network":"10.5.0.0/16","Backend":{"Type":"host-gw"}}';
    const set = await weft(["config", "set", ...args], {}, config);
    expect(set.stderr).toContain("wrote network config to /weft-tls/net/config");
    expect(set.code).toBe(0);
    const get = await weft(["config", "get", ...args]);
    expect(get.stdout.trim()).toBe(config);
    expect(get.code).toBe(0);
    // Written through the gateway, read back with etcdctl over TLS.
    expect(await etcd.etcdctl("get", "--print-value-only", "/weft-tls/net/config")).toBe(`${config}\n`);

    const wrongCa = await weft(["config", "get", ...args.slice(0, 3), ...tlsFlags(certs.otherCaFile)]);
    expect(wrongCa.code).toBe(1);
    expect(wrongCa.stderr).toContain(`not trusted`);
    expect(wrongCa.stderr).toContain(`${certs.otherCaFile} (--etcd-cafile)`);
    const missing = await weft(["config", "get", ...args, "--etcd-keyfile=/nonexistent/key.pem"]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toStartWith(
      "weft config get: --etcd-keyfile=/nonexistent/key.pem: cannot read the file",
    );
  });

  test("tls - the agent: a missing file or http:// with TLS files exits 1; a wrong CA is its first store log line", async () => {
    const base = [`--etcd-endpoints=${etcd.endpoint}`, "--etcd-prefix=/weft-tls/agent-none"];
    const missing = await agentStart([...base, ...tlsFlags("/nonexistent/ca.pem")]);
    expect(missing.exited).toBe(true);
    expect(missing.code).toBe(1);
    expect(missing.log).toContain("weft: --etcd-cafile=/nonexistent/ca.pem: cannot read the file");

    const plain = await agentStart([
      `--etcd-endpoints=${etcd.endpoint.replace("https:", "http:")}`,
      ...tlsFlags(),
    ]);
    expect(plain.code).toBe(1);
    expect(plain.log).toContain(
      "is plain http://, but --etcd-certfile, --etcd-keyfile, --etcd-cafile are given",
    );

    const wrongCa = await agentStart([...base, ...tlsFlags(certs.otherCaFile)]);
    expect(wrongCa.exited).toBe(false);
    const line = wrongCa.log.split("\n").find((l) => l.includes("network config")) ?? "";
    expect(line).toContain("the server's certificate is not trusted");
    expect(line).toContain(certs.otherCaFile);
    expect(wrongCa.log).not.toContain(SERVER_DOWN);
  });
});

describe("tls - consul over HTTPS with verify_incoming and ACLs default-deny", () => {
  let consul: ConsulServer;
  let token = "";
  beforeAll(async () => {
    consul = await startConsul({ acl: "bootstrap", tls: certs });
    const manage = async (path: string, body: unknown) => {
      const res = await fetch(`${consul.endpoint}${path}`, {
        method: "PUT",
        headers: { "x-consul-token": consul.managementToken ?? "" },
        body: JSON.stringify(body),
        ...clientTls(certs),
      });
      if (!res.ok) throw new Error(`${path}: ${res.status} ${await res.text()}`);
      return (await res.json()) as { SecretID?: string };
    };
    await manage("/v1/acl/policy", {
      Name: "weft",
      Rules: 'key_prefix "coreos.com/network/" { policy = "write" }\nsession_prefix "" { policy = "write" }',
    });
    token = (await manage("/v1/acl/token", { Policies: [{ Name: "weft" }] })).SecretID ?? "";
  }, 60_000);
  afterAll(() => consul?.stop());

  const flags = () => ["--store=consul", `--store-endpoints=${consul.endpoint}`];

  test("tls - consul: create with a session, get, list, renew, watch and delete with a token and a client certificate", async () => {
    await roundTrip(open([...flags(), ...tlsFlags()], { WEFT_CONSUL_TOKEN: token }));
  });

  test("tls - consul: a token the ACL system does not know is an AUTH error naming --consul-token, never the token", async () => {
    const err = await failure(
      open([...flags(), ...tlsFlags(), `--consul-token=${CANARY}`]).get("/coreos.com/network/config"),
    );
    expect(isStoreError(err, StoreErrorCode.Auth)).toBe(true);
    expect(err.message).toContain("ACL not found");
    expect(err.message).toContain("--consul-token");
    expect(err.message).not.toContain(CANARY);
    // Without a token the anonymous token is denied, and the message says which right is missing.
    const anonymous = await failure(open([...flags(), ...tlsFlags()]).get("/coreos.com/network/config"));
    expect(isStoreError(anonymous, StoreErrorCode.Auth)).toBe(true);
    expect(anonymous.message).toContain("lacks permission 'key:read'");
  });

  test("tls - consul: a wrong CA is an AUTH error naming the CA file", async () => {
    const err = await failure(
      open([...flags(), ...tlsFlags(certs.otherCaFile)], { WEFT_CONSUL_TOKEN: token }).get("/x"),
    );
    expect(isStoreError(err, StoreErrorCode.Auth)).toBe(true);
    expect(err.message).toContain(`${certs.otherCaFile} (--etcd-cafile)`);
  });

  test("tls - consul: the default http:// endpoint with TLS files is refused, naming it and https://", () => {
    const err = thrown(() => open(["--store=consul", ...tlsFlags()]));
    expect(err.message).toStartWith(
      "--store-endpoints (default): http://127.0.0.1:8500 is plain http://, but --etcd-certfile, --etcd-keyfile, --etcd-cafile are given for TLS: use https://",
    );
  });

  test("tls - consul: an ACL-denied token is the agent's first store log line and weft config get's error, without the token", async () => {
    const env = { WEFT_CONSUL_TOKEN: CANARY };
    const agent = await agentStart([...flags(), ...tlsFlags()], env);
    expect(agent.exited).toBe(false);
    const line = agent.log.split("\n").find((l) => l.includes("network config")) ?? "";
    expect(line).toContain("ACL not found");
    expect(line).toContain("--consul-token");
    expect(agent.log).not.toContain(CANARY);
    const get = await weft(["config", "get", ...flags(), ...tlsFlags()], env);
    expect(get.code).toBe(1);
    expect(get.stderr).toContain("refused access to /coreos.com/network/config: ACL not found");
    expect(get.stderr + get.stdout).not.toContain(CANARY);
  });
});

describe("tls - nats with --tlsverify and a user/password", () => {
  let nats: NatsServer;
  const password = `pw-${crypto.randomUUID()}`;
  beforeAll(async () => {
    nats = await startNats({ flavour: "2.15", auth: { user: "weft", pass: password }, tls: certs });
  });
  afterAll(() => nats?.stop());

  const flags = () => ["--store=nats", `--store-endpoints=${nats.endpoint}`, "--etcd-username=weft"];

  test("tls - nats: create, get, list, renew, watch and delete over TLS with a client certificate and a password", async () => {
    await roundTrip(open([...flags(), ...tlsFlags()], { FLANNELD_ETCD_PASSWORD: password }));
  });

  test("tls - nats: a wrong CA and a wrong password are AUTH errors saying what to check", async () => {
    const wrongCa = await failure(
      open([...flags(), ...tlsFlags(certs.otherCaFile)], { FLANNELD_ETCD_PASSWORD: password }).get("/x"),
    );
    expect(isStoreError(wrongCa, StoreErrorCode.Auth)).toBe(true);
    expect(wrongCa.message).toContain(`${certs.otherCaFile} (--etcd-cafile)`);
    expect(wrongCa.message).not.toContain(SERVER_DOWN);
    const wrongPassword = await failure(
      open([...flags(), ...tlsFlags()], { FLANNELD_ETCD_PASSWORD: CANARY }).get("/x"),
    );
    expect(isStoreError(wrongPassword, StoreErrorCode.Auth)).toBe(true);
    expect(wrongPassword.message).toContain("--etcd-password");
    expect(wrongPassword.message).not.toContain(CANARY);
  });

  test("tls - nats: TLS files against a server without TLS are an AUTH error saying so", async () => {
    const plain = await startNats({ flavour: "2.15" });
    try {
      const err = await failure(
        open(["--store=nats", `--store-endpoints=${plain.endpoint}`, ...tlsFlags()]).get("/x"),
      );
      expect(isStoreError(err, StoreErrorCode.Auth)).toBe(true);
      expect(err.message).toContain("the server does not offer TLS");
      expect(err.message).not.toContain(SERVER_DOWN);
    } finally {
      await plain.stop();
    }
  });

  test("tls - nats: a missing creds file stops before connecting, naming --nats-creds and the file", () => {
    const err = thrown(() => open([...flags(), ...tlsFlags(), "--nats-creds=/nonexistent/weft.creds"]));
    expect(isWeftError(err, WeftErrorCode.FlagInvalid)).toBe(true);
    expect(err.message).toStartWith("--nats-creds=/nonexistent/weft.creds: cannot read the file (ENOENT");
  });
});
