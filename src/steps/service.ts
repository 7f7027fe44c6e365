/**
 * Enable phase: wg-quick@IFACE enabled and running. What it does depends on how the config changed:
 * - not running: enable --now;
 * - only [Peer] sections changed: `wg syncconf`, which keeps the interface, its ifindex and the other peers'
 *   sessions; routes for added/removed peers are synced by hand, as syncconf does not route. Not
 *   a plain `wg syncconf` from the file, which would clear the key the file does not carry (../render/systemd.ts);
 * - [Interface] changed (address, port, MTU): restart;
 * - nothing changed: nothing.
 * Without systemd: wg-quick up, and a warning that it will not survive a reboot.
 */
import type { Change, NodeAction } from '../engine/types.js';
import type { NodeFacts } from '../facts/node-facts.js';
import { sh } from '../remote/shell.js';
import { wireguardPaths } from '../remote/wireguard.js';
import type { ConfigChangeKind } from '../render/changes.js';
import { syncconfKeepingKeyCommand } from '../render/systemd.js';

/** Prints ifindex=, active=, enabled= after the action, for the gate (parseServiceOutput reads them). */
const interfaceReport = (iface: string, service: string, systemd: boolean) =>
  [
    `echo ifindex=$(cat ${sh`${`/sys/class/net/${iface}/ifindex`}`.text} 2>/dev/null)`,
    systemd
      ? `echo active=$(systemctl is-active ${sh`${service}`.text} 2>/dev/null)`
      : `echo active=$([ -e ${sh`${`/sys/class/net/${iface}`}`.text} ] && echo active || echo inactive)`,
    systemd ? `echo enabled=$(systemctl is-enabled ${sh`${service}`.text} 2>/dev/null)` : 'echo enabled=no-systemd',
  ].join('\n');

/** Peer routes not on the interface (`ip route show` prints a host route without its /32). */
export function missingRoutes(present: readonly string[], peerRoutes: readonly string[]): string[] {
  const shown = new Set(present);
  return peerRoutes.filter((r) => !shown.has(r) && !shown.has(r.replace(/\/32$/, '')));
}

/** Makes the routes on the interface exactly one /32 per peer (what wg-quick would have added at start). */
function syncRoutesScript(iface: string, peerRoutes: string[]): string {
  // `ip route show` prints a host route without its /32, so a route is wanted in either spelling
  const wanted = peerRoutes.flatMap((r) => (r.endsWith('/32') ? [r, r.slice(0, -3)] : [r])).join(' ');
  return [
    sh`for r in ${peerRoutes}; do ip -4 route replace "$r" dev ${iface}; done`.text,
    sh`ip -4 route show dev ${iface} proto boot scope link | cut -d' ' -f1 | while read r; do case ${` ${wanted} `} in *" $r "*) ;; *) ip -4 route del "$r" dev ${iface};; esac; done`
      .text,
  ].join('\n');
}

const NO_SYSTEMD_WARNING = 'no systemd: the interface will not come back after a reboot';

/**
 * The enable action for a node, or none when the service runs the current config with the node's key.
 * @param change how the config file changed in this run (../render/changes.ts)
 * @param peerRoutes the AllowedIPs of every peer (one /32 each), for the route sync after `wg syncconf`
 * @param publicKey the node's public key after the keys phase: a running interface with another key (or none, after
 * a stock `wg syncconf` or reload from our key-less file) gets the key file loaded again
 */
export function planService(
  facts: NodeFacts,
  iface: string,
  change: ConfigChangeKind,
  peerRoutes: string[],
  publicKey?: string,
): { action?: NodeAction; warning?: string } {
  const p = wireguardPaths(iface);
  const report = interfaceReport(iface, p.service, facts.systemd);
  if (!facts.systemd) {
    const up = facts.interfaces.includes(iface);
    if (up && change === 'none') return { warning: NO_SYSTEMD_WARNING };
    return {
      action: {
        changes: [{ kind: 'wg-quick-up', iface, restart: up, why: 'no systemd' }],
        script: `set -e\n${up ? `${sh`wg-quick down ${iface}`.text}\n` : ''}${sh`wg-quick up ${iface}`.text} 2>&1\n${report}`,
      },
      warning: NO_SYSTEMD_WARNING,
    };
  }
  const active = facts.service.active === 'active';
  const enabled = facts.service.enabled === 'enabled';
  const commands: string[] = [];
  const changes: Change[] = [];
  if (!active) {
    // an interface brought up by hand blocks wg-quick@ (it refuses "already exists"); take it down first
    if (facts.interfaces.includes(iface)) commands.push(sh`wg-quick down ${iface} >/dev/null 2>&1 || ip link del ${iface} || true`.text);
    commands.push(`${sh`systemctl enable --now ${p.service}`.text} 2>&1`);
    changes.push({ kind: 'enable', unit: p.service, now: true });
  } else {
    if (!enabled) {
      commands.push(`${sh`systemctl enable ${p.service}`.text} 2>&1`);
      changes.push({ kind: 'enable', unit: p.service, now: false });
    }
    if (change === 'interface' || change === 'create') {
      commands.push(`${sh`systemctl restart ${p.service}`.text} 2>&1`);
      changes.push({ kind: 'restart', unit: p.service, why: '[Interface] changed' });
    } else if (change === 'peers') {
      commands.push(syncconfKeepingKeyCommand(iface, p.privateKey), syncRoutesScript(iface, peerRoutes));
      changes.push({ kind: 'syncconf', iface, why: 'peers changed; interface and sessions kept' });
    } else {
      if (publicKey && facts.interfaces.includes(iface) && facts.interfacePublicKey !== publicKey) {
        commands.push(sh`wg set ${iface} private-key ${p.privateKey}`.text);
        changes.push({
          kind: 'load-private-key',
          iface,
          path: p.privateKey,
          why: `it ran with ${facts.interfacePublicKey ? 'another key' : 'no key'}`,
        });
      }
      // nothing changed in the file, but someone may have removed a peer's route by hand: put it back
      const missing = missingRoutes(facts.interfaceRoutes, peerRoutes);
      if (missing.length) {
        commands.push(syncRoutesScript(iface, peerRoutes));
        changes.push({ kind: 'restore-routes', iface, routes: missing });
      }
    }
  }
  if (commands.length === 0) return {};
  return { action: { changes, script: `set -e\n${commands.join('\n')}\n${report}` } };
}

/** Reads ifindex=, active=, enabled= from the enable action's output. */
export function parseServiceOutput(stdout: string): { active: string; enabled: string; interfaceIndex?: number } {
  const value = (key: string) => stdout.match(new RegExp(`^${key}=(.*)$`, 'm'))?.[1]?.trim() ?? '';
  const index = value('ifindex');
  return { active: value('active'), enabled: value('enabled'), interfaceIndex: index ? Number(index) : undefined };
}
