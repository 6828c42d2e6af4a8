/**
 * "--X is ignored with --store=Y" must be true: for each store, the credential flags reported as
 * ignored are exactly those its driver does not use, and every flag not reported reaches the driver's
 * requests (HTTP drivers, seen through an injected fetch) or its connect options (NATS).
 */
import { describe, expect, test } from "bun:test";
import { storeOptions } from "../../../src/cli/store-from-flags.ts";
import { parseFlags } from "../../../src/config/flags.ts";
import { openStore } from "../../../stores/index.ts";
import type { StoreName, StoreOptions } from "../../../stores/store.ts";

const CREDENTIALS = {
  "etcd-certfile": "/tls/client.pem",
  "etcd-keyfile": "/tls/client-key.pem",
  "etcd-cafile": "/tls/ca.pem",
  "etcd-username": "weft",
  "etcd-password": "pw-secret",
  "consul-token": "token-secret",
  "nats-creds": "/tls/weft.creds",
} as const;
type Credential = keyof typeof CREDENTIALS;
const ALL = Object.keys(CREDENTIALS) as Credential[];
const TLS: Credential[] = ["etcd-certfile", "etcd-keyfile", "etcd-cafile"];

/** What each driver really uses (stores/*: http.ts TLS, etcd auth, etcd2 basic auth, consul token, nats). */
const USED: Record<StoreName, readonly Credential[]> = {
  etcd: [...TLS, "etcd-username", "etcd-password"],
  etcd2: [...TLS, "etcd-username", "etcd-password"],
  consul: [...TLS, "consul-token"],
  nats: [...TLS, "etcd-username", "etcd-password", "nats-creds"],
  sqlite: [],
};

const ENDPOINTS: Record<StoreName, string> = {
  etcd: "--etcd-endpoints=https://etcd.test:2379",
  etcd2: "--etcd-endpoints=https://etcd.test:2379",
  consul: "--store-endpoints=https://consul.test:8501",
  nats: "--store-endpoints=nats://nats.test:4222",
  sqlite: "--store-endpoints=/tmp/weft-unused.db",
};

interface Seen {
  url: string;
  headers: Record<string, string>;
  body: string;
  tls: unknown;
}

/** A fetch that records each request and answers what a store answers for a missing key. */
function recorder(seen: Seen[]): typeof fetch {
  return Object.assign(
    async (input: string | URL | Request, init?: RequestInit & { tls?: unknown }) => {
      const url = String(input);
      seen.push({
        url,
        headers: Object.fromEntries(new Headers(init?.headers).entries()),
        body: typeof init?.body === "string" ? init.body : "",
        tls: init?.tls,
      });
      if (url.includes("/v3/auth/authenticate")) return Response.json({ header: {}, token: "t0k" });
      if (url.includes("/v3/kv/range")) return Response.json({ header: { revision: "7" } });
      if (url.includes("/v2/keys/"))
        return Response.json(
          { errorCode: 100, message: "Key not found", cause: "/x", index: 7 },
          { status: 404, headers: { "x-etcd-index": "7" } },
        );
      return new Response("", { status: 404, headers: { "x-consul-index": "7" } });
    },
    { preconnect: fetch.preconnect },
  );
}

function flagsFor(store: StoreName) {
  return parseFlags(
    [`--store=${store}`, ENDPOINTS[store], ...ALL.map((name) => `--${name}=${CREDENTIALS[name]}`)],
    {},
  );
}

describe("store flags", () => {
  for (const store of ["etcd", "etcd2", "consul", "nats", "sqlite"] as const) {
    test(`store flags - ${store}: exactly the credential flags its driver does not use are reported ignored`, () => {
      const ignored = flagsFor(store)
        .warnings.map((w) => new RegExp(`^--(\\S+) is ignored with --store=${store}$`).exec(w)?.[1])
        .filter((name) => name !== undefined);
      expect(ignored.sort()).toEqual(ALL.filter((name) => !USED[store].includes(name)).sort());
    });
  }

  const tlsOf = (o: StoreOptions) => o.tls;
  const expectedTls = { certFile: "/tls/client.pem", keyFile: "/tls/client-key.pem", caFile: "/tls/ca.pem" };

  test("store flags - etcd: TLS files go to every request, the username and password to authenticate", async () => {
    const seen: Seen[] = [];
    const options = storeOptions(flagsFor("etcd"));
    expect(tlsOf(options)).toEqual(expectedTls);
    const store = openStore("etcd", { ...options, fetch: recorder(seen) });
    await store.get("/coreos.com/network/config");
    await store.close();
    expect(seen.map((s) => new URL(s.url).pathname)).toEqual(["/v3/auth/authenticate", "/v3/kv/range"]);
    expect(JSON.parse(seen[0]?.body ?? "{}")).toEqual({ name: "weft", password: "pw-secret" });
    expect(seen[1]?.headers.authorization).toBe("t0k");
    for (const s of seen) expect(Object.keys((s.tls ?? {}) as object).sort()).toEqual(["ca", "cert", "key"]);
  });

  test("store flags - etcd2: TLS files and HTTP basic auth on every request", async () => {
    const seen: Seen[] = [];
    const store = openStore("etcd2", { ...storeOptions(flagsFor("etcd2")), fetch: recorder(seen) });
    await store.get("/coreos.com/network/config");
    await store.close();
    expect(seen.length).toBe(1);
    expect(seen[0]?.headers.authorization).toBe(`Basic ${btoa("weft:pw-secret")}`);
    expect(Object.keys((seen[0]?.tls ?? {}) as object).sort()).toEqual(["ca", "cert", "key"]);
  });

  test("store flags - consul: TLS files and the token on every request; no username or password", async () => {
    const seen: Seen[] = [];
    const options = storeOptions(flagsFor("consul"));
    expect(options.username).toBeUndefined();
    expect(options.password).toBeUndefined();
    const store = openStore("consul", { ...options, fetch: recorder(seen) });
    await store.get("/coreos.com/network/config");
    await store.close();
    expect(seen.length).toBe(1);
    expect(seen[0]?.headers["x-consul-token"]).toBe("token-secret");
    expect(Object.keys((seen[0]?.tls ?? {}) as object).sort()).toEqual(["ca", "cert", "key"]);
  });

  test("store flags - nats: TLS files, user, password and creds file reach the connect options; no consul token", () => {
    const options = storeOptions(flagsFor("nats"));
    expect(tlsOf(options)).toEqual(expectedTls);
    expect([options.username, options.password, options.credsFile, options.token]).toEqual([
      "weft",
      "pw-secret",
      "/tls/weft.creds",
      undefined,
    ]);
  });

  test("store flags - sqlite: no credential reaches the driver", () => {
    const options = storeOptions(flagsFor("sqlite"));
    expect([options.tls, options.username, options.password, options.token, options.credsFile]).toEqual([
      undefined,
      undefined,
      undefined,
      undefined,
      undefined,
    ]);
  });

  test("store flags - half a client certificate pair is warned about and not sent; the CA still is", () => {
    const flags = parseFlags(
      ["--store=consul", ENDPOINTS.consul, "--etcd-certfile=/c.pem", "--etcd-cafile=/ca.pem"],
      {},
    );
    expect(flags.warnings).toContain(
      "a TLS client certificate needs both --etcd-keyfile and --etcd-certfile; connecting to consul without a client certificate",
    );
    expect(storeOptions(flags).tls).toEqual({ caFile: "/ca.pem" });
  });
});
