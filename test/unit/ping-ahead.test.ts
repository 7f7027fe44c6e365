/**
 * The ping round ahead (src/engine/ping-ahead.ts, issue 10): a run that changes nothing pings in the facts probe's
 * round trip and its ping phase sends no command, with the same checks judged on that round; any change, a pair that
 * did not answer, a missing round or a check that would not pass makes the ping phase ping again as before. The
 * ping phase is the registry's real step (src/engine/ping.ts) over scripted fake connections.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { loadInventory } from '../../src/inventory/load.js';
import { checkNamed, stepNamed } from '../../src/engine/registry.js';
import {
  aheadAfterSections,
  factsBesidePingAhead,
  PING_AHEAD_MARK,
  phasePingScript,
  pingAheadScript,
  splitAhead,
  withPingAhead,
} from '../../src/engine/ping-ahead.js';
import type { MeshStep, MeshStepInput, NodeStep } from '../../src/engine/types.js';
import type { Connection } from '../../src/transport/types.js';
import { FakeConnection } from '../support/fake-connection.js';

const inventory = loadInventory('inventories/homelab.yaml');
const NOW = 1796000000;
const keyOf = (name: string) =>
  `${name
    .replace(/[^a-z0-9]/g, '')
    .padEnd(42, 'A')
    .slice(0, 42)}A=`;

/** What a healthy node prints for a ping round (the per-peer branch's sections), `failing` peers unanswered. */
function pingOutput(node: string, failing: string[] = [], handshake = NOW - 5): string {
  const peers = inventory.nodes.filter((n) => n.name !== node);
  const pings = peers.map((p) =>
    failing.includes(p.name)
      ? `@@meshctl begin ping:${p.overlayIp}\n--- ${p.overlayIp} ping statistics ---\n1 packets transmitted, 0 received, 100% packet loss, time 0ms\n\n@@meshctl end ping:${p.overlayIp} rc=1`
      : `@@meshctl begin ping:${p.overlayIp}\n--- ${p.overlayIp} ping statistics ---\n1 packets transmitted, 1 received, 0% packet loss, time 0ms\nrtt min/avg/max/mdev = 0.100/0.100/0.100/0.000 ms\n\n@@meshctl end ping:${p.overlayIp} rc=0`,
  );
  const routes = peers.map((p) => `${p.overlayIp} scope link`).join('\n');
  const dump = peers.map((p) => [keyOf(p.name), '(none)', '(none)', `${p.overlayIp}/32`, handshake, 100, 100, 'off'].join('\t')).join('\n');
  return [
    ...pings,
    `@@meshctl begin routes\n${routes}\n@@meshctl end routes rc=0`,
    `@@meshctl begin dump\n${dump}\n@@meshctl end dump rc=0`,
    `@@meshctl begin now\n${NOW}\n@@meshctl end now rc=0`,
    '@@meshctl begin done\n\n@@meshctl end done rc=0',
    '',
  ].join('\n');
}

/** The ping phase's input: every node with its connection and a desired config whose peers are the others. */
function phaseInput(connections: Map<string, Connection>, changedSoFar = false): MeshStepInput<'desired'> {
  return {
    inventory,
    changedSoFar,
    signal: new AbortController().signal,
    nodes: inventory.nodes.map((node) => ({
      node,
      connection: connections.get(node.name)!,
      values: {
        desired: {
          peers: inventory.nodes
            .filter((n) => n.name !== node.name)
            .map((n) => ({ name: n.name, publicKey: keyOf(n.name), allowedIps: [`${n.overlayIp}/32`] })),
        } as unknown as MeshStepInput<'desired'>['nodes'][number]['values']['desired'],
      },
    })),
  };
}

/** Runs the facts step's plan and outputs (with a fake facts step that reads nothing) and then the ping phase. */
async function scenario(options: { ahead?: (node: string) => string | undefined; changedSoFar?: boolean; phaseFailing?: string[] } = {}) {
  const base = {
    check: checkNamed,
    step: (name: string) =>
      name === 'gather-facts'
        ? ({
            scope: 'node',
            effect: 'read',
            needs: [],
            provides: ['facts'],
            plan: () => ({ action: { changes: [], script: '@@facts' } }),
            outputs: (_input: unknown, _action: unknown, result: { ran: boolean; stdout?: string } | undefined) => ({
              facts: { stdout: result?.ran ? result.stdout : '' },
            }),
          } as unknown as NodeStep)
        : stepNamed(name),
  };
  const registry = withPingAhead(base);
  const facts = registry.step('gather-facts') as NodeStep;
  const ping = registry.step('ping-matrix') as MeshStep;
  const factsRead = new Map<string, unknown>();
  for (const node of inventory.nodes) {
    const input = { node, inventory, values: {}, mesh: new Map(), changedSoFar: false } as unknown as Parameters<NodeStep['plan']>[0];
    const planned = facts.plan(input);
    // the facts with the round beside them (test/unit/ping-ahead-processes.test.ts runs it)
    assert.equal(planned.action!.script, factsBesidePingAhead('@@facts', inventory, node.name));
    assert.ok(planned.action!.script.includes(PING_AHEAD_MARK));
    const round = options.ahead ? options.ahead(node.name) : pingOutput(node.name);
    const stdout = `FACTS ${node.name}\n${round === undefined ? '' : `${PING_AHEAD_MARK}\n${round}`}`;
    factsRead.set(node.name, facts.outputs(input, planned.action, { ran: true, stdout }));
  }
  const connections = new Map(
    inventory.nodes.map((n) => [
      n.name,
      new FakeConnection(n.name, [{ match: /@@meshctl begin done|ping/, reply: { stdout: pingOutput(n.name, options.phaseFailing) } }]),
    ]),
  );
  const output = await ping.run(
    phaseInput(connections as Map<string, Connection>, options.changedSoFar) as unknown as Parameters<MeshStep['run']>[0],
  );
  return { output, connections, used: registry.used(), factsRead };
}

describe('up: the ping round ahead in the facts probe (issue 10)', () => {
  it('a run that changed nothing: the ping phase sends no command and passes on the round read ahead', async () => {
    const { output, connections, used, factsRead } = await scenario();
    assert.equal(used, true);
    for (const [name, c] of connections) assert.deepEqual(c.scripts, [], `${name}: no ping round of its own`);
    assert.equal(output.errors.size, 0);
    assert.ok(output.matrix && Object.values(output.matrix.cells).every((row) => Object.values(row).every((cell) => cell.ok)));
    // the facts parser gets the facts' part alone
    for (const node of inventory.nodes) assert.deepEqual(factsRead.get(node.name), { facts: { stdout: `FACTS ${node.name}\n` } });
  });

  it('something changed in the run: the ping phase pings as before', async () => {
    const { connections, used } = await scenario({ changedSoFar: true });
    assert.equal(used, false);
    for (const [name, c] of connections) assert.ok(c.scripts.length >= 1, `${name}: pinged again`);
  });

  it('a pair that did not answer ahead: the whole ping phase pings again, and its gate judges only the new round', async () => {
    const [a, b] = inventory.nodes.map((n) => n.name);
    const { output, connections, used } = await scenario({ ahead: (node) => pingOutput(node, node === a ? [b!] : []) });
    assert.equal(used, false);
    for (const [name, c] of connections) assert.deepEqual(c.scripts, [phasePingScript(inventory, name)], `${name}: one new round`);
    assert.ok(output.matrix!.cells[a!]![b!]!.ok, 'the new round decides');
  });

  it('a node that pinged nothing ahead (its interface lacks a peer), or an old handshake: pinged again', async () => {
    const [a] = inventory.nodes.map((n) => n.name);
    assert.equal((await scenario({ ahead: (node) => (node === a ? '' : pingOutput(node)) })).used, false);
    assert.equal((await scenario({ ahead: (node) => (node === a ? undefined : pingOutput(node)) })).used, false);
    assert.equal((await scenario({ ahead: (node) => pingOutput(node, [], node === a ? NOW - 600 : NOW - 5) })).used, false);
  });

  it('the round ahead is the ping phase script with a short deadline, behind a guard that needs every peer routed', () => {
    const node = inventory.nodes[0]!.name;
    const ahead = pingAheadScript(inventory, node);
    const phase = phasePingScript(inventory, node);
    // the same pings but for ping's deadline (-w 7 in the phase, -w 2 ahead; fping's -t likewise); after them the
    // same sections, read with two processes fewer (aheadAfterSections: test/unit/ping-ahead-processes.test.ts)
    const pings = (script: string) => script.slice(script.indexOf('export LC_ALL'), script.indexOf("echo '@@meshctl begin routes'"));
    assert.equal(pings(ahead).replaceAll('-w 2', '-w 7').replaceAll('-t 2000', '-t 7000'), pings(phase));
    const sections = (script: string) => [...script.matchAll(/^echo '@@meshctl begin (\S+)'$/gm)].map((m) => m[1]).slice(-4);
    assert.deepEqual(sections(ahead), ['routes', 'dump', 'now', 'done']);
    assert.deepEqual(sections(phase), ['routes', 'dump', 'now', 'done']);
    for (const after of aheadAfterSections(inventory.mesh.interface)) assert.ok(ahead.includes(after.command), after.name);
    for (const peer of inventory.nodes.filter((n) => n.name !== node)) assert.ok(ahead.includes(peer.overlayIp));
    assert.match(ahead, /wg show all dump/);
  });

  it('splitAhead cuts at the mark', () => {
    assert.deepEqual(splitAhead(`a\nb\n${PING_AHEAD_MARK}\nc\n`), { facts: 'a\nb\n', ahead: 'c\n' });
    assert.deepEqual(splitAhead('a\nb\n'), { facts: 'a\nb\n' });
  });
});
