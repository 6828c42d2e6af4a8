import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { chmod, mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { WeftErrorCode } from "../../../src/errors.ts";
import { parseCidr } from "../../../src/net/ipv4.ts";
import {
  interpretSubnetEnv,
  parseEnvText,
  readSubnetEnv,
  renderSubnetEnv,
  type SubnetEnvContent,
  writeFileAtomic,
  writeSubnetEnv,
} from "../../../src/subnet/subnet-env.ts";

const CONTENT: SubnetEnvContent = {
  network: parseCidr("10.5.0.0/16"),
  subnet: parseCidr("10.5.72.0/24"),
  mtu: 1450,
  ipMasq: false,
};
/** flannel.md §6, exactly. */
const GOLDEN =
  "FLANNEL_NETWORK=10.5.0.0/16\nFLANNEL_SUBNET=10.5.72.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n";

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "weft-subnet-env-"));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("subnet.env render", () => {
  test("subnet env - renders flanneld's exact text with the first host address", () => {
    expect(renderSubnetEnv(CONTENT)).toBe(GOLDEN);
  });

  test("subnet env - ip-masq true and another network", () => {
    expect(
      renderSubnetEnv({
        network: parseCidr("10.1.0.0/16"),
        subnet: parseCidr("10.1.74.0/24"),
        mtu: 1472,
        ipMasq: true,
      }),
    ).toBe(
      "FLANNEL_NETWORK=10.1.0.0/16\nFLANNEL_SUBNET=10.1.74.1/24\nFLANNEL_MTU=1472\nFLANNEL_IPMASQ=true\n",
    );
  });

  test("subnet env - IPv6 lines come after the IPv4 lines only when given", () => {
    expect(
      renderSubnetEnv({ ...CONTENT, ipv6: { network: "2001:cafe:42::/56", subnet: "2001:cafe:42::1/64" } }),
    ).toBe(
      "FLANNEL_NETWORK=10.5.0.0/16\nFLANNEL_SUBNET=10.5.72.1/24\nFLANNEL_IPV6_NETWORK=2001:cafe:42::/56\nFLANNEL_IPV6_SUBNET=2001:cafe:42::1/64\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n",
    );
  });
});

describe("subnet.env write", () => {
  test("subnet env - writes the file 0644, creating missing directories 0755", async () => {
    const path = join(dir, "run", "flannel", "subnet.env");
    await writeSubnetEnv(path, CONTENT);
    expect(await readFile(path, "utf8")).toBe(GOLDEN);
    expect((await stat(path)).mode & 0o777).toBe(0o644);
    expect((await stat(join(dir, "run", "flannel"))).mode & 0o777).toBe(0o755);
    expect(await readdir(join(dir, "run", "flannel"))).toEqual(["subnet.env"]);
  });

  test("subnet env - replaces an existing file and resets its mode, leaving no temporary file", async () => {
    const path = join(dir, "subnet.env");
    await writeFile(path, "old contents that are longer than the new ones ..............................\n");
    await chmod(path, 0o600);
    await writeSubnetEnv(path, CONTENT);
    expect(await readFile(path, "utf8")).toBe(GOLDEN);
    expect((await stat(path)).mode & 0o777).toBe(0o644);
    expect(await readdir(dir)).toEqual(["subnet.env"]);
  });

  test("subnet env - a failed write is an IO error naming the path, and leaves no temporary file", async () => {
    const blocker = join(dir, "not-a-dir");
    await writeFile(blocker, "x");
    const path = join(blocker, "subnet.env");
    const err = await writeFileAtomic(path, "x").catch((e: unknown) => e);
    expect(err).toMatchObject({ code: WeftErrorCode.Io, path });
    expect((err as Error).message).toContain(`cannot write ${path}`);
    expect(await readdir(dir)).toEqual(["not-a-dir"]);
  });
});

describe("subnet.env read", () => {
  test("subnet env - round-trips what weft writes, reading FLANNEL_SUBNET back as its network", async () => {
    const path = join(dir, "subnet.env");
    await writeSubnetEnv(path, CONTENT);
    const previous = await readSubnetEnv(path);
    expect(previous).toEqual({
      network: parseCidr("10.5.0.0/16"),
      subnet: parseCidr("10.5.72.0/24"),
      mtu: 1450,
      ipMasq: false,
      ipv6Network: undefined,
      ipv6Subnet: undefined,
      ignored: [],
    });
  });

  test("subnet env - a missing file is undefined, an unreadable one an ignored reason", async () => {
    expect(await readSubnetEnv(join(dir, "nope.env"))).toBeUndefined();
    const previous = await readSubnetEnv(dir);
    expect(previous?.subnet).toBeUndefined();
    expect(previous?.ignored[0]?.reason).toContain(`cannot read ${dir}`);
  });

  test("subnet env - godotenv syntax: export, quotes, comments, colon separator, CRLF", () => {
    const file = parseEnvText(
      [
        "# written by flanneld",
        "",
        "export FLANNEL_NETWORK=10.5.0.0/16",
        'FLANNEL_SUBNET="10.5.72.1/24"',
        "FLANNEL_MTU='1450'",
        "FLANNEL_IPMASQ=true # masquerade",
        "OTHER: spaced value  ",
        'ESCAPED="a\\"b\\nc"',
        "HASH=a#b",
        "WIN=1\r",
      ].join("\n"),
    );
    expect(file.values).toEqual({
      FLANNEL_NETWORK: "10.5.0.0/16",
      FLANNEL_SUBNET: "10.5.72.1/24",
      FLANNEL_MTU: "1450",
      FLANNEL_IPMASQ: "true",
      OTHER: "spaced value",
      ESCAPED: 'a"b\nc',
      HASH: "a#b",
      WIN: "1",
    });
    expect(file.ignored).toEqual([]);
  });

  test("subnet env - garbage lines are ignored with a reason and line number", () => {
    const file = parseEnvText('FLANNEL_MTU=1450\nthis is garbage\n1BAD=x\nQUOTE="open\n=nokey\n');
    expect(file.values).toEqual({ FLANNEL_MTU: "1450" });
    expect(file.ignored.map((issue) => issue.line)).toEqual([2, 3, 4, 5]);
    expect(file.ignored[0]?.reason).toContain('no "="');
    expect(file.ignored[2]?.reason).toContain("unterminated");
  });

  test("subnet env - a comma-separated value is ignored, as flanneld does with more than one CIDR", () => {
    const previous = interpretSubnetEnv(
      parseEnvText("FLANNEL_SUBNET=10.5.72.1/24,10.5.73.1/24\nFLANNEL_NETWORK=10.5.0.0/16\n"),
    );
    expect(previous.subnet).toBeUndefined();
    expect(previous.network).toEqual(parseCidr("10.5.0.0/16"));
    expect(previous.ignored).toEqual([
      { line: 0, key: "FLANNEL_SUBNET", reason: 'more than one value in "10.5.72.1/24,10.5.73.1/24"' },
    ]);
  });

  test("subnet env - bad values are ignored with reasons, never thrown", () => {
    const previous = interpretSubnetEnv(
      parseEnvText(
        "FLANNEL_NETWORK=10.5.0.0\nFLANNEL_SUBNET=300.1.1.1/24\nFLANNEL_MTU=big\nFLANNEL_IPMASQ=maybe\nFLANNEL_IPV6_SUBNET=nope/64\n",
      ),
    );
    expect(previous.network).toBeUndefined();
    expect(previous.subnet).toBeUndefined();
    expect(previous.mtu).toBeUndefined();
    expect(previous.ipMasq).toBeUndefined();
    expect(previous.ipv6Subnet).toBeUndefined();
    expect(previous.ignored.map((issue) => issue.key)).toEqual([
      "FLANNEL_MTU",
      "FLANNEL_IPMASQ",
      "FLANNEL_NETWORK",
      "FLANNEL_SUBNET",
      "FLANNEL_IPV6_SUBNET",
    ]);
    expect(previous.ignored.find((issue) => issue.key === "FLANNEL_SUBNET")?.reason).toContain(
      "300 is greater than 255",
    );
  });

  test("subnet env - IPv6 values are kept as text", () => {
    const previous = interpretSubnetEnv(
      parseEnvText("FLANNEL_IPV6_NETWORK=2001:cafe:42::/56\nFLANNEL_IPV6_SUBNET=2001:cafe:42::1/64\n"),
    );
    expect(previous.ipv6Network).toBe("2001:cafe:42::/56");
    expect(previous.ipv6Subnet).toBe("2001:cafe:42::1/64");
  });
});
