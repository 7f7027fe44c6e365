/**
 * The one place remote shell text is quoted. Every value that comes from an inventory, a node or a file name goes
 * through `shellQuote` or the `sh` template, never into a script by plain interpolation.
 *
 * Quoting rule: POSIX sh single quotes (XCU 2.2.2): everything between them is literal; a single quote itself is
 * written as `'\''`. This holds for dash, bash and busybox ash alike. As Python's `shlex.quote` does, a non-empty
 * word made only of characters no shell treats specially (letters, digits, `@%+=:,./_-`) is left bare, so the
 * scripts people read in a plan or a log stay readable (`wg set wg0 ...`).
 */

/** Characters that never need quoting in a POSIX shell word (shlex.quote's safe set). */
const SAFE_WORD = /^[A-Za-z0-9@%+=:,./_-]+$/;

/** Quotes one value for a POSIX shell: `wg0` -> `wg0`, `it's` -> `'it'\''s'`, `` -> `''`. */
export const shellQuote = (value: string | number): string => {
  const text = String(value);
  return SAFE_WORD.test(text) ? text : `'${text.replaceAll("'", `'\\''`)}'`;
};

/** A fragment of shell text that `sh` inserts as it is (already quoted or built from constants). */
export class RawShell {
  constructor(readonly text: string) {}
  toString(): string {
    return this.text;
  }
}

/** Marks trusted shell text (an operator, a constant command) for `sh` to insert unquoted. */
export const raw = (text: string): RawShell => new RawShell(text);

/**
 * Template tag for remote commands: every interpolated value is quoted with `shellQuote`, except `raw(...)` and
 * nested `sh` results; an array interpolates as its quoted elements separated by spaces.
 * Example: sh`wg set ${iface} private-key ${path}` -> `wg set 'wg0' private-key '/etc/wireguard/wg0.key'`.
 */
export function sh(strings: TemplateStringsArray, ...values: (string | number | RawShell | readonly (string | number)[])[]): RawShell {
  let out = strings[0]!;
  values.forEach((value, i) => {
    if (value instanceof RawShell) out += value.text;
    else if (Array.isArray(value)) out += value.map((v) => shellQuote(v)).join(' ');
    else out += shellQuote(value as string | number);
    out += strings[i + 1]!;
  });
  return raw(out);
}
