/**
 * Loads an inventory file into the normalised Inventory.
 * FIRST VERSION (to be completed by the inventory work): maps fields and applies defaults, with few checks.
 * Contract: loadInventory(path) returns an Inventory or throws MeshctlError(exit 2) whose details are
 * `file:line:col: field: message` lines, all problems at once; it never touches the network.
 */
import { readFileSync } from 'node:fs';
import { parse } from 'yaml';
import { badInput } from '../errors.js';
import type { Inventory, Node, Site } from './types.js';

type Raw = Record<string, any>;

export function loadInventory(path: string): Inventory {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw badInput(`cannot read inventory ${path}: ${(error as Error).message}`);
  }
  const raw = (parse(text) ?? {}) as Raw;
  const meshRaw: Raw = raw.mesh ?? {};
  const rp = meshRaw.rpFilter ?? 'loose';
  const mesh = {
    interface: meshRaw.interface ?? 'wg0',
    network: meshRaw.network,
    listenPort: meshRaw.listenPort ?? 51820,
    mtu: meshRaw.mtu ?? 1420,
    persistentKeepalive: meshRaw.persistentKeepalive ?? 25,
    rpFilter: (({ off: 0, strict: 1, loose: 2 }) as Record<string, 0 | 1 | 2>)[String(rp)] ?? (Number(rp) as 0 | 1 | 2),
    reservedCidrs: meshRaw.reservedCidrs ?? [],
  };
  const sites: Site[] = Object.entries((raw.sites ?? {}) as Raw).map(([name, s]: [string, Raw]) =>
    s.public ? { name, kind: 'public' } : s.nat ? { name, kind: 'nat', lan: s.lan, router: s.router, publicIp: s.nat.publicIp } : { name, kind: 'lan', lan: s.lan, router: s.router },
  );
  const defaults: Raw = raw.defaults?.ssh ?? {};
  const nodes: Node[] = Object.entries((raw.nodes ?? {}) as Raw).map(([name, n]: [string, Raw]) => {
    const ssh: Raw = { ...defaults, ...(n.ssh ?? {}) };
    const user = ssh.user ?? 'root';
    return {
      name,
      site: n.site,
      address: n.address,
      overlayIp: n.overlayIp,
      listenPort: n.listenPort ?? mesh.listenPort,
      forwardedPort: n.forwardedPort,
      ssh: { host: ssh.host ?? n.address, port: ssh.port ?? 22, user, identityFile: ssh.identityFile, become: ssh.become ?? (user === 'root' ? 'none' : 'sudo') },
    };
  });
  return { source: path, mesh, sites, nodes };
}
