/**
 * Config phase: the rendered wg-quick file, the rp_filter drop-in and (with systemd) the wg-quick@ drop-in that
 * keeps the private key through `systemctl reload` (../render/systemd.ts), each written only when its content differs
 * (compared by sha256, so a converged node gets no write at all), atomically (temp file + rename, previous config
 * kept as .bak). rp_filter is applied from our file alone, not `sysctl --system`, so no unrelated setting moves.
 */
import { createHash } from 'node:crypto';
import { wireguardPaths, type NodeFacts } from '../facts/node-facts.js';
import type { RpFilterMode } from '../inventory/types.js';
import { atomicWriteScript, type RemoteAction } from './action.js';

export const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');

export interface ConfigPlanInput {
  iface: string;
  configText: string;
  sysctlText: string;
  rpFilter: RpFilterMode;
  /** written only where systemd runs */
  reloadDropInText: string;
}

export interface ConfigPlan {
  writeConfig: boolean;
  writeSysctl: boolean;
  applySysctl: boolean;
  writeReloadDropIn: boolean;
  action?: RemoteAction;
}

export function planConfig(facts: NodeFacts, input: ConfigPlanInput): ConfigPlan {
  const p = wireguardPaths(input.iface);
  const writeConfig = facts.config.sha256 !== sha256(input.configText);
  const writeSysctl = facts.sysctl.fileSha256 !== sha256(input.sysctlText);
  // the kernel may hold other values than the file (set by hand, or a file that was never applied)
  const runtimeDiffers = facts.sysctl.rpFilterAll !== input.rpFilter || facts.sysctl.rpFilterDefault !== input.rpFilter;
  const applySysctl = writeSysctl || runtimeDiffers;
  const writeReloadDropIn = facts.systemd && facts.service.reloadDropInSha256 !== sha256(input.reloadDropInText);
  const decided = { writeConfig, writeSysctl, applySysctl, writeReloadDropIn };
  if (!writeConfig && !applySysctl && !writeReloadDropIn) return decided;

  const parts: string[] = ['set -e'];
  const did: string[] = [];
  if (writeConfig) {
    parts.push(atomicWriteScript(p.config, input.configText, { backup: true, label: 'config' }));
    did.push(`write ${p.config}`);
  }
  if (writeSysctl) {
    parts.push(atomicWriteScript(p.sysctl, input.sysctlText, { mode: '644', label: 'sysctl' }));
    did.push(`write ${p.sysctl}`);
  }
  if (applySysctl) {
    parts.push(`sysctl -q -p ${p.sysctl}`);
    did.push(`apply rp_filter=${input.rpFilter} from ${p.sysctl}`);
  }
  if (writeReloadDropIn) {
    // a unit's drop-in directory is world-readable, as systemd's own are
    parts.push(
      atomicWriteScript(p.reloadDropIn, input.reloadDropInText, { mode: '644', dirMode: '755', label: 'dropin' }),
      'systemctl daemon-reload',
    );
    did.push(`write ${p.reloadDropIn} (a reload keeps the key)`);
  }
  parts.push('echo rp_filter=$(cat /proc/sys/net/ipv4/conf/all/rp_filter),$(cat /proc/sys/net/ipv4/conf/default/rp_filter)');
  return { ...decided, action: { description: did.join(', '), script: parts.join('\n') } };
}

export function parseConfigOutput(stdout: string): { configSha256?: string; rpFilter?: { all: number; default: number } } {
  const value = (key: string) => stdout.match(new RegExp(`^${key}=(.*)$`, 'm'))?.[1]?.trim();
  const rp = value('rp_filter')?.split(',').map(Number);
  return { configSha256: value('config'), rpFilter: rp && rp.length === 2 ? { all: rp[0]!, default: rp[1]! } : undefined };
}
