/**
 * Text from the store (lease keys and values, written by anyone with store access) made safe for a
 * terminal: control characters — C0 (ESC, CR, BS…), DEL, C1 (the 8-bit CSI U+009B) — and the Unicode
 * controls that reorder or hide text (bidi overrides and isolates, zero-width marks, line and
 * paragraph separators) are printed as escapes (`\x1b`, `\u202e`), so a value can neither drive the
 * terminal nor disguise what is printed next to it.
 */

/** True for the characters `printable` escapes. */
function unsafe(code: number): boolean {
  return (
    code <= 0x1f ||
    (code >= 0x7f && code <= 0x9f) ||
    code === 0x061c ||
    (code >= 0x200b && code <= 0x200f) ||
    (code >= 0x2028 && code <= 0x202e) ||
    (code >= 0x2060 && code <= 0x2069) ||
    code === 0xfeff ||
    (code >= 0xfff9 && code <= 0xfffb)
  );
}

const hex = (code: number, width: number) => code.toString(16).padStart(width, "0");
const NAMED: Readonly<Record<number, string>> = { 9: "\\t", 10: "\\n", 13: "\\r" };

/** `text` with every control character escaped (a backslash itself stays as it is). */
export function printable(text: string): string {
  let out = "";
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (!unsafe(code)) out += text[i];
    else out += NAMED[code] ?? (code <= 0xff ? `\\x${hex(code, 2)}` : `\\u${hex(code, 4)}`);
  }
  return out;
}

/**
 * JSON text with the same characters as `\uXXXX` escapes, but JSON whitespace (tab, LF, CR), which
 * may separate tokens; JSON.stringify leaves C1 and the Unicode controls raw inside strings.
 */
export function printableJson(json: string): string {
  let out = "";
  for (let i = 0; i < json.length; i++) {
    const code = json.charCodeAt(i);
    out += unsafe(code) && NAMED[code] === undefined ? `\\u${hex(code, 4)}` : json[i];
  }
  return out;
}
