/**
 * The farm's inventory generator: N nodes, half of them on a public site, the rest in NAT sites of up to 50 nodes
 * (a LAN behind a router with one UDP port forward per node), overlay 100.80.0.0/16 (one /32 per node).
 * The underlay addresses are only values in the inventory: no farm node has them and nothing sends to them
 * (198.18.0.0/15 is the benchmarking range of RFC 2544).
 */
export interface FarmNode {
  name: string;
  site: string;
  address: string;
  overlayIp: string;
  forwardedPort?: number;
}

export interface FarmInventory {
  nodes: FarmNode[];
  sites: Record<string, { lan: string; router: string; publicIp: string } | { public: true }>;
  /** the inventory YAML, with each node's ssh settings from `ssh` */
  yaml(ssh: (name: string) => { port: number; identityFile: string }): string;
}

const SITE_SIZE = 50;
const octets = (i: number) => `${Math.floor(i / 250)}.${(i % 250) + 2}`;

/** The farm of `n` nodes (n >= 2). Names: pub-NNNN on site edge, natS-NNNN on site natS. */
export function farmInventory(n: number): FarmInventory {
  const nodes: FarmNode[] = [];
  const sites: FarmInventory['sites'] = { edge: { public: true } };
  const publicCount = Math.ceil(n / 2);
  const pad = (i: number) => String(i).padStart(4, '0');
  for (let i = 0; i < n; i++) {
    const overlayIp = `100.80.${octets(i)}`;
    if (i < publicCount) {
      nodes.push({ name: `pub-${pad(i)}`, site: 'edge', address: `198.18.${octets(i)}`, overlayIp });
      continue;
    }
    const j = i - publicCount;
    const s = Math.floor(j / SITE_SIZE);
    const k = j % SITE_SIZE;
    const site = `nat${s}`;
    sites[site] ??= { lan: `192.168.${s}.0/24`, router: `192.168.${s}.1`, publicIp: `198.19.${Math.floor(s / 250)}.${(s % 250) + 2}` };
    nodes.push({ name: `${site}-${pad(j)}`, site, address: `192.168.${s}.${k + 10}`, overlayIp, forwardedPort: 51820 + k });
  }
  return {
    nodes,
    sites,
    yaml(ssh) {
      const lines = [
        'mesh:',
        '  interface: wg0',
        '  network: 100.80.0.0/16',
        '  listenPort: 51820',
        '  mtu: 1420',
        '  persistentKeepalive: 25',
        '  rpFilter: loose',
        'sites:',
      ];
      for (const [name, site] of Object.entries(sites)) {
        if ('public' in site) lines.push(`  ${name}: { public: true }`);
        else lines.push(`  ${name}: { lan: ${site.lan}, router: ${site.router}, nat: { publicIp: ${site.publicIp} } }`);
      }
      lines.push('nodes:');
      for (const node of nodes) {
        const s = ssh(node.name);
        lines.push(
          `  ${node.name}: { site: ${node.site}, address: ${node.address}, overlayIp: ${node.overlayIp}` +
            `${node.forwardedPort ? `, forwardedPort: ${node.forwardedPort}` : ''}` +
            `, ssh: { host: 127.0.0.1, port: ${s.port}, user: root, identityFile: ${JSON.stringify(s.identityFile)} } }`,
        );
      }
      return `${lines.join('\n')}\n`;
    },
  };
}
