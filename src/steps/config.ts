/**
 * Config phase: the rendered wg-quick file, the rp_filter drop-in and (with systemd) the wg-quick@ drop-in that
 * keeps the private key through `systemctl reload` (../render/systemd.ts), each written only when its content differs
 * (compared by sha256, so a converged node gets no write at all), atomically (temp file + rename, previous config
 * kept as .bak). rp_filter is applied from our file alone, not `sysctl --system`, so no unrelated setting moves.
 */
import { createHash } from 'node:crypto';
import type { Change, NodeAction } from '../engine/types.js';
import type { NodeFacts } from '../facts/node-facts.js';
import type { RpFilterMode } from '../inventory/types.js';
import { keyShapedTokens, redactSecretSettings, redactSecrets } from '../remote/redact.js';
import { sh } from '../remote/shell.js';
import { wireguardPaths } from '../remote/wireguard.js';
import { lineDiff } from '../render/line-diff.js';
import { atomicWriteScript } from './action.js';
import { withRevertArmed, type RollbackOptions } from '../engine/revert.js';
import { planReresolve } from '../remote/reresolve.js';
import type { ReresolveFiles } from '../render/reresolve.js';

/** sha256 of a text, hex (what `sha256sum` prints). */
export const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');

export interface ConfigPlanInput {
  iface: string;
  configText: string;
  sysctlText: string;
  rpFilter: RpFilterMode;
  /** written only where systemd runs */
  reloadDropInText: string;
  /** arm a revert on the node before the first write, in the same script (../engine/revert.ts) */
  rollback?: RollbackOptions;
  /**
   * The re-resolve timer's files where the node dials a peer by DNS name (../render/reresolve.ts), with those
   * peers for the warning without systemd; absent: the timer is removed if meshctl had installed it.
   */
  reresolve?: { files: ReresolveFiles; names: string[] };
  /**
   * Public keys the nodes of the run reported as the public half of a key they hold (`wg pubkey < KEYFILE`, `wg show
   * IFACE public-key`): the diff shows them in the node's `PublicKey =` lines (finding 30: a key rotation's old key)
   */
  reportedPublicKeys?: ReadonlySet<string>;
}

export interface ConfigPlan {
  writeConfig: boolean;
  writeSysctl: boolean;
  applySysctl: boolean;
  writeReloadDropIn: boolean;
  action?: NodeAction;
  /** warnings that change nothing (a node without systemd that dials peers by name) */
  warnings?: string[];
}

/** Decides which files to write and whether to apply rp_filter, and builds the one script that does it. */
export function planConfig(facts: NodeFacts, input: ConfigPlanInput): ConfigPlan {
  const p = wireguardPaths(input.iface);
  const configSha = sha256(input.configText);
  const sysctlSha = sha256(input.sysctlText);
  const dropInSha = sha256(input.reloadDropInText);
  const writeConfig = facts.config.sha256 !== configSha;
  const writeSysctl = facts.sysctl.fileSha256 !== sysctlSha;
  // the kernel may hold other values than the file (set by hand, or a file that was never applied)
  const runtimeDiffers = facts.sysctl.rpFilterAll !== input.rpFilter || facts.sysctl.rpFilterDefault !== input.rpFilter;
  const applySysctl = writeSysctl || runtimeDiffers;
  const writeReloadDropIn = facts.systemd && facts.service.reloadDropInSha256 !== dropInSha;
  const timer = planReresolve(input.iface, facts.systemd, facts.reresolve, input.reresolve?.files, input.reresolve?.names);
  const decided = {
    writeConfig,
    writeSysctl,
    applySysctl,
    writeReloadDropIn,
    ...(timer.warnings.length ? { warnings: timer.warnings } : {}),
  };
  if (!writeConfig && !applySysctl && !writeReloadDropIn && timer.changes.length === 0) return decided;

  const parts: string[] = ['set -e'];
  const changes: Change[] = [];
  if (writeConfig) {
    parts.push(atomicWriteScript(p.config, input.configText, { backup: true, label: 'config' }));
    changes.push({
      kind: 'write-file',
      path: p.config,
      role: 'config',
      ...(facts.config.sha256 ? { beforeSha256: facts.config.sha256 } : {}),
      afterSha256: configSha,
      diff: configDiff(facts, input.configText, input.reportedPublicKeys),
    });
  }
  if (writeSysctl) {
    parts.push(atomicWriteScript(p.sysctl, input.sysctlText, { mode: '644', label: 'sysctl' }));
    changes.push({
      kind: 'write-file',
      path: p.sysctl,
      role: 'sysctl',
      ...(facts.sysctl.fileSha256 ? { beforeSha256: facts.sysctl.fileSha256 } : {}),
      afterSha256: sysctlSha,
    });
  }
  if (applySysctl) {
    parts.push(sh`sysctl -q -p ${p.sysctl}`.text);
    changes.push({ kind: 'apply-sysctl', path: p.sysctl, rpFilter: input.rpFilter });
  }
  if (writeReloadDropIn) {
    // a unit's drop-in directory is world-readable, as systemd's own are
    parts.push(atomicWriteScript(p.reloadDropIn, input.reloadDropInText, { mode: '644', dirMode: '755', label: 'dropin' }));
    changes.push({
      kind: 'write-file',
      path: p.reloadDropIn,
      role: 'reload-drop-in',
      ...(facts.service.reloadDropInSha256 ? { beforeSha256: facts.service.reloadDropInSha256 } : {}),
      afterSha256: dropInSha,
    });
  }
  parts.push(...timer.parts);
  // one daemon-reload for the drop-in and the timer's units together (each is a full reload of systemd)
  if (writeReloadDropIn || timer.daemonReload) parts.push('systemctl daemon-reload');
  parts.push(...timer.start);
  changes.push(...timer.changes);
  // what the node holds afterwards, read back for the gate: the config's sha256 even when it was not written
  if (!writeConfig) parts.push(`echo "config=$(sha256sum < ${sh`${p.config}`.text} | cut -d' ' -f1)"`);
  parts.push('echo rp_filter=$(cat /proc/sys/net/ipv4/conf/all/rp_filter),$(cat /proc/sys/net/ipv4/conf/default/rp_filter)');
  const action = withRevertArmed({ changes, script: parts.join('\n') }, input.iface, input.rollback, facts.systemd, 'config');
  return { ...decided, action };
}

/** Reads `config=SHA` and `rp_filter=ALL,DEFAULT` from the config action's output. */
export function parseConfigOutput(stdout: string): { configSha256?: string; rpFilter?: { all: number; default: number } } {
  const value = (key: string) => stdout.match(new RegExp(`^${key}=(.*)$`, 'm'))?.[1]?.trim();
  const rp = value('rp_filter')?.split(',').map(Number);
  return { configSha256: value('config'), rpFilter: rp && rp.length === 2 ? { all: rp[0]!, default: rp[1]! } : undefined };
}

/**
 * The dry run's diff of the node's wg-quick file against the rendered one, node content redacted
 * (../remote/redact.ts): the keys meshctl rendered itself (the mesh's public keys) and the node's own public key are
 * the known public keys, and in `PublicKey =` lines also the keys the nodes reported (`reported`: a rotated key's
 * old half, finding 30), and every other `PublicKey =` value unless it is the private key of a known one (Q3
 * finding 9: a peer the plan removes is named by its key); any other key-shaped value on the node is shown as
 * [redacted].
 * Issue 10: each text is redacted once, whole, before the diff (per diff line it was most of a 1,000-peer plan's
 * cost), and a node without the file gets every line added without any diff search.
 */
function configDiff(facts: NodeFacts, configText: string, reported?: ReadonlySet<string>): string[] {
  // every key-shaped value of the rendered text is known, so only a secret setting line of it could be hidden
  const after = redactSecretSettings(configText);
  if (facts.config.text === undefined) return lineDiff(undefined, after);
  const known = new Set([...keyShapedTokens(configText), ...(facts.keys.publicKey ? [facts.keys.publicKey] : [])]);
  return lineDiff(redactSecrets(facts.config.text, known, reported, { publicKeyLines: 'shown' }), after);
}
