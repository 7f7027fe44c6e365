/**
 * Q6/Q7 finding 5: a LAN prefix given to a peer of the file on the live interface only (`wg set wg0 peer K
 * allowed-ips 172.27.15.11/32,192.168.50.0/24` by hand, as an operator tries a route before writing it down) was
 * neither named nor refused by `import`: ../../src/import/losses.ts named live-only PEERS, not live-only AllowedIPs of
 * the file's peers. The first `up` then sets the peer's AllowedIPs from the inventory (`wg syncconf`; lab: `plan`
 * shows `ms-1  wg syncconf wg0 (live peers differ from wg0.conf: peer wk-1 AllowedIPs 172.27.15.11/32,
 * 192.168.50.0/24, wg0.conf 172.27.15.11/32 ...)`) and traffic to the LAN through the tunnel stops. On the captured
 * hand-built mesh (test/fixtures/facts/handbuilt-*.txt), with ms-1's live peer wk-1 given the prefix as `wg show
 * wg0 dump` prints it.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { inferInventory, type ImportedHost } from '../../src/import/infer.js';
import { allowedBlock } from '../../src/import/losses.js';
import { captured, NODES } from '../support/handbuilt-hosts.js';

const hosts = NODES.map(captured);
const wk1 = hosts[1]!.facts.interfacePublicKey!;

/** The mesh with ms-1's live AllowedIPs of wk-1 replaced by `allowed` (the file unchanged). */
const withLive = (allowed: string[]): ImportedHost[] =>
  hosts.map((h) =>
    h.target.name === 'ms-1'
      ? { ...h, facts: { ...h.facts, peers: h.facts.peers.map((p) => (p.publicKey === wk1 ? { ...p, allowedIps: allowed } : p)) } }
      : h,
  );

describe("import: a prefix on a file peer's live AllowedIPs only is named and refused (Q6/Q7)", () => {
  it('the captured mesh as it is: live and file agree, nothing named (not vacuous: the file peer is there)', () => {
    const ms1 = hosts[0]!;
    assert.deepEqual(ms1.facts.peers.find((p) => p.publicKey === wk1)?.allowedIps, ['172.27.15.11/32']);
    assert.deepEqual(inferInventory(hosts, 'wg0').problems, []);
  });
  it('a LAN beyond the overlay: refused, naming node, prefix, peer and what up does', () => {
    const r = inferInventory(withLive(['172.27.15.11/32', '192.168.50.0/24']), 'wg0');
    assert.equal(r.draft, undefined);
    assert.equal(r.problems.length, 1, r.problems.join('\n'));
    assert.match(
      r.problems[0]!,
      /^ms-1: live wg0: a prefix 192\.168\.50\.0\/24 \(beyond the overlay 172\.27\.15\.0\/24: a network behind that peer\) in AllowedIPs of peer wk-1 on the live interface only, in no line of the file .*up sets the peer's AllowedIPs from the inventory \(wg syncconf\), which removes it, and traffic to 192\.168\.50\.0\/24 through the tunnel stops.*pass --drop-unsupported/,
    );
  });
  it('--drop-unsupported takes it over, the prefix named in the notes as DROPPED', () => {
    const r = inferInventory(withLive(['172.27.15.11/32', '192.168.50.0/24']), 'wg0', { dropUnsupported: true });
    assert.deepEqual(r.problems, []);
    assert.ok(
      r.notes.some((n) => n.at === 'nodes.ms-1' && /^DROPPED \(--drop-unsupported\): live wg0: a prefix 192\.168\.50\.0\/24/.test(n.text)),
    );
  });
  it('an IPv6 prefix is a note (no IPv6 overlay), not a refusal', () => {
    const r = inferInventory(withLive(['172.27.15.11/32', 'fd27:15::11/128']), 'wg0');
    assert.deepEqual(r.problems, []);
    assert.ok(r.notes.some((n) => n.at === 'nodes.ms-1' && /not carried over: live wg0: a prefix fd27:15::11\/128 \(IPv6\)/.test(n.text)));
  });
  it('compared as the kernel holds them: a file entry with host bits or without a prefix is the same block', () => {
    assert.equal(allowedBlock('10.77.0.5/24'), '10.77.0.0/24');
    assert.equal(allowedBlock('10.0.0.1'), '10.0.0.1/32');
    assert.equal(allowedBlock('FD27:15:0::11/64'), 'fd27:15::/64');
    assert.equal(allowedBlock('10.0.0.1/33'), undefined);
    assert.equal(allowedBlock('nonsense'), undefined);
  });
});
