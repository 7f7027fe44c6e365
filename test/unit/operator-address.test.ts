/**
 * Issue 8, kind 5: meshctl must not cut the path it stands on. The node reports the operator's address as it sees it
 * ($SSH_CONNECTION, found through sudo's reset environment), and up's facts gate refuses a mesh whose overlay or a
 * peer's AllowedIPs would capture it, before anything is changed on any node.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { executor } from '../../src/engine/backend.js';
import { builtinPlaybookPath, loadPlaybook } from '../../src/engine/playbook.js';
import { checkNamed, judgeOperatorAddress, registryContract, stepNamed } from '../../src/engine/registry.js';
import { runPlaybook, type Registry } from '../../src/engine/runner.js';
import type { NodeStep, PhaseReport } from '../../src/engine/types.js';
import { FACTS, factsScript, parseSshConnection } from '../../src/facts/definitions.js';
import { parseFactsProbe, type NodeFacts } from '../../src/facts/node-facts.js';
import { loadInventory } from '../../src/inventory/load.js';
import { FakeConnection } from '../support/fake-connection.js';

const inventory = loadInventory('inventories/homelab.yaml');
const ms1 = inventory.nodes.find((n) => n.name === 'ms-1')!;
const ctx = { interface: 'wg0', listenPort: 51820 };
const bare = parseFactsProbe(readFileSync('test/fixtures/facts/bare-debian12.txt', 'utf8'), ctx);

describe('the operator-address fact', () => {
  it('parses SSH_CONNECTION into the operator’s and the node’s address', () => {
    assert.deepEqual(parseSshConnection('192.168.15.100 50222 192.168.15.2 22'), {
      address: '192.168.15.100',
      nodeAddress: '192.168.15.2',
    });
    assert.deepEqual(parseSshConnection('::ffff:198.18.0.10 40000 ::ffff:198.18.0.1 22'), {
      address: '198.18.0.10',
      nodeAddress: '198.18.0.1',
    });
    assert.deepEqual(parseSshConnection('2001:db8::5 40000 2001:db8::1 22'), { address: '2001:db8::5', nodeAddress: '2001:db8::1' });
    assert.equal(parseSshConnection(''), undefined);
    assert.equal(parseSshConnection(undefined), undefined);
    assert.equal(parseSshConnection('\u001b]0;x 1 2 3'), undefined);
  });

  const runProbe = (command: string, env: NodeJS.ProcessEnv) => {
    const script = factsScript([FACTS.operatorAddress], ctx);
    const out = spawnSync('bash', ['-c', command, 'probe', script], { env: { PATH: process.env.PATH, ...env }, encoding: 'utf8' });
    assert.equal(out.status, 0, out.stderr);
    return parseFactsProbe(out.stdout, ctx).operatorAddress;
  };

  it('the probe reads $SSH_CONNECTION of its own shell', () => {
    assert.deepEqual(runProbe('sh -c "$1"', { SSH_CONNECTION: '10.9.8.7 5555 10.9.8.1 22' }), {
      address: '10.9.8.7',
      nodeAddress: '10.9.8.1',
    });
  });

  it('the probe finds it in an ancestor when the environment was reset (as sudo does)', () => {
    assert.deepEqual(runProbe('env -i /bin/sh -c "$1"; true', { SSH_CONNECTION: '10.9.8.7 5555 10.9.8.1 22' }), {
      address: '10.9.8.7',
      nodeAddress: '10.9.8.1',
    });
  });

  it('is absent when no process of the login has it', () => {
    assert.equal(runProbe('env -i /bin/sh -c "$1"; true', {}), undefined);
  });
});

describe('the operator-not-captured check', () => {
  const seen = (address: string) => ({ address, nodeAddress: ms1.address });

  it('fails when the overlay network holds the operator’s address, naming it', () => {
    const result = judgeOperatorAddress(inventory, ms1, seen('172.27.15.200'));
    assert.equal(result.status, 'fail');
    assert.match(result.message, /operator's address 172\.27\.15\.200 is inside the overlay network 172\.27\.15\.0\/24/);
    assert.ok(result.evidence?.includes('mesh.network = 172.27.15.0/24'));
  });

  it('fails when a peer’s AllowedIPs hold it, naming the peer', () => {
    const result = judgeOperatorAddress(inventory, ms1, seen('172.27.15.31'));
    assert.equal(result.status, 'fail');
    assert.match(result.message, /is in the AllowedIPs 172\.27\.15\.31\/32 of peer ctb-edge-1/);
  });

  it('passes for an address outside the mesh, and for IPv6', () => {
    assert.equal(judgeOperatorAddress(inventory, ms1, seen('192.168.15.100')).status, 'pass');
    assert.equal(judgeOperatorAddress(inventory, ms1, seen('2001:db8::5')).status, 'pass');
  });

  it('warns when the node did not say', () => {
    assert.equal(judgeOperatorAddress(inventory, ms1, undefined).status, 'warn');
  });

  it('is in the facts phase of the built-in up playbook', () => {
    const playbook = loadPlaybook(builtinPlaybookPath('up'), registryContract);
    assert.ok(playbook.phases.find((p) => p.id === 'facts')!.checks.includes('operator-not-captured'));
  });
});

describe('up refuses at the facts gate, with nothing changed on any node', () => {
  it('the overlay captures the operator’s address seen by one node: STOP after facts, only the probe was sent', async () => {
    const names = inventory.nodes.map((n) => n.name);
    const facts = (node: string): NodeFacts => ({
      ...bare,
      hostname: node,
      operatorAddress: { address: node === 'ctb-edge-1' ? '172.27.15.99' : '192.168.15.100', nodeAddress: '192.0.2.1' },
    });
    const factsStep: NodeStep<never, 'facts'> = {
      scope: 'node',
      effect: 'read',
      needs: [],
      provides: ['facts'],
      plan: () => ({ action: { changes: [], script: 'facts-probe' } }),
      outputs: ({ node }) => ({ facts: facts(node.name) }),
    };
    const registry: Registry = { step: (name) => (name === 'gather-facts' ? (factsStep as NodeStep) : stepNamed(name)), check: checkNamed };
    const connections = new Map(names.map((n) => [n, new FakeConnection(n, [{ match: /^facts-probe$/, reply: {} }])]));
    const gates: PhaseReport[] = [];
    const run = await runPlaybook({
      inventory,
      playbook: loadPlaybook(builtinPlaybookPath('up'), registryContract),
      connections,
      backend: executor,
      signal: new AbortController().signal,
      registry,
      reconnect: async (node) => new FakeConnection(node.name, []),
      onEvent: () => undefined,
      gate: async (report) => {
        gates.push(report);
        return true;
      },
    });
    assert.equal(run.stoppedAt, 'facts');
    assert.deepEqual(
      gates.map((g) => [g.id, g.verdict]),
      [['facts', 'STOP']],
    );
    const edge = gates[0]!.nodes.find((n) => n.node === 'ctb-edge-1')!;
    const check = edge.checks.find((c) => c.id === 'operator-not-captured')!;
    assert.equal(check.status, 'fail');
    assert.match(check.message, /172\.27\.15\.99 is inside the overlay network 172\.27\.15\.0\/24/);
    for (const name of names) {
      assert.deepEqual(connections.get(name)!.scripts, ['facts-probe'], `${name}: nothing but the probe`);
      const mine = gates[0]!.nodes.find((n) => n.node === name)!.checks.find((c) => c.id === 'operator-not-captured')!;
      assert.equal(mine.status, name === 'ctb-edge-1' ? 'fail' : 'pass', name);
    }
  });
});
