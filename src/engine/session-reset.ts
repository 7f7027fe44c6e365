/**
 * The ping phase's session reset (../checks/ping-matrix.ts sessionResets, PingMatrixOptions.resetSessions): before
 * the round (a pair whose first contact got no answer) and before the second round (a pair that failed the first),
 * the pair's dialer clears its WireGuard session with the other end, so that its next echo request starts a fresh handshake instead of waiting for WireGuard's own, KEEPALIVE_TIMEOUT +
 * REKEY_TIMEOUT (15 s) after the deaf end began sending (docs/transport-cost.md, "The cold ping phase at 32 nodes").
 *
 * How: neither wg(8) nor the kernel module nor wireguard-go has a command that drops a peer's keys and keeps the
 * peer, so the peer is removed (`wg set IFACE peer KEY remove`: its keys, handshake state and staged packets go) and
 * added again at once with `wg addconf` from its own [Peer] block of the node's wg-quick file (`wg-quick strip`).
 * Only those blocks: the enable step's full sync (../render/systemd.ts syncPeersCommand) would also set back every
 * other peer whose live endpoint WireGuard has roamed from the file's, which would touch working pairs. `wg addconf`
 * without an [Interface] section leaves the private key as it is, so no key is read. Routes via the interface are
 * not the peer's and stay.
 *
 * A reset must not lose the peer (RV4 F1.1, 2026-12-02): `wg addconf` resolves every `Endpoint` name before it sets
 * anything and is all-or-nothing, so a file Endpoint that is a DNS name (inventory `endpoint.host`, publicHost) which
 * did not resolve at that moment left every peer removed in the same command (seen on a wireguard-go interface with
 * no resolver: 2 peers -> 0, ~72 s of wg's retries, exit 0). So, one peer at a time: its block is added back with
 * the file's `Endpoint` line replaced by the peer's live endpoint as `wg show IFACE endpoints` gave it before the
 * remove (numeric: no name lookup; also keeps an endpoint WireGuard roamed to, F1.3), or with none when it had none
 * (the other end's next handshake sets it). Should that add-back still fail, it is tried once more without the
 * Endpoint line. Nothing is removed unless every block was read from the file and the live endpoints were read. The
 * command prints its outcome per peer in section SESSION_RESET_SECTION (readSessionReset), which the ping rounds read:
 * only the peers reset there are listed as reset, and a peer that could not be added back is named with wg's
 * message (the routes/peers checks after the pings fail on it too, and the next `up` adds it again).
 */
import { sh } from '../remote/shell.js';
import type { DesiredNodeConfig } from '../topology/desired.js';

/** The section the reset's command prints its outcome in (one line per peer; readSessionReset). */
export const SESSION_RESET_SECTION = 'session-reset';

/** A node's session reset: the command and the peers it covers. */
export interface SessionReset {
  /** shell text (POSIX sh); prints section SESSION_RESET_SECTION, ends with status 0 */
  command: string;
  /** the peers (inventory node names) the command resets: those asked that are [Peer]s of the node's config */
  peers: string[];
  /** the section's name, SESSION_RESET_SECTION */
  section: string;
  /** the outcome, from the section's body (undefined: the section was not printed, so nothing was reset) */
  read(body: string | undefined): SessionResetOutcome;
}

/** What a reset did, per peer (inventory node names). */
export interface SessionResetOutcome {
  /** peers removed and added back */
  reset: string[];
  /** peers not reset, each with why; `lost: true` when it was removed and could not be added back */
  notReset: Array<{ peer: string; why: string; lost: boolean }>;
}

/**
 * The command that clears `config`'s node's sessions with `peers` (inventory node names) as described above;
 * undefined when none of them is a peer of the node's config (nothing to clear, e.g. a relayed pair's far end).
 * @param config the node's desired config (its interface and its peers' public keys)
 * @param peers the peers whose sessions to clear, by inventory node name
 */
export function sessionResetCommand(config: DesiredNodeConfig, peers: readonly string[]): SessionReset | undefined {
  const wanted = new Set(peers);
  const covered = config.peers.filter((p) => wanted.has(p.name));
  if (covered.length === 0) return undefined;
  const iface = config.interface;
  const keys = covered.map((p) => p.publicKey);
  // each [Peer] block of the file whose PublicKey is one of the keys (the awk fails unless every key had one) and the
  // live endpoints, as one AND-OR list: nothing is removed unless both were read
  const read =
    sh`mc_blocks=$(wg-quick strip ${iface} | awk -v keys=${` ${keys.join(' ')} `} ${BLOCKS_AWK}) && [ -n "$mc_blocks" ] && mc_eps=$(wg show ${iface} endpoints)`
      .text;
  // one peer: $1 its name, $2 its key. Its block without Endpoint lines, its live endpoint (numeric, or "(none)"),
  // the remove, the add-back with that endpoint (never a name: no lookup), else without one; one line of outcome
  const one = [
    `mc_flat() { printf '%s' "$1" | tr '\\n' ' '; }`,
    'mc_reset() {',
    sh`  mc_b=$(printf '%s\\n' "$mc_blocks" | awk -v key="$2" ${ONE_BLOCK_AWK})`.text,
    `  [ -n "$mc_b" ] || { echo "not-reset $1 its [Peer] block was not found (nothing removed)"; return 0; }`,
    `  mc_ep=$(printf '%s\\n' "$mc_eps" | awk -v key="$2" '$1 == key { print $2 }')`,
    `  case $mc_ep in *:[0-9]*) mc_e="Endpoint = $mc_ep" ;; *) mc_e= ;; esac`,
    sh`  mc_err=$(wg set ${iface} peer "$2" remove 2>&1) || { echo "not-reset $1 wg set remove failed (kept): $(mc_flat "$mc_err")"; return 0; }`
      .text,
    sh`  if mc_err=$(printf '%s\\n%s\\n' "$mc_b" "$mc_e" | WG_ENDPOINT_RESOLUTION_RETRIES=0 wg addconf ${iface} /dev/stdin 2>&1); then echo "reset $1"; return 0; fi`
      .text,
    sh`  if mc_err2=$(printf '%s\\n' "$mc_b" | WG_ENDPOINT_RESOLUTION_RETRIES=0 wg addconf ${iface} /dev/stdin 2>&1); then echo "reset $1 (added back without its endpoint: $(mc_flat "$mc_err"))"; return 0; fi`
      .text,
    `  echo "lost $1 removed, and wg addconf could not add it back: $(mc_flat "$mc_err2")"`,
    '}',
  ].join('\n');
  const calls = covered.map((p) => sh`mc_reset ${p.name} ${p.publicKey}`.text);
  const section = [
    `echo '@@meshctl begin ${SESSION_RESET_SECTION}'`,
    one,
    ...calls,
    `echo '@@meshctl end ${SESSION_RESET_SECTION} rc=0'`,
  ].join('\n');
  const names = covered.map((p) => p.name);
  return {
    command: `if ${read}; then\n${section}\nfi`,
    peers: names,
    section: SESSION_RESET_SECTION,
    read: (body) => readSessionReset(body, names),
  };
}

/**
 * The outcome of a reset of `peers` from its section's body (sessionResetCommand's lines: `reset NAME`,
 * `not-reset NAME WHY`, `lost NAME WHY`); a peer with no line, or no section at all, was not reset (its block or
 * the live endpoints could not be read, so nothing was removed; or the script was cut short).
 */
export function readSessionReset(body: string | undefined, peers: readonly string[]): SessionResetOutcome {
  const said = new Map<string, { kind: string; why: string }>();
  for (const line of (body ?? '').split('\n')) {
    const m = /^(reset|not-reset|lost) (\S+) ?(.*)$/.exec(line.trim());
    if (m) said.set(m[2]!, { kind: m[1]!, why: m[3]! });
  }
  const outcome: SessionResetOutcome = { reset: [], notReset: [] };
  for (const peer of peers) {
    const line = said.get(peer);
    if (line?.kind === 'reset') outcome.reset.push(peer);
    else
      outcome.notReset.push({
        peer,
        why:
          line?.why ||
          (body === undefined
            ? 'the reset did not run (the [Peer] blocks or live endpoints could not be read; nothing removed)'
            : 'no outcome printed'),
        lost: line?.kind === 'lost',
      });
  }
  return outcome;
}

/**
 * awk: the [Peer] blocks of a wg-quick file (as `wg-quick strip` prints it) whose PublicKey is in `keys` (one string,
 * each key between spaces); exits 1 unless every key had a block. POSIX awk (mawk, gawk, busybox).
 */
const BLOCKS_AWK = [
  String.raw`function trim(s) { sub(/^[ \t]+/, "", s); sub(/[ \t]+$/, "", s); return s }`,
  'function flush(  i) { if (want) { for (i = 1; i <= n; i++) print line[i]; found++ } n = 0; want = 0 }',
  'BEGIN { wanted = split(trim(keys), unused, " ") }',
  String.raw`/^[ \t]*\[/ { flush(); inpeer = (tolower(trim($0)) == "[peer]") }`,
  'inpeer { line[++n] = $0; eq = index($0, "="); if (eq && tolower(trim(substr($0, 1, eq - 1))) == "publickey" && index(keys, " " trim(substr($0, eq + 1)) " ")) want = 1 }',
  'END { flush(); exit found == wanted ? 0 : 1 }',
].join('\n');

/**
 * awk: of BLOCKS_AWK's output, the one [Peer] block whose PublicKey is `key`, without its Endpoint lines (the
 * add-back sets the live endpoint instead). POSIX awk.
 */
const ONE_BLOCK_AWK = [
  String.raw`function trim(s) { sub(/^[ \t]+/, "", s); sub(/[ \t]+$/, "", s); return s }`,
  'function flush(  i) { if (want) for (i = 1; i <= n; i++) print line[i]; n = 0; want = 0 }',
  String.raw`/^[ \t]*\[/ { flush() }`,
  '{ eq = index($0, "="); k = eq ? tolower(trim(substr($0, 1, eq - 1))) : "" }',
  'k == "endpoint" { next }',
  '{ line[++n] = $0 }',
  'k == "publickey" && trim(substr($0, eq + 1)) == key { want = 1 }',
  'END { flush() }',
].join('\n');
