import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  DEFAULT_DOCKER_OPTS_OPTIONS,
  type MkDockerOptsIo,
  renderDockerOpts,
  runMkDockerOpts,
} from "../../../src/cli/mk-docker-opts.ts";
import { WeftErrorCode } from "../../../src/errors.ts";
import { thrown } from "../helpers.ts";

/** flannel's dist/mk_docker_opts_test.go sample_subnet.env and expected outputs. */
const SAMPLE =
  "FLANNEL_NETWORK=10.1.0.0/16\nFLANNEL_SUBNET=10.1.74.1/24\nFLANNEL_MTU=1472\nFLANNEL_IPMASQ=false\n";
const INDIVIDUAL =
  'DOCKER_OPT_BIP="--bip=10.1.74.1/24"\nDOCKER_OPT_IPMASQ="--ip-masq=true"\nDOCKER_OPT_MTU="--mtu=1472"\n';
const COMBINED = 'DOCKER_OPTS=" --bip=10.1.74.1/24 --ip-masq=true --mtu=1472"\n';
const VARS = {
  FLANNEL_NETWORK: "10.1.0.0/16",
  FLANNEL_SUBNET: "10.1.74.1/24",
  FLANNEL_MTU: "1472",
  FLANNEL_IPMASQ: "false",
};

let dir: string;
let input: string;
let output: string;
let errors: string[];
let io: MkDockerOptsIo;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "weft-docker-opts-"));
  input = join(dir, "subnet.env");
  output = join(dir, "docker_opts.env");
  await writeFile(input, SAMPLE);
  errors = [];
  io = { env: {}, stderr: (text) => errors.push(text) };
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function run(...flags: string[]): Promise<{ code: number; out: string }> {
  const code = await runMkDockerOpts(["-f", input, "-d", output, ...flags], io);
  const out = await readFile(output, "utf8").catch(() => "<no file>");
  return { code, out };
}

describe("mk-docker-opts render", () => {
  test("mk-docker-opts - default output: individual and combined, the exact golden text", () => {
    expect(renderDockerOpts(VARS)).toBe(INDIVIDUAL + COMBINED);
  });

  test("mk-docker-opts - FLANNEL_IPMASQ=true becomes --ip-masq=false", () => {
    expect(renderDockerOpts({ ...VARS, FLANNEL_IPMASQ: "true" })).toBe(
      'DOCKER_OPT_BIP="--bip=10.1.74.1/24"\nDOCKER_OPT_IPMASQ="--ip-masq=false"\nDOCKER_OPT_MTU="--mtu=1472"\nDOCKER_OPTS=" --bip=10.1.74.1/24 --ip-masq=false --mtu=1472"\n',
    );
  });

  test("mk-docker-opts - missing variables leave their options out; nothing at all gives an empty DOCKER_OPTS", () => {
    expect(renderDockerOpts({ FLANNEL_SUBNET: "10.1.74.1/24" })).toBe(
      'DOCKER_OPT_BIP="--bip=10.1.74.1/24"\nDOCKER_OPTS=" --bip=10.1.74.1/24"\n',
    );
    expect(renderDockerOpts({})).toBe('DOCKER_OPTS=""\n');
  });

  test("mk-docker-opts - an existing combined value is kept in front, as the script's eval does", () => {
    expect(
      renderDockerOpts(VARS, {
        ...DEFAULT_DOCKER_OPTS_OPTIONS,
        combined: true,
        existingCombined: "--dns=1.1.1.1",
      }),
    ).toBe('DOCKER_OPTS="--dns=1.1.1.1  --bip=10.1.74.1/24 --ip-masq=true --mtu=1472"\n');
  });

  test("mk-docker-opts - an invalid FLANNEL_IPMASQ is refused with the script's message", () => {
    const err = thrown(() => renderDockerOpts({ ...VARS, FLANNEL_IPMASQ: "yes" }));
    expect(err.code).toBe(WeftErrorCode.SubnetEnvInvalid);
    expect(err.message).toBe("Invalid value of FLANNEL_IPMASQ: yes");
  });

  test("mk-docker-opts - -m skips FLANNEL_IPMASQ entirely, even an invalid one", () => {
    expect(
      renderDockerOpts({ ...VARS, FLANNEL_IPMASQ: "yes" }, { ...DEFAULT_DOCKER_OPTS_OPTIONS, ipMasq: false }),
    ).toBe(
      'DOCKER_OPT_BIP="--bip=10.1.74.1/24"\nDOCKER_OPT_MTU="--mtu=1472"\nDOCKER_OPTS=" --bip=10.1.74.1/24 --mtu=1472"\n',
    );
  });
});

describe("mk-docker-opts command", () => {
  test.each([
    [[], INDIVIDUAL + COMBINED],
    [["-i"], INDIVIDUAL],
    [["-c"], COMBINED],
    [["-i", "-c"], INDIVIDUAL + COMBINED],
    [["-ic"], INDIVIDUAL + COMBINED],
    [["-k", "CUSTOM_KEY"], `${INDIVIDUAL}CUSTOM_KEY=" --bip=10.1.74.1/24 --ip-masq=true --mtu=1472"\n`],
    [["-kCUSTOM_KEY", "-c"], 'CUSTOM_KEY=" --bip=10.1.74.1/24 --ip-masq=true --mtu=1472"\n'],
    [
      ["-m"],
      'DOCKER_OPT_BIP="--bip=10.1.74.1/24"\nDOCKER_OPT_MTU="--mtu=1472"\nDOCKER_OPTS=" --bip=10.1.74.1/24 --mtu=1472"\n',
    ],
  ])("mk-docker-opts - flags %p write flannel's expected file", async (flags, expected) => {
    const { code, out } = await run(...flags);
    expect(errors).toEqual([]);
    expect(code).toBe(0);
    expect(out).toBe(expected);
  });

  test("mk-docker-opts - the output file is written atomically with mode 0644 and no leftovers", async () => {
    await writeFile(output, "stale");
    const { code } = await run();
    expect(code).toBe(0);
    expect((await stat(output)).mode & 0o777).toBe(0o644);
    expect((await readdir(dir)).sort()).toEqual(["docker_opts.env", "subnet.env"]);
  });

  test("mk-docker-opts - DOCKER_OPTS from the environment is kept in front", async () => {
    io = { ...io, env: { DOCKER_OPTS: "--debug" } };
    const { out } = await run("-c");
    expect(out).toBe('DOCKER_OPTS="--debug  --bip=10.1.74.1/24 --ip-masq=true --mtu=1472"\n');
  });

  test("mk-docker-opts - a missing subnet.env names the file and says to start weft first", async () => {
    input = join(dir, "missing.env");
    const { code, out } = await run();
    expect(code).toBe(1);
    expect(out).toBe("<no file>");
    expect(errors.join("")).toContain(`${input} does not exist; start weft first`);
  });

  test("mk-docker-opts - an invalid FLANNEL_IPMASQ exits 1 without writing", async () => {
    await writeFile(input, SAMPLE.replace("FLANNEL_IPMASQ=false", "FLANNEL_IPMASQ=nope"));
    const { code, out } = await run();
    expect(code).toBe(1);
    expect(out).toBe("<no file>");
    expect(errors.join("")).toContain("Invalid value of FLANNEL_IPMASQ: nope");
  });

  test("mk-docker-opts - usage errors exit 1 with the usage text", async () => {
    for (const argv of [["-x"], ["-f"], ["-k", "NOT-A-NAME"], ["extra"]]) {
      errors = [];
      expect(await runMkDockerOpts(argv, io)).toBe(1);
      expect(errors.join("")).toContain("Generate Docker daemon options based on flannel env file");
    }
    expect(errors.join("")).toContain('unexpected argument "extra"');
  });

  test("mk-docker-opts - -h prints usage and exits 0", async () => {
    expect(await runMkDockerOpts(["-h"], io)).toBe(0);
    expect(errors.join("")).toContain("-k\tSet the combined options key");
  });

  test("mk-docker-opts - the default paths are flannel's", async () => {
    const { DEFAULT_DOCKER_ENV, DEFAULT_SUBNET_ENV } = await import("../../../src/cli/mk-docker-opts.ts");
    expect(DEFAULT_SUBNET_ENV).toBe("/run/flannel/subnet.env");
    expect(DEFAULT_DOCKER_ENV).toBe("/run/docker_opts.env");
  });
});
