/**
 * WireGuard and wg-quick constants and the paths meshctl owns on a node, in one place.
 *
 * Timers are from the WireGuard paper (Donenfeld, "WireGuard: Next Generation Kernel Network Tunnel", section 6.1,
 * and the kernel's messages.h): a handshake initiation without answer is retried after REKEY_TIMEOUT; a session is
 * re-keyed after REKEY_AFTER_TIME and unusable after REJECT_AFTER_TIME.
 */
import { raw, sh } from './shell.js';

/** seconds before an unanswered handshake initiation is retried */
export const REKEY_TIMEOUT_S = 5;
/** seconds after which the initiator of a session starts a new handshake */
export const REKEY_AFTER_TIME_S = 120;
/** seconds after which a session's keys are no longer used: an older latest-handshake means no live session */
export const REJECT_AFTER_TIME_S = 180;

/** The files and units meshctl manages for interface `iface` (wg-quick(8): CONFIG_FILE is /etc/wireguard/IFACE.conf). */
export const wireguardPaths = (iface: string) => ({
  dir: '/etc/wireguard',
  config: `/etc/wireguard/${iface}.conf`,
  privateKey: `/etc/wireguard/${iface}.key`,
  publicKey: `/etc/wireguard/${iface}.pub`,
  sysctl: '/etc/sysctl.d/99-wireguard.conf',
  service: `wg-quick@${iface}`,
  reloadDropIn: reloadDropInPath(iface),
});

/** The wg-quick@IFACE drop-in whose ExecReload keeps the private key (../render/systemd.ts). */
export const reloadDropInPath = (iface: string) => `/etc/systemd/system/wg-quick@${iface}.service.d/meshctl-keep-key.conf`;

/**
 * The re-resolve timer meshctl installs where a node dials at least one peer (../render/reresolve.ts): one script
 * and two template units shared by every interface, and the timer instance of `iface`.
 */
export const reresolvePaths = (iface: string) => ({
  script: '/usr/local/lib/meshctl/reresolve-endpoints',
  service: '/etc/systemd/system/meshctl-reresolve@.service',
  timer: '/etc/systemd/system/meshctl-reresolve@.timer',
  timerUnit: `meshctl-reresolve@${iface}.timer`,
});

/**
 * Every path meshctl installs on a node for `iface` whose owner and mode decide who controls what root runs or reads
 * (FACTS.wireguardFiles, judged by ../checks/file-modes.ts), in the order stat prints them: /etc/wireguard, the key,
 * the .pub, the wg-quick file; the sysctl file; the wg-quick@IFACE drop-in and its directory; the re-resolve script
 * (root runs it every RERESOLVE_INTERVAL_S), its directory, and its two units (Q10 F1: those were not judged, and a
 * re-resolve script another user could write was "converged").
 */
export const fileModePaths = (iface: string): string[] => {
  const p = wireguardPaths(iface);
  const r = reresolvePaths(iface);
  const dirOf = (path: string) => path.slice(0, path.lastIndexOf('/'));
  return [
    p.dir,
    p.privateKey,
    p.publicKey,
    p.config,
    p.sysctl,
    dirOf(p.reloadDropIn),
    p.reloadDropIn,
    dirOf(r.script),
    r.script,
    r.service,
    r.timer,
  ];
};

/** seconds between two re-resolutions of the peers' DNS names (the issue promises recovery within two minutes) */
export const RERESOLVE_INTERVAL_S = 30;

/**
 * Seconds after which the re-resolve script (../render/reresolve.ts) counts a peer's latest handshake as stale and
 * sets a moved endpoint back to the configured one: REJECT_AFTER_TIME. A handshake's keys are used for at most that
 * long, so an older latest handshake means the peer has no session at all (its next packet starts a handshake
 * anyway): setting the endpoint then never moves a session that still carries traffic. wireguard-tools'
 * contrib/reresolve-dns/reresolve-dns.sh uses 135 s (REKEY_AFTER_TIME + 3 REKEY_TIMEOUT: a peer that sends missed
 * three retries of its rekey), 45 s sooner, but a quiet pair whose initiator rekeys only on receipt (after
 * REJECT_AFTER_TIME - KEEPALIVE_TIMEOUT - REKEY_TIMEOUT = 165 s, the kernel's receive.c keep_key_fresh) still has
 * working keys then.
 */
export const RERESOLVE_STALE_S = REJECT_AFTER_TIME_S;

/**
 * Peer lines of `wg show IFACE dump`, the preshared key masked on the node. Never the first (interface) line, which
 * holds the private key: the awk drops it on the node (`NR > 1`; it did `tail -n +2` before, one exec more per
 * probe, issue 10). Read by the facts probe, verify and the peer sync (../render/systemd.ts).
 */
export const peerDumpCommand = (iface: string, clockMark?: string) =>
  sh`wg show ${iface} dump | awk 'BEGIN { FS = OFS = "\\t" } NR > 1 { if ($2 != "(none)") $2 = "(hidden)"; print }${raw(clockEnd(clockMark))}'`
    .text;

/**
 * The dump awk's END that prints the node's clock (epoch seconds) on a last line after `mark`, once the whole dump
 * is read (so the clock is never before a handshake it shows): ../engine/ping-ahead.ts reads it instead of running
 * `date` (issue 10). `mark` is literal awk string text: letters, digits, spaces and `@-` only.
 */
function clockEnd(mark: string | undefined): string {
  if (mark === undefined) return '';
  if (!/^[A-Za-z0-9@ -]+$/.test(mark)) throw new Error(`peerDumpCommand: clock mark ${JSON.stringify(mark)} is not plain text`);
  return ` END { srand(); printf "\\n${mark}%d\\n", srand() }`;
}

/**
 * Findings 27, 28: what `wg show IFACE ...` printed when it could not read the interface, in words an operator acts
 * on, with wg's own text kept after them. wg(8) reports the kernel's or wireguard-go's errno as text: "Protocol not
 * supported" (EPROTONOSUPPORT: no WireGuard interface of that name: no kernel module and no wireguard-go socket for
 * it, e.g. wg-quick@IFACE stopped) and "No such device" (ENODEV: the module is there, the interface is not) both mean
 * the interface is not up; "Operation not permitted" means wg ran without root. Anything else is returned as it is.
 */
export function describeWgError(rawError: string, iface: string): string {
  const said = rawError.trim();
  const quoted = `(wg said: ${said})`;
  if (/Protocol not supported|No such device/i.test(said))
    return `${iface} is not up: no WireGuard interface of that name runs (wg-quick@${iface} stopped, or it failed to start) ${quoted}`;
  if (/Operation not permitted|Permission denied/i.test(said)) return `wg could not read ${iface} without root ${quoted}`;
  if (/not found/i.test(said)) return `wg is not installed (wireguard-tools) ${quoted}`;
  return said;
}

/**
 * A shell test, true when `iface` is a WireGuard interface: the kernel's module names its devices' type in uevent
 * (DEVTYPE=wireguard); wireguard-go's is a tun device whose UAPI socket is /run/wireguard/IFACE.sock (wg(8) looks
 * there, /var/run being /run on every systemd distribution; both are tested). No `wg` needed.
 */
export function isWireGuardTest(iface: string): string {
  return sh`{ grep -qx DEVTYPE=wireguard ${`/sys/class/net/${iface}/uevent`} 2>/dev/null || [ -S ${`/run/wireguard/${iface}.sock`} ] || [ -S ${`/var/run/wireguard/${iface}.sock`} ]; }`
    .text;
}
