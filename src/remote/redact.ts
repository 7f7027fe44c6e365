/**
 * Secret redaction: the ONE rule for what of a node's content may be shown (diffs of the plan and gate report,
 * verify and debug evidence, JSON reports, debug bundles), and the same rule as an awk program that runs on the
 * node before its wg-quick file crosses the wire (`secretFilterAwk`).
 *
 * What is secret-shaped (kind 1 of issue 8):
 * - a line whose setting name, compared the way wg(8) does (white space removed, case ignored: wg's config.c drops
 *   every space of a line, so `Private Key = K` is a valid PrivateKey), names a private or preshared key, also when it
 *   is commented out (`#PrivateKey = K`, `; PresharedKey = P`): its value is never shown;
 * - any run of base64 characters that has a WireGuard key's length (43 significant characters, `=` padding or not,
 *   see looksLikeWireGuardKey in ../topology/desired.ts), wherever it stands (`PostUp = wg set %i private-key
 *   <(echo K)`, `echo K | wg set ...`, `Address = 10.0.0.1/32 # K`, a `.pub` file holding a private key), UNLESS it
 *   is a known public key of the mesh. Public keys are fine; anything else of that shape is replaced by REDACTED.
 *
 * The value of a `PublicKey =` line is a peer's public key, which is not secret: the dry run's diff shows it (Q3
 * finding 9: a peer a hand-made config adds, that the plan removes, read `PublicKey = [redacted]` and the operator
 * could not tell which peer goes), unless it is demonstrably a private key: one whose X25519 public half
 * (publicHalfOf, what `wg pubkey` prints) is a public key meshctl knows (a node's key pasted into the wrong line).
 *
 * Lower-case hex runs are not redacted: they are the sha256 digests meshctl shows itself; except 64 digits whose
 * bytes are the private key of a known public key (a key typed in hex into a PostUp: hexKeyOf). The on-node filter,
 * which sees only the wg-quick file (no digests, and wg(8) reads keys only in base64 there), hides every run of 64 hex
 * digits and every base64url run of a key's length (Q9 F-redact-encodings). A key split into pieces is not found.
 */

import { createPrivateKey, createPublicKey } from 'node:crypto';

/** What a secret-shaped value is replaced with. */
export const REDACTED = '[redacted]';

/** A maximal run of base64 characters with its padding. */
const BASE64_RUN = /[A-Za-z0-9+/]+=*/g;
const HEX = /^[0-9a-f]+$/;

/** Whether a maximal base64 run (with its `=` padding) has a WireGuard key's shape: 43 significant characters or more. */
export function isKeyShaped(run: string): boolean {
  const significant = run.replace(/=+$/, '');
  return significant.length >= 43 && !HEX.test(significant);
}

/** Setting names, spaces removed and lower-cased, whose value is a secret. */
const SECRET_SETTING = /^[#;\s]*(private|preshared)[\s_-]*key\s*=/i;

/** Whether `line` sets (or, commented out, once set) a private or preshared key, in any spelling wg(8) accepts. */
export const isSecretSettingLine = (line: string): boolean => SECRET_SETTING.test(line.replace(/\s+/g, ''));

/** A blank of one line: any white space but the newline (redactSecrets splits lines on `\n` only). */
const BLANK = '[^\\S\\n]*';
/** `word` with blanks allowed between its characters, as wg(8) drops every one (`Private Key` is PrivateKey). */
const spaced = (word: string) => word.split('').join(BLANK);
/**
 * SECRET_SETTING as the line stands, not squeezed: group 1 is the line up to its first `=`, the rest of the line its
 * value. `(?<![^\n])` is a line's start: after a newline or at the text's start (not `^` with the `m` flag, which
 * also matches after a `\r`, where redactSecrets never split a line).
 */
const SECRET_LINE = `(?<![^\\n])((?:[#;]|${BLANK.slice(0, -1)})*(?:${spaced('private')}|${spaced('preshared')})${BLANK}(?:[_-]${BLANK})*${spaced('key')}${BLANK}=)[^\\n]*`;

/**
 * Issue 10: ONE pass over the whole text, a secret setting line at a line start, else a base64 run of a key's length
 * or more. Per line (a split, a squeezed copy and two regexes per line, and a copy per run) it was most of the cost
 * of a 1,000-peer config's plan. Only runs of 43+ characters can be key-shaped, and a maximal run that long is
 * always matched from its first character (a shorter one matches nowhere), so the shorter runs cost no call; a
 * run is tried only from its first character (the lookbehind), not again from each of its characters.
 */
const REDACT_PASS = new RegExp(`${SECRET_LINE}|(?<![A-Za-z0-9+/])[A-Za-z0-9+/]{43,}=*`, 'gi');

/**
 * Whether the run at `offset` of `text` is an OpenSSH SHA256 fingerprint as meshctl prints one itself
 * (../transport/known-hosts.ts fingerprintSha256: `SHA256:` and the digest's 43 base64 characters, padding dropped):
 * a hash of a public host key, which the host-key messages ask the operator to compare, not a secret. A key-shaped
 * run anywhere else, or with padding, is still hidden.
 */
const isFingerprint = (run: string, offset: number, text: string): boolean =>
  run.length === 43 && offset >= 7 && text.startsWith('SHA256:', offset - 7);

/** isKeyShaped without copies: the run's length without its `=` padding, then (rarely) the hex test. */
function keyShapedRun(run: string): boolean {
  let end = run.length;
  while (end > 0 && run.charCodeAt(end - 1) === 61 /* = */) end--;
  return end >= 43 && !HEX.test(run.slice(0, end));
}

/** The DER head of a PKCS #8 X25519 private key (RFC 8410), before its 32 raw bytes. */
const X25519_PKCS8_HEAD = Buffer.from('302e020100300506032b656e04220420', 'hex');

/**
 * The X25519 public half of a base64 WireGuard key taken as a private key, as `wg pubkey` prints it (base64 of 32
 * bytes; RFC 7748 scalar multiplication by node:crypto's OpenSSL, which clamps the scalar as wg does), or undefined
 * when the value is not 32 bytes of base64. Used only to tell whether a value shown as a public key is the private
 * key of a known one; the value is never stored or printed.
 */
export function publicHalfOf(value: string): string | undefined {
  const raw = Buffer.from(value, 'base64');
  if (raw.length !== 32 || raw.toString('base64') !== value) return undefined;
  try {
    const privateKey = createPrivateKey({ key: Buffer.concat([X25519_PKCS8_HEAD, raw]), format: 'der', type: 'pkcs8' });
    return createPublicKey(privateKey).export({ format: 'der', type: 'spki' }).subarray(-32).toString('base64');
  } catch {
    return undefined;
  }
}

/**
 * Whether a run of 64 lower-case hex digits is a node's private key in hex (Q9 F-redact-encodings: `echo HEX | xxd -r
 * -p` in a PostUp): its 32 bytes' X25519 public half is a public key meshctl knows. Other such runs are the sha256
 * digests meshctl shows itself, kept. (Upper-case hex is key-shaped base64 already, and hidden as such.)
 */
function hexKeyOf(run: string, ...known: ReadonlySet<string>[]): boolean {
  if (run.length !== 64 || !HEX.test(run) || known.every((k) => k.size === 0)) return false;
  const half = publicHalfOf(Buffer.from(run, 'hex').toString('base64'));
  return half !== undefined && known.some((k) => k.has(half));
}

/**
 * `text` with every secret-shaped value replaced by REDACTED: the value of a secret setting line, and every
 * key-shaped base64 run that is not in `knownPublicKeys`. Pure; line structure and everything else are kept.
 * Lines are split on `\n` only, as before.
 *
 * `publicKeyLineKeys` (finding 30): more public keys meshctl knows to be public (what nodes reported as the public
 * half of a private key they hold: `wg pubkey < KEYFILE`, `wg show IFACE public-key`), shown only as the value of a
 * `PublicKey =` line: a plan's diff after a key rotation then shows the old key it replaces.
 *
 * `options.publicKeyLines: 'shown'` (the dry run's diff, Q3 finding 9): every value of a `PublicKey =` line that is a
 * WireGuard key (32 bytes of base64) is shown, unless its X25519 public half is a known or reported public key (a
 * node's private key typed there). Without it, any other value in such a line stays hidden. A private key of a node
 * meshctl knows nothing of, typed into a PublicKey line, is shown in that mode: nothing tells it from a public key.
 */
export function redactSecrets(
  text: string,
  knownPublicKeys: ReadonlySet<string> = new Set(),
  publicKeyLineKeys: ReadonlySet<string> = new Set(),
  options: { publicKeyLines?: 'known' | 'shown' } = {},
): string {
  redactPasses.count++;
  if (publicKeyLineKeys.size > 0 || options.publicKeyLines === 'shown')
    return redactWithPublicKeyLines(text, knownPublicKeys, publicKeyLineKeys, options.publicKeyLines === 'shown');
  return text.replace(REDACT_PASS, (match: string, secretPrefix: string | undefined, offset: number) => {
    if (secretPrefix !== undefined) return `${secretPrefix} ${REDACTED}`;
    if (hexKeyOf(match, knownPublicKeys)) return REDACTED;
    return keyShapedRun(match) && !knownPublicKeys.has(match) && !isFingerprint(match, offset, text) ? REDACTED : match;
  });
}

/** A `PublicKey =` line as filterConfigText (../facts/definitions.ts) spares it: `^\s*publickey\s*=` of a line alone. */
const PUBLIC_KEY_LINE = `(?<![^\\n])${BLANK}publickey${BLANK}=[^\\n]*`;
const REDACT_PASS_SPARING_PUBLIC_KEY_LINES = new RegExp(`(${PUBLIC_KEY_LINE})|${REDACT_PASS.source}`, 'gi');
/** The value of a private or preshared key setting line, commented out or not (wg-quick's spellings, loosely). */
const SECRET_SETTING_VALUE = /^[ \t]*[#;]*[ \t]*(?:private|pre[ \t_-]*shared)[ \t_-]*key[ \t]*=[ \t]*([A-Za-z0-9+/]{42,}=*)/gim;
/** A key-shaped run inside a line (the runs REDACT_PASS matches outside secret setting lines). */
const KEY_RUN = /(?<![A-Za-z0-9+/])[A-Za-z0-9+/]{43,}=*/g;

/**
 * redactSecrets with `publicKeyLineKeys` also shown, inside `PublicKey =` lines only; with `showAll`, every key there
 * whose public half is no known key (see redactSecrets).
 */
function redactWithPublicKeyLines(
  text: string,
  known: ReadonlySet<string>,
  publicKeyLineKeys: ReadonlySet<string>,
  showAll = false,
): string {
  const privateOfKnown = (run: string) => {
    const half = publicHalfOf(run);
    return half === undefined || known.has(half) || publicKeyLineKeys.has(half);
  };
  // a secret setting's value (a preshared key) pasted as a PublicKey stays hidden (RV2 finding 3)
  const secretValues = new Set([...text.matchAll(SECRET_SETTING_VALUE)].map((m) => m[1]!));
  const hidden = (run: string, extra: boolean) =>
    keyShapedRun(run) &&
    !known.has(run) &&
    !(extra && !secretValues.has(run) && (publicKeyLineKeys.has(run) || (showAll && !privateOfKnown(run))));
  return text.replace(
    REDACT_PASS_SPARING_PUBLIC_KEY_LINES,
    (match: string, publicKeyLine: string | undefined, secretPrefix: string | undefined, offset: number) => {
      if (publicKeyLine !== undefined) {
        // only the line's first key, before any comment, is the peer's key to show (RV2 finding 3)
        let first = true;
        return match.replace(KEY_RUN, (run, at: number) => {
          const extra = first && !match.slice(0, at).includes('#');
          first = false;
          return hidden(run, extra) ? REDACTED : run;
        });
      }
      if (secretPrefix !== undefined) return `${secretPrefix} ${REDACTED}`;
      if (hexKeyOf(match, known, publicKeyLineKeys)) return REDACTED;
      return hidden(match, false) && !isFingerprint(match, offset, text) ? REDACTED : match;
    },
  );
}

/**
 * redactSecrets on every line of `text` but its `PublicKey =` lines, which are kept whole (a diff must show a peer's
 * key; it is redacted again against the mesh's known keys where it is shown), in ONE pass over the whole text.
 * Issue 10: this was a redactSecrets call per line of every node's wg-quick file in every facts probe (16 nodes:
 * ~1,100 calls, 32 nodes: ~6,700, growing with nodes x peers), the largest part of parsing a second `up`'s facts.
 */
export function redactSecretsSparingPublicKeyLines(text: string): string {
  redactPasses.count++;
  return text.replace(
    REDACT_PASS_SPARING_PUBLIC_KEY_LINES,
    (match: string, publicKeyLine: string | undefined, secretPrefix: string | undefined) => {
      if (publicKeyLine !== undefined) return match;
      if (secretPrefix !== undefined) return `${secretPrefix} ${REDACTED}`;
      return keyShapedRun(match) ? REDACTED : match;
    },
  );
}

const SECRET_LINES = new RegExp(SECRET_LINE, 'gi');

/**
 * `text` with only its secret setting lines' values replaced: what redactSecrets gives when every key-shaped run of
 * the text is a known public key (a config meshctl rendered itself, whose keys are the known ones: issue 10, the
 * cheap half of the pass, without collecting the keys first).
 */
export function redactSecretSettings(text: string): string {
  redactPasses.count++;
  return text.replace(SECRET_LINES, (_line: string, prefix: string) => `${prefix} ${REDACTED}`);
}

/** How many times redactSecrets or redactSecretSettings ran (for the scale tests: test/unit/scale-cost-config.test.ts). */
export const redactPasses = { count: 0 };

/** Whether `text` still holds something redactSecrets would redact. */
export const holdsSecret = (text: string, knownPublicKeys: ReadonlySet<string> = new Set()): boolean =>
  redactSecrets(text, knownPublicKeys) !== text;

/**
 * A copy of a JSON-shaped value with every string passed through redactSecrets (object keys too). For reports that
 * carry node content in many fields: redacting the whole value at the point it is shown misses none of them.
 */
export function redactDeep<T>(value: T, knownPublicKeys: ReadonlySet<string>): T {
  const walk = (v: unknown): unknown => {
    if (typeof v === 'string') return redactSecrets(v, knownPublicKeys);
    if (Array.isArray(v)) return v.map(walk);
    if (v && typeof v === 'object' && !(v instanceof Date) && !Buffer.isBuffer(v))
      return Object.fromEntries(Object.entries(v).map(([k, x]) => [redactSecrets(k, knownPublicKeys), walk(x)]));
    return v;
  };
  return walk(value) as T;
}

/** The key-shaped tokens of `text` (e.g. the public keys in a config meshctl rendered itself: all known ones). */
export const keyShapedTokens = (text: string): string[] => (text.match(BASE64_RUN) ?? []).filter(isKeyShaped);

/**
 * The on-node half, as an awk program (POSIX awk, mawk too: no interval expressions), run as
 * `awk -v keyfile=KEYPATH PROGRAM FILE`. It prints the wg-quick file with secret setting lines dropped (the rendered
 * file has none, so meshctl's own text passes unchanged) and every key-shaped run replaced by REDACTED, except the
 * value of a `PublicKey =` line (a peer's public key), unless that value is the node's own private key, which awk
 * reads from `keyfile` itself (never through argv, where `ps` would show it).
 */
export const SECRET_FILTER_AWK = [
  'BEGIN { own = ""; if (keyfile != "" && (getline own < keyfile) <= 0) own = ""; sub(/[ \\t\\r]+$/, "", own)',
  // RV2 finding 3: a secret setting's value (a preshared key) pasted as a PublicKey stays hidden: the file is read
  // once first (`conf`, its path) for the values of its secret setting lines, which the pass below drops; a
  // commented-out one too (RV3 F10: its leading `#` was stripped with the whole line, so its value was never taken):
  // the comment marks before the test, a trailing comment after it
  '  if (conf != "") while ((getline l < conf) > 0) { gsub(/[ \\t\\r]/, "", l); sub(/^[#;]+/, "", l); sub(/#.*/, "", l); if (tolower(l) ~ /^(private|preshared)[_-]*key=/) { sub(/^[^=]*=/, "", l); sec[l] = 1 } } }',
  // Q9 F-redact-encodings: a key written as hex (64 digits: the 32 bytes, as `xxd -p` prints them) or as base64url
  // (43 characters or more with a `-` or `_`) in a hand-edited line is hidden too; a wg-quick file needs neither form
  // (wg(8) reads only base64), so every such run of the file is, whatever key it is. A base64url run must also hold
  // an upper-case letter (RV6 F2): node names and DNS labels (up to 63 of [a-z0-9-]) are meshctl's own text in the
  // file (`# NODE` before a [Peer], `Endpoint = HOST:PORT`) and were hidden at 43 characters; a random key's 43
  // characters have none of A-Z with odds of (38/64)^43, ~2e-10
  'function mc_mask(s, re, kind,    out, run, sig) {',
  '  out = ""',
  '  while (match(s, re)) {',
  '    run = substr(s, RSTART, RLENGTH); sig = run; sub(/=+$/, "", sig)',
  `    out = out substr(s, 1, RSTART - 1) (((kind == "hex" && RLENGTH == 64) || (kind == "url" && length(sig) >= 43 && sig ~ /[-_]/ && sig ~ /[A-Z]/)) ? "${REDACTED}" : run)`,
  '    s = substr(s, RSTART + RLENGTH)',
  '  }',
  '  return out s',
  '}',
  '{',
  // an Endpoint's host is a DNS name or address as the inventory gives it (RV6 F11: a 43-character label with capitals
  // and a `-` looked like base64url); wg(8) reads no key there, so only hex runs are masked in that line
  '  e = $0; gsub(/[ \\t\\r]/, "", e)',
  '  line = mc_mask($0, "[0-9A-Fa-f]+", "hex"); if (tolower(e) !~ /^endpoint=/) line = mc_mask(line, "[A-Za-z0-9_-]+=*", "url")',
  '  squeezed = line; gsub(/[ \\t\\r]/, "", squeezed); lower = tolower(squeezed)',
  '  if (lower ~ /^[#;]*(private|preshared)[_-]*key=/) next',
  '  pub = (lower ~ /^publickey=/)',
  '  out = ""; rest = line',
  '  while (match(rest, /[A-Za-z0-9+\\/]+=*/)) {',
  // only a PublicKey line's first value, before any comment, is a peer's key to show (RV2 finding 3)
  '    if (index(substr(rest, 1, RSTART - 1), "#") > 0) pub = 0',
  '    run = substr(rest, RSTART, RLENGTH); sig = run; sub(/=+$/, "", sig)',
  '    secret = (length(sig) >= 43 && sig !~ /^[0-9a-f]+$/) && (!pub || run == own || (run in sec))',
  `    out = out substr(rest, 1, RSTART - 1) (secret ? "${REDACTED}" : run)`,
  '    if (length(sig) >= 43) pub = 0',
  '    rest = substr(rest, RSTART + RLENGTH)',
  '  }',
  '  print out rest',
  '}',
].join('\n');
