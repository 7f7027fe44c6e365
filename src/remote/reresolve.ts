/**
 * Installing and removing the re-resolve timer on a node (the files: ../render/reresolve.ts), as part of the config
 * step's one script. Idempotent: a file is written only when its sha256 differs from the node's, the timer is
 * enabled only when it is not enabled and active (or its units changed), and nothing happens on a converged node.
 * Where the node dials no peer any more, the timer is disabled and its files removed.
 * A node without systemd gets no timer: a warning says that its named peers are not re-resolved.
 */
import type { Change } from '../engine/types.js';
import type { ReresolveState } from '../facts/definitions.js';
import { createHash } from 'node:crypto';
import { atomicWriteScript } from '../steps/action.js';
import type { ReresolveFiles } from '../render/reresolve.js';
import { sh } from './shell.js';
import { reresolvePaths } from './wireguard.js';
import { systemctlEnablement } from './systemctl.js';

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');

/**
 * What the config step adds for the timer: changes, script lines (run under the step's `set -e`) in two parts with a
 * `systemctl daemon-reload` between them when `daemonReload` (the config step runs one for the timer and its own
 * drop-in together: each costs systemd a full reload), and warnings.
 */
export interface ReresolvePlan {
  changes: Change[];
  /** the file writes, or the disabling and removal */
  parts: string[];
  /** whether unit files changed: a daemon-reload must follow `parts` */
  daemonReload: boolean;
  /** after the daemon-reload: enabling and (re)starting the timer */
  start: string[];
  warnings: string[];
}

/**
 * The timer's part of the config step on one node.
 * - `files`: the rendered files when the node dials at least one peer (../render/reresolve.ts needsReresolve), else
 *   undefined (the timer is removed where meshctl had installed it);
 * - `state`: the node's FACTS.reresolve (undefined when not probed: treated as nothing installed);
 * - `names`: the peers dialled by name, for the warning on a node without systemd.
 */
export function planReresolve(
  iface: string,
  systemd: boolean,
  state: ReresolveState | undefined,
  files: ReresolveFiles | undefined,
  names: readonly string[] = [],
): ReresolvePlan {
  const p = reresolvePaths(iface);
  const plan: ReresolvePlan = { changes: [], parts: [], daemonReload: false, start: [], warnings: [] };
  if (!systemd) {
    // warned about names only, as before: every node without systemd would get a warning about roamed ports, and an
    // interface restart (wg-quick down/up) sets every endpoint back to the file's
    if (files && names.length > 0)
      plan.warnings.push(
        `no systemd on this node: nothing re-resolves the DNS names it dials (${names.join(', ')}); when such an address changes, run up again (or wg-quick down/up ${iface})`,
      );
    return plan;
  }
  const installed = [state?.scriptSha256, state?.serviceSha256, state?.timerSha256].some((s) => s !== undefined);
  if (!files) {
    if (!installed) return plan;
    plan.parts.push(`${systemctlEnablement('disable', p.timerUnit, true)} 2>/dev/null || true`);
    plan.changes.push({ kind: 'remove-file', path: p.timer, why: 'this node dials no peer any more' });
    plan.changes.push({ kind: 'remove-file', path: p.service, why: 'this node dials no peer any more' });
    plan.changes.push({ kind: 'remove-file', path: p.script, why: 'this node dials no peer any more' });
    plan.parts.push(sh`rm -f -- ${[p.timer, p.service, p.script]}`.text);
    plan.daemonReload = true;
    return plan;
  }
  const writes: Array<[path: string, text: string, before: string | undefined, mode: string]> = [
    [p.script, files.script, state?.scriptSha256, '755'],
    [p.service, files.service, state?.serviceSha256, '644'],
    [p.timer, files.timer, state?.timerSha256, '644'],
  ];
  let unitsChanged = false;
  for (const [path, text, before, mode] of writes) {
    const after = sha256(text);
    if (before === after) continue;
    if (path !== p.script) unitsChanged = true;
    plan.parts.push(atomicWriteScript(path, text, { mode, dirMode: '755', label: 'reresolve' }));
    plan.changes.push({ kind: 'write-file', path, role: 'reresolve', ...(before ? { beforeSha256: before } : {}), afterSha256: after });
  }
  plan.daemonReload = unitsChanged;
  const running = state?.enabled === 'enabled' && state.active === 'active';
  if (!running || unitsChanged) {
    plan.start.push(`${systemctlEnablement('enable', p.timerUnit)} 2>&1`, sh`systemctl restart ${p.timerUnit}`.text);
    plan.changes.push({ kind: 'enable', unit: p.timerUnit, now: true });
  }
  return plan;
}
