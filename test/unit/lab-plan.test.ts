/** The lab's pure planning: inventory -> namespaces, links, addresses, routes, NAT (no I/O, no root). */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { loadInventory } from '../../src/inventory/load.js';
import type { Inventory, Node } from '../../src/inventory/types.js';
import { MeshctlError } from '../../src/errors.js';
import { INTERNET_GATEWAY, LAB_SUDO_USER, infraNamespace, planLab, validateLabName, type LabPlan } from '../../src/lab/plan.js';
import { ipBatchFor, iptablesNat, nftNat, nsSysctls } from '../../src/lab/sys.js';

const node = (name: string, site: string, address: string, overlayIp: string, extra: Partial<Node> = {}): Node => ({
  name,
  site,
  address,
  overlayIp,
  listenPort: 51820,
  ssh: { host: address, port: 22, user: 'root', become: 'none' },
  ...extra,
});

const mesh: Inventory['mesh'] = {
  interface: 'wg0',
  network: '172.27.15.0/24',
  listenPort: 51820,
  mtu: 1420,
  persistentKeepalive: 25,
  rpFilter: 2,
  reservedCidrs: [],
};

/** Two NAT sites with two nodes each, plus two public nodes. */
const twoSites = (): Inventory => ({
  source: 'two-sites.yaml',
  mesh,
  sites: [
    { name: 'office', kind: 'nat', lan: '10.20.0.0/24', router: '10.20.0.1', publicIp: '203.0.113.20' },
    { name: 'home', kind: 'nat', lan: '192.168.15.0/24', router: '192.168.15.1', publicIp: '203.0.113.10' },
    { name: 'cloud', kind: 'public' },
  ],
  nodes: [
    node('of-1', 'office', '10.20.0.5', '172.27.15.1', { forwardedPort: 51820 }),
    node('of-2', 'office', '10.20.0.6', '172.27.15.2', { ssh: { host: '10.20.0.6', port: 2222, user: 'ops', become: 'sudo' } }),
    node('hm-1', 'home', '192.168.15.2', '172.27.15.3', { forwardedPort: 51821 }),
    node('hm-2', 'home', '192.168.15.254', '172.27.15.4', { forwardedPort: 51822, listenPort: 51900 }),
    node('pub-a-very-long-node-name', 'cloud', '198.51.100.25', '172.27.15.5'),
    node('pub-b', 'cloud', '198.51.100.26', '172.27.15.6'),
  ],
});

function planInvariants(plan: LabPlan): void {
  const names = new Set(plan.namespaces.map((n) => n.name));
  assert.equal(names.size, plan.namespaces.length, 'namespace names are unique');
  for (const ns of plan.namespaces) {
    assert.ok(ns.name.startsWith(plan.prefix), `${ns.name} carries the lab prefix`);
    const ifnames = ns.interfaces.map((i) => i.name);
    assert.equal(new Set(ifnames).size, ifnames.length, `interface names unique in ${ns.name}`);
    for (const itf of ifnames) assert.ok(itf.length <= 15 && /^[a-z0-9-]+$/.test(itf), `interface name ${itf} fits in 15 characters`);
    for (const route of ns.routes) assert.ok(ifnames.includes(route.dev), `route in ${ns.name} uses an interface of its own`);
    for (const itf of ns.interfaces) if (itf.master) assert.ok(ifnames.includes(itf.master));
  }
  for (const link of plan.links) {
    assert.ok(names.has(link.a.ns) && names.has(link.b.ns), 'both ends of every link are lab namespaces');
    assert.notEqual(link.a.ns, link.b.ns);
    for (const end of [link.a, link.b]) {
      assert.ok(
        plan.namespaces.find((n) => n.name === end.ns)!.interfaces.some((i) => i.name === end.ifname),
        `${end.ns}/${end.ifname} is planned`,
      );
    }
  }
  const internet = plan.namespaces.find((n) => n.role === 'internet')!;
  assert.ok(!internet.routes.some((r) => r.to === 'default'), 'the internet namespace has no way out');
  assert.equal(plan.namespaces.find((n) => n.role === 'operator')!.forwarding, false);
  for (const ns of plan.namespaces.filter((n) => n.role === 'node')) assert.equal(ns.forwarding, false);
}

describe('lab plan: homelab.yaml', () => {
  const plan = planLab(loadInventory('inventories/homelab.yaml'), 'lab');

  it('has the internet, the operator, one router and four nodes, all named ml-lab.*', () => {
    assert.deepEqual(
      plan.namespaces.map((n) => n.name).sort(),
      [
        'ml-lab.internet',
        'ml-lab.node.ctb-edge-1',
        'ml-lab.node.ms-1',
        'ml-lab.node.wk-1',
        'ml-lab.node.wk-2',
        'ml-lab.operator',
        'ml-lab.router.home',
      ].sort(),
    );
    planInvariants(plan);
  });

  it('gives the router the LAN address, the public IP and exactly the declared forwards', () => {
    const router = plan.namespaces.find((n) => n.name === 'ml-lab.router.home')!;
    assert.deepEqual(router.interfaces.find((i) => i.name === 'br0')!.addresses, ['192.168.15.1/24']);
    assert.deepEqual(router.interfaces.find((i) => i.name === 'wan')!.addresses, ['203.0.113.10/32']);
    assert.deepEqual(router.routes, [{ to: 'default', via: INTERNET_GATEWAY, dev: 'wan', onlink: true }]);
    assert.equal(router.forwarding, true);
    assert.deepEqual(router.nat!.masquerade, { source: '192.168.15.0/24', outInterface: 'wan' });
    const forwards = router.nat!.forwards.map((f) => `${f.publicIp}:${f.port}->${f.toAddress}:${f.toPort}`).sort();
    assert.deepEqual(forwards, [
      '203.0.113.10:51820->192.168.15.3:51820',
      '203.0.113.10:51821->192.168.15.2:51820',
      '203.0.113.10:51822->192.168.15.4:51820',
    ]);
  });

  it('puts home nodes on the bridge and the edge on the internet', () => {
    const ms1 = plan.namespaces.find((n) => n.node === 'ms-1')!;
    assert.deepEqual(ms1.interfaces, [{ name: 'eth0', addresses: ['192.168.15.2/24'] }]);
    assert.deepEqual(ms1.routes, [{ to: 'default', via: '192.168.15.1', dev: 'eth0' }]);
    const edge = plan.namespaces.find((n) => n.node === 'ctb-edge-1')!;
    assert.deepEqual(edge.interfaces, [{ name: 'eth0', addresses: ['198.51.100.25/32'] }]);
    assert.deepEqual(edge.routes, [{ to: 'default', via: INTERNET_GATEWAY, dev: 'eth0', onlink: true }]);
    const internet = plan.namespaces.find((n) => n.role === 'internet')!;
    assert.ok(internet.routes.some((r) => r.to === '198.51.100.25/32'));
    assert.ok(internet.routes.some((r) => r.to === '203.0.113.10/32'));
  });

  it('lets the operator reach every node at its SSH address without forwarding', () => {
    assert.deepEqual(plan.operator.lanAddresses, { home: '192.168.15.254' });
    assert.equal(plan.operator.internetAddress, '198.18.0.1');
    const op = plan.namespaces.find((n) => n.role === 'operator')!;
    assert.deepEqual(op.interfaces.flatMap((i) => i.addresses).sort(), ['192.168.15.254/24', '198.18.0.1/32']);
  });

  it('creates the sudo users the inventory names, plus the standard one', () => {
    const users = Object.fromEntries(plan.nodes.map((n) => [n.name, n.sudoUsers]));
    assert.deepEqual(users['ms-1'], [LAB_SUDO_USER]);
    assert.deepEqual(users['wk-1'], [LAB_SUDO_USER, 'admin']);
  });

  it('renders ip batches, sysctls and NAT rules', () => {
    const router = plan.namespaces.find((n) => n.role === 'router')!;
    assert.deepEqual(ipBatchFor(router, 'create'), ['link set lo up', 'link add br0 type bridge']);
    const configure = ipBatchFor(router, 'configure');
    assert.ok(configure.includes('address add 203.0.113.10/32 dev wan'));
    assert.ok(configure.includes('route add default via 169.254.0.1 dev wan onlink'));
    assert.ok(configure.includes('link set op master br0'));
    assert.deepEqual(nsSysctls(router), ['net.ipv4.ip_forward=1', 'net.ipv4.conf.all.rp_filter=0', 'net.ipv4.conf.default.rp_filter=0']);
    assert.deepEqual(nsSysctls(plan.namespaces.find((n) => n.role === 'node')!), ['net.ipv4.ip_forward=0']);
    const rules = iptablesNat(router.nat!).map((r) => r.join(' '));
    assert.equal(rules.filter((r) => r.includes('DNAT')).length, 3);
    assert.ok(
      rules.includes(
        'iptables -w -t nat -A PREROUTING -i wan -d 203.0.113.10 -p udp --dport 51821 -j DNAT --to-destination 192.168.15.2:51820',
      ),
    );
    assert.ok(rules.includes('iptables -w -t nat -A POSTROUTING -s 192.168.15.0/24 -o wan -j MASQUERADE --random-fully'));
    assert.match(nftNat(router.nat!), /oifname "wan" masquerade fully-random/);
    assert.match(nftNat(router.nat!), /iifname "wan" ip daddr 203\.0\.113\.10 udp dport 51822 dnat to 192\.168\.15\.4:51820/);
  });

  it('resolves exec targets for routers, internet and operator', () => {
    assert.equal(infraNamespace(plan, 'router:home'), 'ml-lab.router.home');
    assert.equal(infraNamespace(plan, 'internet'), 'ml-lab.internet');
    assert.equal(infraNamespace(plan, 'operator'), 'ml-lab.operator');
    assert.equal(infraNamespace(plan, 'router:nope'), undefined);
  });
});

describe('lab plan: two NAT sites and two public nodes', () => {
  const plan = planLab(twoSites(), 'x2');

  it('keeps its invariants', () => planInvariants(plan));

  it('makes one router per site with its own forwards, using listen ports', () => {
    assert.deepEqual(
      plan.routers.map((r) => [r.site, r.publicIp, r.address]),
      [
        ['office', '203.0.113.20', '10.20.0.1'],
        ['home', '203.0.113.10', '192.168.15.1'],
      ],
    );
    assert.deepEqual(
      plan.routers[0]!.forwards.map((f) => `${f.port}->${f.toAddress}:${f.toPort}`),
      ['51820->10.20.0.5:51820'],
    );
    assert.deepEqual(
      plan.routers[1]!.forwards.map((f) => `${f.port}->${f.toAddress}:${f.toPort}`),
      ['51821->192.168.15.2:51820', '51822->192.168.15.254:51900'],
    );
  });

  it('gives the operator the highest free address of each LAN', () => {
    // 192.168.15.254 is taken by hm-2, so the operator takes .253
    assert.deepEqual(plan.operator.lanAddresses, { office: '10.20.0.254', home: '192.168.15.253' });
  });

  it('keeps long names within 15 characters and unique', () => {
    const internet = plan.namespaces.find((n) => n.role === 'internet')!;
    assert.ok(internet.interfaces.some((i) => i.name === 'n4-pub-a-very-l'));
    assert.equal(plan.nodes.find((n) => n.name === 'of-2')!.sshPort, 2222);
    assert.deepEqual(plan.nodes.find((n) => n.name === 'of-2')!.sudoUsers, [LAB_SUDO_USER, 'ops']);
  });

  it('gives a lan site (no way in) a masquerading router without forwards and a lab public address', () => {
    const inventory = twoSites();
    inventory.sites.push({ name: 'branch', kind: 'lan', lan: '10.30.0.0/24' });
    inventory.nodes.push(node('br-1', 'branch', '10.30.0.1', '172.27.15.7'));
    const withLan = planLab(inventory, 'x3');
    planInvariants(withLan);
    const router = withLan.routers.find((r) => r.site === 'branch')!;
    assert.equal(router.address, '10.30.0.2'); // .1 is the node's
    assert.deepEqual(router.forwards, []);
    assert.match(router.publicIp, /^198\.1[89]\./);
    assert.notEqual(router.publicIp, withLan.operator.internetAddress);
  });
});

describe('lab plan: what the lab cannot replicate (exit 2, one line)', () => {
  const rejects = (inventory: Inventory, pattern: RegExp) => {
    assert.throws(
      () => planLab(inventory, 'bad'),
      (error: unknown) =>
        error instanceof MeshctlError && error.exitCode === 2 && !error.message.includes('\n') && pattern.test(error.message),
    );
  };

  it('rejects overlapping LANs (the operator joins every LAN)', () => {
    const inventory = twoSites();
    inventory.sites[0] = { name: 'office', kind: 'nat', lan: '192.168.0.0/16', router: '192.168.0.1', publicIp: '203.0.113.20' };
    rejects(inventory, /sites home and office have overlapping LANs|sites office and home have overlapping LANs/);
  });

  it('rejects an SSH host that is not the node address', () => {
    const inventory = twoSites();
    inventory.nodes[0]!.ssh.host = 'of-1.example';
    rejects(inventory, /node of-1: ssh\.host of-1\.example must be the node's address/);
  });

  it('rejects a shared public address and a node outside its LAN', () => {
    const inventory = twoSites();
    inventory.nodes[5] = node('pub-b', 'cloud', '203.0.113.10', '172.27.15.6');
    inventory.nodes[0] = node('of-1', 'office', '10.99.0.5', '172.27.15.1');
    rejects(inventory, /share the public address 203\.0\.113\.10.*|not a host address in 10\.20\.0\.0\/24/);
  });

  it('validates lab names', () => {
    for (const bad of ['', 'Lab', 'a.b', 'x'.repeat(17), '-a', 'a b']) assert.throws(() => validateLabName(bad), MeshctlError);
    for (const good of ['lab', 'a', 't-1', 'x'.repeat(16)]) validateLabName(good);
  });
});
