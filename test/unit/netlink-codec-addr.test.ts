// Decoding of the address flags and lifetimes that flanneld's address order needs. The two messages are
// the kernel's RTM_NEWADDR dump replies for `ip -4 addr show dev eth0` (ifindex 3) on a namespace with
// `ip addr add 10.20.0.5/24 dev eth0 valid_lft 3600 preferred_lft 1800` and `ip addr add 10.20.0.100/24
// dev eth0`, as strace decoded them (Linux 6.x: IFA_ADDRESS, IFA_LOCAL, IFA_LABEL, IFA_FLAGS, IFA_CACHEINFO).
import { describe, expect, test } from "bun:test";
import { parseMessages, Reader } from "../../src/netlink/codec.ts";
import { decodeAddr } from "../../src/netlink/codec-addr.ts";
import { ADDR_LIFETIME_FOREVER, IFA_F } from "../../src/netlink/types.ts";

const hex = (text: string) =>
  Uint8Array.from(text.replace(/\s+/g, "").match(/../g) ?? [], (b) => Number.parseInt(b, 16));

function decode(bytes: Uint8Array) {
  const r = new Reader(bytes);
  return parseMessages(r).map((m) => decodeAddr(r, m));
}

describe("netlink codec - address flags", () => {
  test("netlink - a DHCP-style address: IFA_FLAGS 0, lifetimes from IFA_CACHEINFO", () => {
    const [dynamic] = decode(
      hex(`50000000 14002200 5f8e1069 6c720000
           02180000 03000000
           08000100 0a140005  08000200 0a140005  09000300 65746830 00000000
           08000800 00000000  14000600 08070000 100e0000 12190300 12190300`),
    );
    expect(dynamic).toEqual({
      index: 3,
      family: 2,
      address: "10.20.0.5",
      prefixLen: 24,
      scope: 0,
      label: "eth0",
      flags: 0,
      preferredLifetime: 1800,
      validLifetime: 3600,
    });
  });

  test("netlink - a static secondary address: IFA_F_SECONDARY | IFA_F_PERMANENT, lifetimes forever", () => {
    const [vip] = decode(
      hex(`50000000 14002200 5f8e1069 6c720000
           02188100 03000000
           08000100 0a140064  08000200 0a140064  09000300 65746830 00000000
           08000800 81000000  14000600 ffffffff ffffffff 12190300 12190300`),
    );
    expect(vip?.flags).toBe(IFA_F.SECONDARY | IFA_F.PERMANENT);
    expect(vip?.validLifetime).toBe(ADDR_LIFETIME_FOREVER);
    expect(vip?.preferredLifetime).toBe(ADDR_LIFETIME_FOREVER);
  });

  test("netlink - without IFA_FLAGS the 8-bit ifa_flags of the header is used", () => {
    const [old] = decode(
      hex(`28000000 14000200 01000000 00000000
           02182000 03000000
           08000100 0a140005  08000200 0a140005`),
    );
    expect(old?.flags).toBe(IFA_F.DEPRECATED);
    expect(old?.validLifetime).toBeUndefined();
  });
});
