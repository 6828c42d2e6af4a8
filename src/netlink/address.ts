/**
 * Text ⇄ bytes for IP addresses, prefixes and MAC addresses, in the forms iproute2 prints
 * ("10.5.1.0/24", "fd00::1", "0a:0b:0c:0d:0e:0f"). Pure functions; invalid text gives `undefined`.
 */

/**
 * Parses dotted-quad IPv4 in `text[start, end)` into `out[offset…offset+3]` without allocating (route
 * batches parse thousands of these). Returns false, leaving `out` partly written, if it is not IPv4.
 */
export function parseIpv4Into(
  text: string,
  start: number,
  end: number,
  out: Uint8Array,
  offset: number,
): boolean {
  let part = 0;
  let value = 0;
  let digits = 0;
  for (let i = start; i < end; i++) {
    const ch = text.charCodeAt(i);
    if (ch === 46 /* . */) {
      if (digits === 0 || part === 3) return false;
      out[offset + part++] = value;
      value = 0;
      digits = 0;
    } else if (ch >= 48 && ch <= 57 && digits < 3) {
      value = value * 10 + (ch - 48);
      digits++;
      if (value > 255) return false;
    } else {
      return false;
    }
  }
  if (digits === 0 || part !== 3) return false;
  out[offset + 3] = value;
  return true;
}

/** Parses dotted-quad IPv4 into 4 bytes. */
export function parseIpv4(text: string): Uint8Array | undefined {
  const out = new Uint8Array(4);
  return parseIpv4Into(text, 0, text.length, out, 0) ? out : undefined;
}

/** Parses IPv6 (with `::` compression and an optional dotted-quad tail) into 16 bytes. */
export function parseIpv6(text: string): Uint8Array | undefined {
  const groups = text.split("::");
  if (groups.length > 2) return undefined;
  const side = (s: string): number[] | undefined => {
    if (s === "") return [];
    const words: number[] = [];
    const parts = s.split(":");
    for (const [i, part] of parts.entries()) {
      if (i === parts.length - 1 && part.includes(".")) {
        const v4 = parseIpv4(part);
        if (v4 === undefined) return undefined;
        words.push(((v4[0] ?? 0) << 8) | (v4[1] ?? 0), ((v4[2] ?? 0) << 8) | (v4[3] ?? 0));
      } else if (/^[0-9a-fA-F]{1,4}$/.test(part)) {
        words.push(Number.parseInt(part, 16));
      } else {
        return undefined;
      }
    }
    return words;
  };
  const head = side(groups[0] ?? "");
  const tail = groups.length === 2 ? side(groups[1] ?? "") : [];
  if (head === undefined || tail === undefined) return undefined;
  const fill = 8 - head.length - tail.length;
  if ((groups.length === 2 && fill < 1) || (groups.length === 1 && fill !== 0)) return undefined;
  const words = [...head, ...new Array<number>(fill).fill(0), ...tail];
  const out = new Uint8Array(16);
  for (const [i, word] of words.entries()) {
    out[i * 2] = word >> 8;
    out[i * 2 + 1] = word & 0xff;
  }
  return out;
}

/** Parses an IPv4 or IPv6 address. */
export function parseIp(text: string): Uint8Array | undefined {
  return text.includes(":") ? parseIpv6(text) : parseIpv4(text);
}

/**
 * Parses the address in `text[start, end)` into `out` (16 bytes or more) and returns its length: 4,
 * 16, or 0 when it is not an address.
 */
export function parseIpInto(text: string, start: number, end: number, out: Uint8Array): number {
  const v6 = text.indexOf(":", start);
  if (v6 < 0 || v6 >= end) return parseIpv4Into(text, start, end, out, 0) ? 4 : 0;
  const bytes = parseIpv6(text.slice(start, end));
  if (bytes === undefined) return 0;
  out.set(bytes);
  return 16;
}

/**
 * Parses "10.5.1.0/24" (or a bare address, meaning /32 or /128) into `out` (16 bytes) and returns the
 * prefix length and the address length in bytes (4 or 16), or `undefined` if the text is no prefix.
 */
export function parsePrefixInto(
  text: string,
  out: Uint8Array,
): { length: number; bytes: number } | undefined {
  const slash = text.indexOf("/");
  const end = slash < 0 ? text.length : slash;
  const bytes = parseIpInto(text, 0, end, out);
  if (bytes === 0) return undefined;
  if (slash < 0) return { length: bytes * 8, bytes };
  let length = 0;
  if (slash + 1 === text.length || text.length - slash > 4) return undefined;
  for (let i = slash + 1; i < text.length; i++) {
    const ch = text.charCodeAt(i);
    if (ch < 48 || ch > 57) return undefined;
    length = length * 10 + (ch - 48);
  }
  return length > bytes * 8 ? undefined : { length, bytes };
}

/** Formats 4 or 16 bytes at `offset` as iproute2 prints them (RFC 5952 for IPv6). */
export function formatIp(data: Uint8Array, offset = 0, length = data.length - offset): string {
  if (length === 4) {
    return `${data[offset]}.${data[offset + 1]}.${data[offset + 2]}.${data[offset + 3]}`;
  }
  if (length !== 16) return "";
  const words: number[] = [];
  for (let i = 0; i < 8; i++)
    words.push(((data[offset + i * 2] ?? 0) << 8) | (data[offset + i * 2 + 1] ?? 0));
  // The longest run of two or more zero words becomes "::" (the first one on a tie).
  let best = -1;
  let bestLength = 1;
  for (let i = 0; i < 8; ) {
    if (words[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && words[j] === 0) j++;
    if (j - i > bestLength) {
      best = i;
      bestLength = j - i;
    }
    i = j;
  }
  const hex = (ws: number[]) => ws.map((w) => w.toString(16)).join(":");
  if (best < 0) return hex(words);
  return `${hex(words.slice(0, best))}::${hex(words.slice(best + bestLength))}`;
}

export interface Prefix {
  readonly address: Uint8Array;
  readonly length: number;
}

/** Parses "10.5.1.0/24" (or a bare address, meaning /32 or /128). */
export function parsePrefix(text: string): Prefix | undefined {
  const out = new Uint8Array(16);
  const parsed = parsePrefixInto(text, out);
  return parsed === undefined ? undefined : { address: out.slice(0, parsed.bytes), length: parsed.length };
}

/** Parses "0a:0b:0c:0d:0e:0f". */
export function parseMac(text: string): Uint8Array | undefined {
  const parts = text.split(":");
  if (parts.length !== 6 || parts.some((p) => !/^[0-9a-fA-F]{2}$/.test(p))) return undefined;
  return Uint8Array.from(parts, (p) => Number.parseInt(p, 16));
}

/** Formats link-layer bytes as lower-case colon-separated hex. */
export function formatMac(data: Uint8Array, offset = 0, length = data.length - offset): string {
  const parts: string[] = [];
  for (let i = 0; i < length; i++) parts.push((data[offset + i] ?? 0).toString(16).padStart(2, "0"));
  return parts.join(":");
}
