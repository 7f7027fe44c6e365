/**
 * Many sites (issue 11): carrier NAT sites, the lab-only NAT mapping, the endpoint override, and each pair's
 * endpoint and keepalive on inventories/four-sites.yaml (forwards whose external port differs from the listen
 * port); the lab's plan for a carrier NAT site (two NATs deep) and for a port-preserving router.
 */
import { describe, it } from 'node:test';
import { readFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import assert from 'node:assert/strict';
import { checkInventoryText, loadInventory } from '../../src/inventory/load.js';
import { parseEndpointText } from '../../src/inventory/spec.js';
import type { Inventory } from '../../src/inventory/types.js';
import { endpointFor, firstContactPairs, formatEndpoint, keepaliveFor, pairCanConnect } from '../../src/topology/endpoints.js';
import { desiredNodeConfig } from '../../src/topology/desired.js';
import { infraNamespace, planLab } from '../../src/lab/plan.js';
import { iptablesNat, nftNat } from '../../src/lab/sys.js';
import { MeshctlError } from '../../src/errors.js';

const FOUR = 'inventories/four-sites.yaml';
const four = () => loadInventory(FOUR);
const byName = (inventory: Inventory, name: string) => inventory.nodes.find((n) => n.name === name)!;
const dial = (inventory: Inventory, from: string, to: string) => {
  const endpoint = endpointFor(inventory, byName(inventory, from), byName(inventory, to));
  return endpoint ? formatEndpoint(endpoint) : undefined;
};

describe('inventories/four-sites.yaml', () => {
  it('loads: a carrier NAT site, lab-only NAT mappings, 8 nodes in 4 sites', () => {
    const inventory = four();
    assert.equal(inventory.nodes.length, 8);
    const sites = Object.fromEntries(inventory.sites.map((s) => [s.name, s]));
    assert.deepEqual(sites.c, {
      name: 'c',
      kind: 'nat',
      lan: '192.168.30.0/24',
      router: '192.168.30.1',
      publicIp: '203.0.113.30',
      carrier: true,
    });
    assert.deepEqual(sites.a && 'lab' in sites.a ? sites.a.lab : undefined, { nat: 'port-preserving' });
    assert.deepEqual(sites.b && 'lab' in sites.b ? sites.b.lab : undefined, { nat: 'symmetric' });
  });

  it('dials a forward at publicIp:forwardedPort (not the listen port) and a sitemate at address:listenPort', () => {
    const inventory = four();
    assert.equal(dial(inventory, 'b-1', 'a-3'), '203.0.113.10:41003'); // a-3 listens on 51830
    assert.equal(dial(inventory, 'c-1', 'a-1'), '203.0.113.10:41001'); // through two NATs outwards
    assert.equal(dial(inventory, 'p-1', 'a-2'), '203.0.113.10:41002');
    assert.equal(dial(inventory, 'a-1', 'a-3'), '192.168.10.13:51830');
    // no way into b or c from outside their site
    for (const to of ['b-1', 'c-1']) for (const from of ['a-1', 'p-1']) assert.equal(dial(inventory, from, to), undefined);
    // keepalive from behind NAT (carrier too) towards other sites only
    assert.equal(keepaliveFor(inventory, byName(inventory, 'c-1'), byName(inventory, 'p-1')), 25);
    assert.equal(keepaliveFor(inventory, byName(inventory, 'b-1'), byName(inventory, 'b-2')), undefined);
    assert.equal(keepaliveFor(inventory, byName(inventory, 'p-1'), byName(inventory, 'a-1')), undefined);
  });

  it('the rendered configs carry the forwarded ports as endpoints', () => {
    const inventory = four();
    const keys = new Map(inventory.nodes.map((n) => [n.name, createHash('sha256').update(n.name).digest('base64')]));
    const b1 = desiredNodeConfig(inventory, 'b-1', keys);
    const a3 = b1.peers.find((p) => p.name === 'a-3')!;
    assert.equal(a3.endpoint, '203.0.113.10:41003');
    assert.equal(a3.persistentKeepalive, 25);
    assert.equal(desiredNodeConfig(inventory, 'a-3', keys).listenPort, 51830);
  });

  it('exactly the pairs of b and c have no direct path', () => {
    const inventory = four();
    const none: string[] = [];
    inventory.nodes.forEach((a, i) => {
      for (const b of inventory.nodes.slice(i + 1)) if (!pairCanConnect(inventory, a, b)) none.push(`${a.name}-${b.name}`);
    });
    assert.deepEqual(none, ['b-1-c-1', 'b-2-c-1']);
    assert.equal(firstContactPairs(inventory).length, 28 - 2);
  });
});

/** four-sites.yaml with lines replaced (old => new), checked as text. */
const variant = (...edits: [string, string][]) => {
  let text = loadText();
  for (const [from, to] of edits) {
    assert.ok(text.includes(from), from);
    text = text.replace(from, to);
  }
  return checkInventoryText(text, 'v.yaml');
};
const loadText = () => readFileSync(FOUR, 'utf8');

describe('endpoint override', () => {
  const overridden = () =>
    variant(['    overlayIp: 172.27.40.21\n', '    overlayIp: 172.27.40.21\n    endpoint: b1.dyn.example.net:40021\n']);

  it('wins over everything computed, for every peer (sitemates too), and makes the pair dialable', () => {
    const result = overridden();
    assert.ok(result.ok, JSON.stringify(result.problems));
    const inventory = result.inventory;
    assert.deepEqual(byName(inventory, 'b-1').endpoint, { host: 'b1.dyn.example.net', port: 40021 });
    for (const from of ['a-1', 'b-2', 'c-1', 'p-1']) assert.equal(dial(inventory, from, 'b-1'), 'b1.dyn.example.net:40021');
    assert.ok(pairCanConnect(inventory, byName(inventory, 'c-1'), byName(inventory, 'b-1')));
    assert.ok(!pairCanConnect(inventory, byName(inventory, 'c-1'), byName(inventory, 'b-2')));
    // b-1's own endpoints and keepalive are as before
    assert.equal(dial(inventory, 'b-1', 'a-1'), '203.0.113.10:41001');
    assert.equal(keepaliveFor(inventory, byName(inventory, 'b-1'), byName(inventory, 'p-1')), 25);
  });

  it('parses host:port as WireGuard takes it, and says what is wrong', () => {
    assert.deepEqual(parseEndpointText('home.example.net:51820'), { ok: true, host: 'home.example.net', port: 51820 });
    assert.deepEqual(parseEndpointText('home.example.net.:1'), { ok: true, host: 'home.example.net', port: 1 });
    assert.deepEqual(parseEndpointText('203.0.113.5:65535'), { ok: true, host: '203.0.113.5', port: 65535 });
    assert.deepEqual(parseEndpointText('[2001:db8::1]:51820'), { ok: true, host: '2001:db8::1', port: 51820 });
    const message = (text: string) => {
      const parsed = parseEndpointText(text);
      assert.equal(parsed.ok, false, text);
      return (parsed as { message: string }).message;
    };
    assert.match(message('home.example.net'), /has no port/);
    assert.match(message('home.example.net:0'), /out of range/);
    assert.match(message('home.example.net:65536'), /out of range/);
    assert.match(message('home.example.net:x1'), /not a port number/);
    assert.match(message(':51820'), /has no host/);
    assert.match(message('-home.example.net:1'), /not a DNS name/);
    assert.match(message('256.1.1.1:1'), /not an IPv4 address/);
    assert.match(message('2001:db8::1:51820'), /in brackets/);
    assert.match(message('[zz::1]:51820'), /not an IPv6 address/);
  });

  it('an endpoint spelled as IPv6 or as a numeric "name" meets the IPv4 rules it stands for (Q10 F4)', () => {
    const endpointProblems = (endpoint: string) => {
      const result = variant(['    overlayIp: 172.27.40.21\n', `    overlayIp: 172.27.40.21\n    endpoint: "${endpoint}"\n`]);
      return result.ok ? [] : result.problems.map((p) => `${p.path}: ${p.message}`);
    };
    const overlayIp = '172.27.40.21'; // b-1's own, inside the overlay
    assert.ok(endpointProblems(`[::ffff:${overlayIp}]:51820`).some((m) => /IPv4-mapped form of 172\.27\.40\.21/.test(m)));
    assert.ok(endpointProblems(`[::ffff:${overlayIp}]:51820`).some((m) => /172\.27\.40\.21 is inside the overlay network/.test(m)));
    assert.ok(endpointProblems('[::ffff:127.0.0.1]:51820').some((m) => /127\.0\.0\.1 is in 127\.0\.0\.0\/8/.test(m)));
    assert.match(endpointProblems('[::1]:51820').join('\n'), /loopback address/);
    assert.match(endpointProblems('[::]:51820').join('\n'), /unspecified address/);
    assert.match(endpointProblems('[ff02::1]:51820').join('\n'), /multicast address/);
    assert.match(endpointProblems('[fe80::1]:51820').join('\n'), /link-local address/);
    assert.match(endpointProblems('0xac1b2815:51820').join('\n'), /numeric form the resolver reads as an IPv4 address/);
    assert.match(endpointProblems('0xac.0x1b.0x28.0x15:51820').join('\n'), /numeric form/);
    // what stays valid: a global or unique local IPv6 address, a name with a hex-looking label among others
    for (const ok of ['[2001:db8::5]:51820', '[fd00::5]:51820', '0x1f.example.org:51820', 'dead-beef.example.org:51820'])
      assert.deepEqual(endpointProblems(ok), [], ok);
  });

  it('a bad endpoint is reported at its line:col', () => {
    const result = variant(['    overlayIp: 172.27.40.21\n', '    overlayIp: 172.27.40.21\n    endpoint: b1.dyn.example.net:99999\n']);
    assert.equal(result.ok, false);
    assert.deepEqual(
      result.problems.map((p) => `${p.line}:${p.col}: ${p.path}: ${p.message}`),
      ['59:15: nodes.b-1.endpoint: port 99999 in "b1.dyn.example.net:99999" is out of range (1-65535)'],
    );
  });
});

describe('carrier NAT and lab-only settings in validation', () => {
  it('refuses a forwardedPort on a carrier NAT site', () => {
    const result = variant(['    overlayIp: 172.27.40.31\n', '    overlayIp: 172.27.40.31\n    forwardedPort: 41031\n']);
    assert.equal(result.ok, false);
    assert.match(result.problems[0]!.message, /site c is behind carrier NAT .* remove forwardedPort/);
  });
});

describe('lab plan of four-sites', () => {
  it('puts a carrier router in front of site c: shared space inside, the public IP outside', () => {
    const plan = planLab(four(), 'st-unit');
    const router = plan.routers.find((r) => r.site === 'c')!;
    assert.deepEqual(router.carrier, { namespace: 'ml-st-unit.carrier.c', publicIp: '203.0.113.30', insideAddress: '100.64.0.2' });
    assert.equal(router.publicIp, '100.64.0.2');
    const routerNs = plan.namespaces.find((n) => n.name === router.namespace)!;
    const carrierNs = plan.namespaces.find((n) => n.name === router.carrier!.namespace)!;
    assert.deepEqual(routerNs.routes, [{ to: 'default', via: '100.64.0.1', dev: 'wan' }]);
    assert.deepEqual(
      routerNs.interfaces.find((i) => i.name === 'wan'),
      { name: 'wan', addresses: ['100.64.0.2/24'] },
    );
    assert.deepEqual(
      carrierNs.interfaces.map((i) => [i.name, i.addresses]),
      [
        ['cust', ['100.64.0.1/24']],
        ['wan', ['203.0.113.30/32']],
      ],
    );
    assert.deepEqual(carrierNs.nat!.masquerade, { source: '100.64.0.0/24', outInterface: 'wan' });
    assert.ok(
      plan.links.some((l) => l.a.ns === carrierNs.name && l.a.ifname === 'cust' && l.b.ns === routerNs.name && l.b.ifname === 'wan'),
    );
    // the internet reaches the carrier's public IP, never the site router directly
    const internet = plan.namespaces.find((n) => n.role === 'internet')!;
    assert.ok(internet.routes.some((r) => r.to === '203.0.113.30/32'));
    assert.ok(!internet.routes.some((r) => r.to.startsWith('100.64.')));
    assert.equal(infraNamespace(plan, 'carrier:c'), carrierNs.name);
    assert.equal(infraNamespace(plan, 'carrier:a'), undefined);
  });

  it('a port-preserving router masquerades without random ports; a symmetric one with them', () => {
    const plan = planLab(four(), 'st-unit');
    const nat = (site: string) => plan.namespaces.find((n) => n.name === `ml-st-unit.router.${site}`)!.nat!;
    assert.equal(nat('a').mapping, 'port-preserving');
    assert.ok(!iptablesNat(nat('a')).some((rule) => rule.includes('--random-fully')));
    assert.doesNotMatch(nftNat(nat('a')), /fully-random/);
    assert.ok(iptablesNat(nat('b')).at(-1)!.includes('--random-fully'));
    assert.match(nftNat(nat('b')), /masquerade fully-random/);
    // forwards keep their external ports and point at the listen port
    assert.deepEqual(
      nat('a').forwards.map((f) => `${f.port}->${f.toAddress}:${f.toPort}`),
      ['41001->192.168.10.11:51820', '41002->192.168.10.12:51820', '41003->192.168.10.13:51830'],
    );
  });

  it('refuses a port-preserving router whose forward sits on a node listen port (the forward would be hijacked)', () => {
    const homelab = loadInventory('inventories/homelab.yaml');
    const site = homelab.sites.find((s) => s.name === 'home')!;
    if (site.kind === 'nat') site.lab = { nat: 'port-preserving' };
    assert.throws(
      () => planLab(homelab, 'st-unit'),
      (error: unknown) =>
        error instanceof MeshctlError &&
        /port-preserving would map ms-1's outgoing UDP 51820 onto the forward of port 51820 to wk-1/.test(error.message),
    );
  });
});
