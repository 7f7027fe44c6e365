/**
 * Text from outside meshctl (node output such as an /etc/os-release PRETTY_NAME, inventory and playbook values,
 * error messages quoting either) shown on the operator's terminal without letting it drive the terminal.
 *
 * A terminal acts on control characters: ESC starts sequences that move the cursor, recolour or clear the screen
 * (CSI `ESC [`), set the window title or write the clipboard (OSC `ESC ]0;...BEL`, `ESC ]52;...`); C1 controls
 * (U+0080-U+009F, e.g. U+009B = CSI, U+009D = OSC) do the same on terminals that honour them; CR and BS overwrite
 * what was printed; DEL is invisible. Bidirectional overrides (U+202A-U+202E, U+2066-U+2069) reorder what is shown
 * ("Trojan Source", CVE-2021-42574). All of them are shown escaped, so the text reads as what it is:
 * `\x1b]0;pwned\x07`, `\x9b`, `\u202e`. A backslash stays a backslash (the escapes are for a person to read, not
 * for a program to decode).
 *
 * Use these at the output edge, on each value that came from a node or an input file, BEFORE adding meshctl's own
 * colour codes (escaping a coloured string would show the colours as text).
 */

// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what this finds
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/g;
// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what this finds
const UNSAFE_IN_BLOCK = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/g;

/** `\xHH` for code points up to U+00FF, `\uHHHH` above (the bidi controls). */
function escapeChar(char: string): string {
  const code = char.codePointAt(0)!;
  return code <= 0xff ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16).padStart(4, '0')}`;
}

/**
 * One value shown safely on one line: every C0 control (tab, newline and CR included), DEL, every C1 control and
 * the bidi overrides become `\xHH` / `\uHHHH`; everything else (printable ASCII, other Unicode) is kept as is.
 */
export function safeText(text: string): string {
  return capped(text).replace(UNSAFE, escapeChar);
}

/**
 * The most characters of one value shown: a broken or hostile node's output quoted in a check (Q9 F-evidence-flood:
 * a route lookup's 679 KB of `[[[[` printed as one line of verify's report) is cut there, saying how much more there
 * was. meshctl's own messages and a node's ordinary output stay far below it.
 */
export const MAX_SHOWN_CHARS = 2000;

function capped(text: string): string {
  if (text.length <= MAX_SHOWN_CHARS) return text;
  return `${text.slice(0, MAX_SHOWN_CHARS)}... (${text.length - MAX_SHOWN_CHARS} characters more not shown)`;
}

/**
 * Multi-line text shown safely: like safeText, but newlines and tabs are kept (a file's diff, a command's stderr
 * shown as lines), each line cut at MAX_SHOWN_CHARS. CR is escaped: it would let a line overwrite itself.
 */
export function safeBlock(text: string): string {
  // only a text longer than the cap can hold a line longer than it (a 1,000-peer diff is not split for nothing)
  const lines = text.length <= MAX_SHOWN_CHARS ? text : text.split('\n').map(capped).join('\n');
  return lines.replace(UNSAFE_IN_BLOCK, escapeChar);
}

/** Whether safeText would change `text` (it holds something a terminal would act on). */
export const hasUnsafeText = (text: string): boolean => UNSAFE_ONE.test(text);
const UNSAFE_ONE = new RegExp(UNSAFE.source);
