/**
 * `meshctl down` on one node, as pure functions: a read-only probe of what of the mesh is there (interface,
 * wg-quick@ unit, the files meshctl writes), and the one script that takes it down: the unit stopped and disabled,
 * the interface gone, and with `purge` every file meshctl put there (config and its backup, the key pair, the
 * rp_filter sysctl file, the reload drop-in), so that the node is as the up baseline expects a fresh node.
 * Idempotent: every command acts only on what the probe found, and a second run finds nothing and does nothing.
 * The private key file is removed with `rm`, never read. Only a WireGuard interface is deleted: a node whose interface
 * of the mesh's name is anything else is refused, and nothing is done on any node (Q9 F-down-eth0).
 * A rollback an interrupted `up` left armed on the node (../engine/revert.ts) is cancelled first: its timer would
 * otherwise bring the interface back after `down` took it away (a new user's finding, 2026-12-01).
 */
import { sh } from '../remote/shell.js';
import { isWireGuardTest, reresolvePaths, wireguardPaths } from '../remote/wireguard.js';
import { systemctlEnablement } from '../remote/systemctl.js';
import {
  CANCEL_LOCK_WAIT_S,
  cancelAllRollbacksScript,
  describeDue,
  parsePendingRollbacks,
  pendingRollbacksScript,
  type PendingRollback,
} from '../engine/revert.js';

/** What the probe found on a node. */
export interface DownFacts {
  systemd: boolean;
  /** `systemctl is-active` / `is-enabled` of wg-quick@IFACE ('' without systemd) */
  active: string;
  enabled: string;
  interfacePresent: boolean;
  /**
   * the interface is a WireGuard one: the kernel's (its uevent says DEVTYPE=wireguard) or wireguard-go's (its UAPI
   * socket /run/wireguard/IFACE.sock, wg(8)'s and wireguard-go's path). `down` deletes no other interface (Q9
   * F-down-eth0: an inventory whose mesh.interface was `eth0` deleted every node's uplink)
   */
  interfaceIsWireGuard: boolean;
  /**
   * the re-resolve timer (../render/reresolve.ts) is enabled or running: `down` stops and disables it with or without
   * --purge (a new user's finding Q8: left running, it fired every 30 s on a node whose interface was gone); `up`
   * enables it again where the node dials a peer (../remote/reresolve.ts)
   */
  reresolveOn: boolean;
  /** meshctl's files that exist on the node, absolute paths, in purgeablePaths order */
  files: string[];
  /** the drop-in directory exists (removed when empty) */
  dropInDir: boolean;
  /** rollbacks of earlier `up` runs still pending on the node (their timer would bring the interface back) */
  pendingRollbacks: PendingRollback[];
}

/** A change `down` makes on a node, as data (shown in the plan, counted in the report). */
export type DownChange =
  | { kind: 'stop-disable'; unit: string; was: string }
  | { kind: 'delete-interface'; iface: string }
  | { kind: 'remove-file'; path: string }
  | { kind: 'daemon-reload' }
  /** a pending rollback of an earlier `up` run, cancelled before anything else (its snapshot removed) */
  | { kind: 'cancel-rollback'; runId: string; deadline?: number };

/** Every file meshctl writes for `iface` (../remote/wireguard.ts), plus the config's backup and a write's leftover. */
export function purgeablePaths(iface: string): string[] {
  const p = wireguardPaths(iface);
  const r = reresolvePaths(iface);
  return [
    p.config,
    `${p.config}.bak`,
    `${p.config}.meshctl-tmp`,
    `${p.config}.bak.meshctl-tmp`,
    p.privateKey,
    // rotate-keys' pending key and every key temp file: a private key left behind would be used again by a node
    // rebuilt on the same disk (Q10 F12: the next rotate-keys put that old key back in use)
    `${p.privateKey}.new`,
    `${p.privateKey}.new.meshctl-tmp`,
    `${p.privateKey}.meshctl-tmp`,
    p.publicKey,
    `${p.publicKey}.meshctl-tmp`,
    p.sysctl,
    p.reloadDropIn,
    r.timer,
    r.service,
    r.script,
  ];
}

const dirOf = (path: string) => path.slice(0, path.lastIndexOf('/'));

/**
 * The read-only probe: `key=value` lines, one `file=PATH` per existing file and one `pending=RUN DEADLINE` per pending
 * rollback (../engine/revert.ts pendingRollbacksScript).
 */
export function downProbeScript(iface: string): string {
  const p = wireguardPaths(iface);
  return [
    'if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then echo systemd=yes',
    `  echo active=$(${sh`systemctl is-active ${p.service}`.text} 2>/dev/null)`,
    `  echo enabled=$(${sh`systemctl is-enabled ${p.service}`.text} 2>/dev/null)`,
    `  if ${sh`systemctl is-enabled -q ${reresolvePaths(iface).timerUnit}`.text} 2>/dev/null || ${sh`systemctl is-active -q ${reresolvePaths(iface).timerUnit}`.text}; then echo reresolve=on; fi`,
    'else echo systemd=no; fi',
    sh`if [ -e ${`/sys/class/net/${iface}`} ]; then echo interface=present; fi`.text,
    `if ${isWireGuardTest(iface)}; then echo interface-kind=wireguard; fi`,
    sh`for f in ${purgeablePaths(iface)}; do if [ -e "$f" ] || [ -L "$f" ]; then echo "file=$f"; fi; done`.text,
    sh`if [ -d ${dirOf(p.reloadDropIn)} ]; then echo dropin-dir=present; fi`.text,
    pendingRollbacksScript(),
  ].join('\n');
}

/** Reads the probe's output. */
export function parseDownProbe(stdout: string): DownFacts {
  const lines = stdout.split('\n').map((l) => l.trim());
  const value = (key: string) => lines.find((l) => l.startsWith(`${key}=`))?.slice(key.length + 1) ?? '';
  return {
    systemd: value('systemd') === 'yes',
    active: value('active'),
    enabled: value('enabled'),
    interfacePresent: value('interface') === 'present',
    interfaceIsWireGuard: value('interface-kind') === 'wireguard',
    reresolveOn: value('reresolve') === 'on',
    files: lines.filter((l) => l.startsWith('file=')).map((l) => l.slice(5)),
    dropInDir: value('dropin-dir') === 'present',
    pendingRollbacks: parsePendingRollbacks(stdout),
  };
}

/** The unit counts as set up unless systemd says it is neither running nor enabled (or does not know it). */
const unitInUse = (f: DownFacts) =>
  f.systemd && (['active', 'activating', 'reloading', 'failed'].includes(f.active) || !['disabled', 'not-found', ''].includes(f.enabled));

/** The deadline of down's script on a node, seconds, plus CANCEL_LOCK_WAIT_S per pending revert it cancels first. */
export const DOWN_DEADLINE_S = 60;

/**
 * What `down` does on a node with these facts, the script and its deadline (ms; absent: DOWN_DEADLINE_S); no action
 * when there is nothing to take down. `refused`: why nothing may be done on this node (its IFACE is not a WireGuard
 * interface: Q9 F-down-eth0); then `changes` is empty and there is no script.
 * The script stops on the first failing command (set -e); run again it finishes what is left.
 */
export function planDown(
  facts: DownFacts,
  iface: string,
  purge: boolean,
): { changes: DownChange[]; script?: string; timeoutMs?: number; refused?: string } {
  const p = wireguardPaths(iface);
  if (facts.interfacePresent && !facts.interfaceIsWireGuard)
    return {
      changes: [],
      refused: `${iface} is not a WireGuard interface there (no WireGuard device type, no wireguard-go socket): meshctl never deletes it; is mesh.interface right in the inventory?`,
    };
  const changes: DownChange[] = [];
  const commands: string[] = [];
  // first: a pending revert fires at its own time, and would start the interface again after the stop below. The
  // command cancels every revert left on the node at the time it runs (under the run lock), not only those the probe saw
  if (facts.pendingRollbacks.length) {
    for (const p of facts.pendingRollbacks)
      changes.push({ kind: 'cancel-rollback', runId: p.runId, ...(p.deadline !== undefined ? { deadline: p.deadline } : {}) });
    commands.push(cancelAllRollbacksScript());
  }
  if (unitInUse(facts)) {
    changes.push({ kind: 'stop-disable', unit: p.service, was: `${facts.active || 'unknown'}, ${facts.enabled || 'unknown'}` });
    commands.push(
      `${systemctlEnablement('disable', p.service, true)} 2>&1`,
      `${sh`systemctl reset-failed ${p.service}`.text} 2>/dev/null || true`,
    );
  }
  if (facts.interfacePresent) {
    changes.push({ kind: 'delete-interface', iface });
    // stopping the unit normally took it down already; a hand-made interface has no unit to stop it
    // tested again as the script runs: only a WireGuard interface is ever deleted
    commands.push(
      `${sh`if [ -e ${`/sys/class/net/${iface}`} ] && `.text}${isWireGuardTest(iface)}${sh`; then ip link del ${iface}; fi`.text}`,
    );
  }
  const timer = reresolvePaths(iface);
  if (facts.systemd && facts.reresolveOn) {
    // the re-resolve timer (../render/reresolve.ts) stops with the interface it serves; its files go with --purge
    changes.push({ kind: 'stop-disable', unit: timer.timerUnit, was: 'installed by meshctl' });
    commands.push(`${systemctlEnablement('disable', timer.timerUnit, true)} 2>/dev/null || true`);
  }
  if (purge) {
    for (const path of facts.files) changes.push({ kind: 'remove-file', path });
    if (facts.files.length) commands.push(sh`rm -f -- ${facts.files}`.text);
    if (facts.dropInDir) commands.push(sh`rmdir ${dirOf(p.reloadDropIn)} 2>/dev/null || true`.text);
    if (facts.systemd && [p.reloadDropIn, timer.timer, timer.service].some((f) => facts.files.includes(f))) {
      changes.push({ kind: 'daemon-reload' });
      commands.push('systemctl daemon-reload');
    }
  }
  if (commands.length === 0) return { changes };
  const script = `set -e\n${commands.join('\n')}\n`;
  // a revert already running holds its lock while it restores (mc_cancel waits up to CANCEL_LOCK_WAIT_S for it): the
  // script's deadline leaves that wait room for each revert seen and the rest of down besides (CI, 2026-12-02: a down
  // right after an interrupted run hit the flat 60 s deadline on a loaded host while the timer's revert ran)
  if (facts.pendingRollbacks.length === 0) return { changes, script };
  return { changes, script, timeoutMs: (CANCEL_LOCK_WAIT_S * facts.pendingRollbacks.length + DOWN_DEADLINE_S) * 1000 };
}

/** A down change in words, for the plan and the report. */
export function describeDownChange(change: DownChange): string {
  switch (change.kind) {
    case 'stop-disable':
      return `stop and disable ${change.unit} (was ${change.was})`;
    case 'delete-interface':
      return `delete interface ${change.iface}`;
    case 'remove-file':
      return `remove ${change.path}`;
    case 'daemon-reload':
      return 'systemctl daemon-reload (the drop-in or timer units are gone)';
    case 'cancel-rollback':
      return `cancel the pending rollback of an interrupted up (revert-${change.runId}, due ${describeDue(change)}: it would bring the interface back)`;
  }
}
