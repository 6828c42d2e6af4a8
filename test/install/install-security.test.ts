/**
 * install.sh's security rules, with a stub release (a shell script as the binary, its SHA256SUMS)
 * served on 127.0.0.1 over plain HTTP and over HTTPS (a test CA that curl and wget are told to
 * trust), installing into temporary roots (WEFT_ROOT) — never into /:
 * - a plain http:// WEFT_BASE_URL is refused unless WEFT_ALLOW_HTTP=1; a redirect from https:// to
 *   http:// is refused by curl (`--proto =https`) and by the wget path;
 * - passwords and tokens go into the env file (0600) as the agent's variables, never into WEFT_ARGS,
 *   the unit file or the installer's output.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { envName, FLAGS } from "../../src/config/flag-table.ts";
import { makeTestCerts, type TestCerts } from "../harness/tls.ts";

const repo = resolve(import.meta.dir, "..", "..");
const installer = join(repo, "install.sh");
const ENV = "etc/weft/weft.env";
const UNIT = "etc/systemd/system/weft.service";
const STUB = '#!/bin/sh\necho "weft 0.0.0-stub"\n';

let tmp = "";
let certs: TestCerts;
let plain: ReturnType<typeof Bun.serve> | undefined;
let secure: ReturnType<typeof Bun.serve> | undefined;
let httpBase = "";
let httpsBase = "";
/** Paths the plain HTTP server was asked for. */
const plainHits: string[] = [];
let roots = 0;

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

async function run(cmd: string[], env: Record<string, string> = {}, stdin?: string): Promise<Run> {
  const p = Bun.spawn(cmd, {
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

function newRoot(): string {
  return join(tmp, `root-${++roots}`);
}

function files(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((d) => !d.isDirectory())
    .map((d) => join(d.parentPath, d.name).slice(dir.length + 1))
    .sort();
}

/** The release files: /latest/… genuine (a stub binary), /redirect/… 302 to the plain server. */
function release(path: string, redirectTo?: string): Response {
  const m = /^\/(latest|redirect)\/(weft-linux-x64|weft-linux-arm64|SHA256SUMS)$/.exec(path);
  if (m?.[1] === "redirect" && redirectTo !== undefined)
    return Response.redirect(`${redirectTo}/latest/${m[2]}`, 302);
  if (m?.[1] === "latest" && m[2] !== undefined) return new Response(Bun.file(join(tmp, "dist", m[2])));
  return new Response("not found\n", { status: 404 });
}

beforeAll(async () => {
  tmp = mkdtempSync(join(tmpdir(), "weft-install-security-"));
  certs = makeTestCerts();
  mkdirSync(join(tmp, "dist"));
  const sum = new Bun.CryptoHasher("sha256").update(STUB).digest("hex");
  for (const arch of ["x64", "arm64"]) writeFileSync(join(tmp, "dist", `weft-linux-${arch}`), STUB);
  writeFileSync(join(tmp, "dist", "SHA256SUMS"), `${sum}  weft-linux-x64\n${sum}  weft-linux-arm64\n`);
  plain = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    fetch(req) {
      const path = new URL(req.url).pathname;
      plainHits.push(path);
      return release(path);
    },
  });
  httpBase = `http://127.0.0.1:${plain.port}`;
  secure = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    tls: { cert: Bun.file(certs.serverCert), key: Bun.file(certs.serverKey) },
    fetch: (req) => release(new URL(req.url).pathname, httpBase),
  });
  httpsBase = `https://127.0.0.1:${secure.port}`;
  writeFileSync(join(tmp, "wgetrc"), `ca_certificate = ${certs.caFile}\n`);
  // A PATH with everything but curl, so the installer takes its wget path.
  mkdirSync(join(tmp, "no-curl"));
  for (const name of readdirSync("/usr/bin")) {
    if (name !== "curl") symlinkSync(join("/usr/bin", name), join(tmp, "no-curl", name));
  }
});

afterAll(() => {
  plain?.stop(true);
  secure?.stop(true);
  certs?.remove();
  if (tmp !== "") rmSync(tmp, { recursive: true, force: true });
});

/** Trust the test CA: curl reads CURL_CA_BUNDLE, wget its WGETRC file. */
const trust = () => ({ CURL_CA_BUNDLE: certs.caFile, WGETRC: join(tmp, "wgetrc") });

describe("install - download source", () => {
  test("install - a plain http:// WEFT_BASE_URL is refused without WEFT_ALLOW_HTTP=1, naming the URL and the variable", async () => {
    const root = newRoot();
    const before = plainHits.length;
    const r = await run(["sh", installer, "--store=sqlite"], { WEFT_BASE_URL: httpBase, WEFT_ROOT: root });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain(`weft-install: error: WEFT_BASE_URL=${httpBase} is plain http://`);
    expect(r.stderr).toContain("set WEFT_ALLOW_HTTP=1 to allow it");
    expect(r.stderr).toContain("nothing installed");
    expect(r.stderr).not.toContain("downloading");
    expect(plainHits.length).toBe(before);
    expect(files(root)).toEqual([]);

    const ftp = await run(["sh", installer], { WEFT_BASE_URL: "ftp://127.0.0.1/x", WEFT_ROOT: newRoot() });
    expect(ftp.code).not.toBe(0);
    expect(ftp.stderr).toContain("WEFT_BASE_URL=ftp://127.0.0.1/x must start with https://");

    const allowed = await run(["sh", installer, "--store=sqlite"], {
      WEFT_BASE_URL: httpBase,
      WEFT_ALLOW_HTTP: "1",
      WEFT_ROOT: root,
    });
    expect(allowed.stderr).toContain("warning: downloading over plain http:// because WEFT_ALLOW_HTTP=1");
    expect(allowed.code).toBe(0);
    expect(files(root)).toEqual([ENV, UNIT, "usr/local/bin/weft"].sort());
  });

  for (const client of ["curl", "wget"] as const) {
    test(`install - ${client}: https:// installs; a redirect from https:// to http:// is refused and installs nothing`, async () => {
      const path = client === "curl" ? (process.env.PATH ?? "/usr/bin:/bin") : join(tmp, "no-curl");
      const env = { ...trust(), PATH: path };
      const root = newRoot();
      const ok = await run(["/bin/sh", installer, "--store=sqlite"], {
        ...env,
        WEFT_BASE_URL: httpsBase,
        WEFT_ROOT: root,
      });
      expect(ok.stderr).toContain("weft-install: checksum verified");
      expect(ok.code).toBe(0);
      expect(files(root)).toContain("usr/local/bin/weft");

      const redirected = newRoot();
      const before = plainHits.length;
      const r = await run(["/bin/sh", installer, "--store=sqlite"], {
        ...env,
        WEFT_BASE_URL: httpsBase,
        WEFT_VERSION: "redirect",
        WEFT_ROOT: redirected,
      });
      expect(r.code).not.toBe(0);
      expect(r.stderr).toContain(`download of ${httpsBase}/redirect/SHA256SUMS failed`);
      expect(files(redirected)).toEqual([]);
      // curl does not even connect to the http:// location; wget fetches it, and its answer is dropped.
      if (client === "curl") expect(plainHits.length).toBe(before);
      else expect(r.stderr).toContain("redirected to plain http://; refused");
    });
  }
});

describe("install - secrets", () => {
  const CANARY = `canary${crypto.randomUUID().replaceAll("-", "")}`;
  const password = `${CANARY}-pw $HOME "x" \\ \``;
  const token = `${CANARY}-token`;

  /** The env file as systemd and sh read it: single-quoted values are taken verbatim by both. */
  async function envValue(root: string, name: string): Promise<string> {
    const r = await run(["sh", "-c", `. "${join(root, ENV)}" && printf %s "$${name}"`]);
    return r.stdout;
  }

  test("install - passwords and tokens go into the env file (0600) as the agent's variables, never into WEFT_ARGS, the unit or the output", async () => {
    const root = newRoot();
    const visible = "--store=etcd --etcd-endpoints=https://10.0.0.5:2379 --etcd-username=root";
    const [store, endpoints, username] = visible.split(" ");
    const r = await run(
      [
        "sh",
        installer,
        store ?? "",
        endpoints ?? "",
        `--etcd-password=${password}`,
        username ?? "",
        "--consul-token",
        token,
      ],
      { WEFT_BASE_URL: httpBase, WEFT_ALLOW_HTTP: "1", WEFT_ROOT: root },
    );
    expect(r.code).toBe(0);
    expect(r.stdout + r.stderr).not.toContain(CANARY);
    expect(r.stderr).toContain(
      `created ${join(root, ENV)} (mode 0600) with WEFT_ARGS="${visible}" and FLANNELD_ETCD_PASSWORD WEFT_CONSUL_TOKEN (not shown)`,
    );
    const env = readFileSync(join(root, ENV), "utf8");
    expect(env.split("\n").filter((l) => l.startsWith("WEFT_ARGS="))).toEqual([`WEFT_ARGS="${visible}"`]);
    expect(statSync(join(root, ENV)).mode & 0o777).toBe(0o600);
    expect(await envValue(root, "FLANNELD_ETCD_PASSWORD")).toBe(password);
    expect(await envValue(root, "WEFT_CONSUL_TOKEN")).toBe(token);
    const unit = readFileSync(join(root, UNIT), "utf8");
    expect(unit).not.toContain(CANARY);
    expect(unit.split("\n")).toContain("ExecStart=/usr/local/bin/weft $WEFT_ARGS");

    // A second run keeps the env file and says which secrets are not in it, without their values.
    const again = await run(["sh", installer, `-etcd-password=${CANARY}-new`], {
      WEFT_BASE_URL: httpBase,
      WEFT_ALLOW_HTTP: "1",
      WEFT_ROOT: root,
    });
    expect(again.code).toBe(0);
    expect(again.stdout + again.stderr).not.toContain(CANARY);
    expect(again.stderr).toContain("set FLANNELD_ETCD_PASSWORD there by hand");
    expect(readFileSync(join(root, ENV), "utf8")).toBe(env);
  });

  test("install - secrets from the installer's environment are written too; a value that cannot be quoted is refused unseen", async () => {
    const root = newRoot();
    const r = await run(["sh", installer, "--store=consul"], {
      WEFT_BASE_URL: httpBase,
      WEFT_ALLOW_HTTP: "1",
      WEFT_ROOT: root,
      WEFT_CONSUL_TOKEN: token,
    });
    expect(r.code).toBe(0);
    expect(r.stdout + r.stderr).not.toContain(CANARY);
    expect(await envValue(root, "WEFT_CONSUL_TOKEN")).toBe(token);
    expect(readFileSync(join(root, ENV), "utf8")).toContain('WEFT_ARGS="--store=consul"\n');

    for (const args of [[`--etcd-password=${CANARY}'quote`], ["--consul-token"]]) {
      const bad = await run(["sh", installer, ...args], { WEFT_BASE_URL: httpBase, WEFT_ROOT: newRoot() });
      expect(bad.code).not.toBe(0);
      expect(bad.stdout + bad.stderr).not.toContain(CANARY);
      expect(bad.stderr).toMatch(
        /value of --etcd-password contains a single quote|--consul-token needs a value/,
      );
    }
  });

  test("install - the installer knows every secret flag of the flag table and its variable", () => {
    const script = readFileSync(installer, "utf8");
    const secrets = FLAGS.filter((flag) => flag.secret === true);
    expect(secrets.map((flag) => flag.name).sort()).toEqual(["consul-token", "etcd-password"]);
    for (const flag of secrets) {
      expect(script).toContain(`--${flag.name}=* | -${flag.name}=*)`);
      expect(script).toContain(`${envName(flag.name, flag.origin)}='%s'`);
    }
  });
});
