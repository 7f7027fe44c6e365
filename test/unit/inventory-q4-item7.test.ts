/**
 * Q4 item 7b: `relay: p-1` on a node while p-1 is `relay: never` (it relays nobody's pairs) was valid, and the pair
 * went through another relay without a word: now a problem at the naming field that names the other, with its line.
 *
 * Q4 item 7a: two sites behind the same carrier-grade NAT share the carrier's public address (RFC 6598 shared
 * address space: the carrier's other customers are behind the same one), yet `validate` refused the second ("already
 * the public IP of site b"). Sites that are all `nat.carrier: true` may now share it; a site with its own router on
 * that address (not carrier) still may not, and is told why. The mesh plans as before: the two sites' nodes dial out
 * only, and a pair between them goes through a relay.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { MeshctlError } from '../../src/errors.js';
import { loadInventory } from '../../src/inventory/load.js';
import { pathKind, planPaths } from '../../src/topology/paths.js';

const inventory = (cSite: string) => `mesh:
  network: 172.27.40.0/24
sites:
  b:
    lan: 192.168.20.0/24
    router: 192.168.20.1
    nat: { publicIp: 203.0.113.30, carrier: true }
  c:
    lan: 192.168.30.0/24
    router: 192.168.30.1
    nat: ${cSite}
  pub: { public: true }
nodes:
  b-1: { site: b, address: 192.168.20.11, overlayIp: 172.27.40.21 }
  c-1: { site: c, address: 192.168.30.11, overlayIp: 172.27.40.31 }
  p-1: { site: pub, address: 198.51.100.11, overlayIp: 172.27.40.41 }
`;

const problems = (text: string): string[] => {
  try {
    loadInventory('shared.yaml', { text });
  } catch (error) {
    assert.ok(error instanceof MeshctlError);
    return error.details ?? [];
  }
  return [];
};

describe('a carrier-grade NAT address shared by sites (Q4 item 7a)', () => {
  it('two carrier NAT sites on the same carrier address: valid, and their pair is relayed', () => {
    const loaded = loadInventory('shared.yaml', { text: inventory('{ publicIp: 203.0.113.30, carrier: true }') });
    const paths = planPaths(loaded);
    assert.equal(pathKind(paths, 'b-1', 'c-1'), 'relayed');
    assert.equal(pathKind(paths, 'b-1', 'p-1'), 'direct');
  });
  it('a site with its own public address there (not carrier) is refused, and told who may share', () => {
    assert.deepEqual(problems(inventory('{ publicIp: 203.0.113.30 }')), [
      'shared.yaml:11:22: sites.c.nat.publicIp: 203.0.113.30 is already the public IP of site b (only sites that are all behind the same carrier NAT, nat.carrier: true on each, share one)',
    ]);
  });
  it('two ordinary NAT sites on one address: refused as before', () => {
    const text = inventory('{ publicIp: 203.0.113.30 }').replace('{ publicIp: 203.0.113.30, carrier: true }', '{ publicIp: 203.0.113.30 }');
    assert.deepEqual(problems(text), ['shared.yaml:11:22: sites.c.nat.publicIp: 203.0.113.30 is already the public IP of site b']);
  });
});

describe('a named relay that is relay: never (Q4 item 7b)', () => {
  const four = readFileSync('inventories/four-sites.yaml', 'utf8');
  const withRelays = (p1: string, c1: string) =>
    four
      .replace(/(\n {2}p-1:\n(?: {4}.*\n)*?)( {4}address: )/, `$1    relay: ${p1}\n$2`)
      .replace(/(\n {2}c-1:\n(?: {4}.*\n)*?)( {4}address: )/, `$1    relay: ${c1}\n$2`);
  it('refused at the node that names it, naming the never and its line', () => {
    const text = withRelays('never', 'p-1');
    const p1Line = text.split('\n').indexOf('    relay: never') + 1;
    const c1Line = text.split('\n').indexOf('    relay: p-1') + 1;
    assert.ok(p1Line > 0 && c1Line > 0);
    assert.deepEqual(problems(text), [
      `shared.yaml:${c1Line}:12: nodes.c-1.relay: relay p-1 relays no pairs: nodes.p-1.relay is never (line ${p1Line}); name another public node or auto here, or let p-1 relay`,
    ]);
  });
  it('a relay that relays (auto) is named as before', () => {
    assert.deepEqual(problems(withRelays('auto', 'p-1')), []);
  });
});
