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
import { wireguardPaths, type NodeFacts } from '../facts/node-facts.js';
import type { ConfigChangeKind } from '../render/changes.js';
import type { RemoteAction } from './action.js';
import { syncconfKeepingKeyCommand } from '../render/systemd.js';

const interfaceReport = (iface: string, service: string, systemd: boolean) =>
  [
    `echo ifindex=$(cat /sys/class/net/${iface}/ifindex 2>/dev/null)`,
    systemd
      ? `echo active=$(systemctl is-active ${service} 2>/dev/null)`
      : `echo active=$([ -e /sys/class/net/${iface} ] && echo active || echo inactive)`,
    systemd ? `echo enabled=$(systemctl is-enabled ${service} 2>/dev/null)` : 'echo enabled=no-systemd',
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
    `for r in ${peerRoutes.join(' ')}; do ip -4 route replace "$r" dev ${iface}; done`,
    `ip -4 route show dev ${iface} proto boot scope link | cut -d' ' -f1 | while read r; do case " ${wanted} " in *" $r "*) ;; *) ip -4 route del "$r" dev ${iface};; esac; done`,
  ].join('\n');
}

/**
 * @param publicKey the node's public key after the keys phase: a running interface with another key (or none, after
 * a stock `wg syncconf` or reload from our key-less file) gets the key file loaded again
 */
export function planService(
  facts: NodeFacts,
  iface: string,
  change: ConfigChangeKind,
  peerRoutes: string[],
  publicKey?: string,
): { action?: RemoteAction; warning?: string } {
  const p = wireguardPaths(iface);
  const report = interfaceReport(iface, p.service, facts.systemd);
  if (!facts.systemd) {
    const up = facts.interfaces.includes(iface);
    if (up && change === 'none') return { warning: 'no systemd: the interface will not come back after a reboot' };
    return {
      action: {
        description: up ? `wg-quick down/up ${iface} (no systemd)` : `wg-quick up ${iface} (no systemd)`,
        script: `set -e\n${up ? `wg-quick down ${iface}\n` : ''}wg-quick up ${iface} 2>&1\n${report}`,
      },
      warning: 'no systemd: the interface will not come back after a reboot',
    };
  }
  const active = facts.service.active === 'active';
  const enabled = facts.service.enabled === 'enabled';
  const commands: string[] = [];
  const said: string[] = [];
  if (!active) {
    // an interface brought up by hand blocks wg-quick@ (it refuses "already exists"); take it down first
    if (facts.interfaces.includes(iface)) commands.push(`wg-quick down ${iface} >/dev/null 2>&1 || ip link del ${iface} || true`);
    commands.push(`systemctl enable --now ${p.service} 2>&1`);
    said.push(`enable --now ${p.service}`);
  } else {
    if (!enabled) {
      commands.push(`systemctl enable ${p.service} 2>&1`);
      said.push(`enable ${p.service}`);
    }
    if (change === 'interface' || change === 'create') {
      commands.push(`systemctl restart ${p.service} 2>&1`);
      said.push(`restart ${p.service} ([Interface] changed)`);
    } else if (change === 'peers') {
      commands.push(syncconfKeepingKeyCommand(iface, p.privateKey), syncRoutesScript(iface, peerRoutes));
      said.push(`wg syncconf ${iface} (peers changed; interface and sessions kept)`);
    } else {
      if (publicKey && facts.interfaces.includes(iface) && facts.interfacePublicKey !== publicKey) {
        commands.push(`wg set ${iface} private-key ${p.privateKey}`);
        said.push(`load ${p.privateKey} into ${iface} again (it ran with ${facts.interfacePublicKey ? 'another key' : 'no key'})`);
      }
      // nothing changed in the file, but someone may have removed a peer's route by hand: put it back
      const missing = missingRoutes(facts.interfaceRoutes, peerRoutes);
      if (missing.length) {
        commands.push(syncRoutesScript(iface, peerRoutes));
        said.push(`restore route${missing.length > 1 ? 's' : ''} ${missing.join(', ')} via ${iface}`);
      }
    }
  }
  if (commands.length === 0) return {};
  return { action: { description: said.join(', '), script: `set -e\n${commands.join('\n')}\n${report}` } };
}

export function parseServiceOutput(stdout: string): { active: string; enabled: string; interfaceIndex?: number } {
  const value = (key: string) => stdout.match(new RegExp(`^${key}=(.*)$`, 'm'))?.[1]?.trim() ?? '';
  const index = value('ifindex');
  return { active: value('active'), enabled: value('enabled'), interfaceIndex: index ? Number(index) : undefined };
}
