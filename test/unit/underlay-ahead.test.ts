/**
 * Issue 10: the baseline's underlay probes start during the facts step (src/engine/underlay-ahead.ts), through
 * `runUp` over scripted fake connections: each node answers its facts probe (the run lock first where the probe
 * carries it) and the probes' commands as a scripted underlay does (test/support/fake-forward-probe.ts). Shown by
 * the order of events and by counting commands, never by time (a 5 s wait only keeps the old code from hanging).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { runUp, type Connector, type UpReport } from '../../src/engine/up.js';
import { loadInventory } from '../../src/inventory/load.js';
import type { Node } from '../../src/inventory/types.js';
import type { Connection, ExecResult, RunOptions } from '../../src/transport/types.js';
import { FakeConnection } from '../support/fake-connection.js';
import { landsRight, underlayNetwork, type Landing, type NetworkPace } from '../support/fake-forward-probe.js';

const inventory = loadInventory('inventories/homelab.yaml');
const playbookPath = 'test/fixtures/up/facts-baseline.yaml';
const bareFacts = readFileSync('test/fixtures/facts/bare-debian12.txt', 'utf8');
/** a node that runs the mesh already (its live interface is in the facts) */
const upFacts = readFileSync('test/fixtures/facts/live-converged-ms-1.txt', 'utf8');
/**
 * upFacts as `node` holds them: ms-1's file, with the endpoints the edge dials the home nodes at from outside their
 * site (a converged mesh's nodes dial what the inventory designs: src/engine/underlay-change.ts)
 */
const upFactsOf = (node: string) =>
  node === 'ctb-edge-1'
    ? upFacts
        .replace('Endpoint = 192.168.15.3:51820', 'Endpoint = 203.0.113.10:51820')
        .replace('Endpoint = 192.168.15.4:51820', 'Endpoint = 203.0.113.10:51822')
    : upFacts;
/** facts of a node where commands do not run as root: the facts gate STOPs */
const notRootFacts = bareFacts.replace('@@meshctl begin uid\n0\n', '@@meshctl begin uid\n1000\n');
const lockAnswer = '@@meshctl begin lock\nacquired\n@@meshctl end lock rc=0\n';
/** the node whose facts come last (not the first by name: its lock is taken alone, before the others' facts) */
const SLOW = 'wk-2';

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
const isProbe = (script: string) => script.includes('meshctl-forward-probe');
const isWatcher = (script: string) => script.includes('print "watching');

interface World {
  log: string[];
  /** commands started and not yet settled, over all nodes */
  running: () => number;
  /** probe scripts that reached each node (a sender's waits until the watchers listen: RunOptions.sendWhen) */
  probes: Map<string, string[]>;
  /** every command each node was sent */
  commands: Map<string, number>;
  /** resolves when the first watcher was started on any node */
  firstWatch: Promise<void>;
  connector: Connector;
}

/**
 * One fake connection per node: its facts probe answered with `facts(node)` (SLOW's only once `slowUntil` resolves,
 * or after 5 s), the lock's release answered, and every probe command handed to the scripted underlay.
 */
/**
 * `streamed`: every node streams its facts up to the end of their `interfaces` section at once (as sshd does), and
 * the rest only once `slowUntil` resolves (or after 5 s); else SLOW alone answers late, and as one piece.
 */
function world(
  facts: (node: string) => string,
  slowUntil: (w: World) => Promise<unknown>,
  pace: NetworkPace = {},
  landing: Landing = landsRight,
  streamed = false,
): World {
  const log: string[] = [];
  let running = 0;
  let watched: () => void = () => undefined;
  const w: World = {
    log,
    running: () => running,
    probes: new Map(inventory.nodes.map((n) => [n.name, []])),
    commands: new Map(inventory.nodes.map((n) => [n.name, 0])),
    firstWatch: new Promise<void>((resolve) => (watched = resolve)),
    connector: undefined as never,
  };
  const network = underlayNetwork(inventory, landing, undefined, pace);
  const connect = async (node: Node): Promise<Connection> => {
    const underlay = await network(node);
    w.probes.set(node.name, underlay.scripts);
    const own = new FakeConnection(node.name, [
      {
        match: /@@meshctl begin uid/,
        reply: async (script, io) => {
          const whole = `${script.includes('take_lock') ? lockAnswer : ''}${facts(node.name)}`;
          const cut = streamed ? whole.indexOf('\n', whole.indexOf('@@meshctl end interfaces')) + 1 : 0;
          if (streamed) io.write(whole.slice(0, cut));
          if (streamed || node.name === SLOW) await Promise.race([slowUntil(w), sleep(5000)]);
          log.push(`facts ${node.name}`);
          return { stdout: whole.slice(cut) };
        },
      },
      { match: /take_lock/, reply: { stdout: 'acquired\n' } },
      { match: /rm -f/, reply: {} },
    ]);
    return {
      node: node.name,
      target: own.target,
      get stats() {
        return { commands: own.stats.commands + underlay.stats.commands, remoteMs: 0, connectMs: 0 };
      },
      close: async () => undefined,
      async run(script: string, options?: RunOptions): Promise<ExecResult> {
        running++;
        w.commands.set(node.name, w.commands.get(node.name)! + 1);
        if (isWatcher(script)) {
          log.push(`watch ${node.name}`);
          watched();
        }
        try {
          return await (isProbe(script) ? underlay : own).run(script, options);
        } finally {
          running--;
        }
      },
    };
  };
  const connections = Promise.all(inventory.nodes.map(async (n) => [n.name, await connect(n)] as const)).then((all) => new Map(all));
  w.connector = {
    connectAll: async () => ({ connections: await connections, failures: new Map(), close: async () => undefined }),
    connectOne: async () => {
      throw new Error('no fresh login in these phases');
    },
  };
  return w;
}

const up = (w: World): Promise<UpReport> =>
  runUp(
    inventory,
    w.connector,
    { onEvent: () => undefined, gate: async () => true },
    { signal: new AbortController().signal, playbookPath, rollbackDeadlineS: 0 },
  );

describe('up: the underlay probes start during the facts step (issue 10)', () => {
  it('a cold mesh: the watchers start as soon as a node streamed an interface list without the mesh interface, before any facts probe ended', async () => {
    const w = world(
      () => bareFacts,
      (w) => w.firstWatch,
      {},
      landsRight,
      true,
    );
    const report = await up(w);
    assert.equal(report.result, 'converged', JSON.stringify(report.phases.map((p) => [p.id, p.verdict])));
    assert.ok(w.log[0]?.startsWith('watch '), w.log.join(', '));
    assert.equal(report.underlayAhead, true);
    for (const [node, scripts] of w.probes) assert.equal(scripts.length, 2, node);
    assert.equal(w.running(), 0);
  });

  it('a cold mesh over a transport that does not stream: the watchers start at the first whole facts, before the last node answered, and the baseline judges their result', async () => {
    const w = world(
      () => bareFacts,
      (w) => w.firstWatch,
    );
    const report = await up(w);
    assert.equal(report.result, 'converged', JSON.stringify(report.phases.map((p) => [p.id, p.verdict])));
    const firstWatch = w.log.findIndex((line) => line.startsWith('watch '));
    assert.ok(firstWatch >= 0 && firstWatch < w.log.indexOf(`facts ${SLOW}`), w.log.join(', '));
    assert.equal(report.underlayAhead, true);
    // judged at the baseline gate as before: every forward reached its node, the NAT seen at the inventory's address
    const baseline = report.phases.find((p) => p.id === 'baseline')!;
    for (const node of baseline.nodes)
      for (const check of node.checks) assert.equal(check.status, 'pass', `${node.node} ${check.id}: ${check.message}`);
    assert.match(baseline.nodes.find((n) => n.node === 'ms-1')!.checks[0]!.message, /reaches ms-1/);
    // the same probe commands as when the baseline started them: one try (a watcher and a sender on every node here)
    for (const [node, scripts] of w.probes) assert.equal(scripts.length, 2, node);
    assert.equal(w.running(), 0);
  });

  it('a converged mesh: no probe command at all, one facts probe per node (a second up pays nothing more)', async () => {
    // streamed as sshd does: the interface list (with wg0) arrives before the rest
    const w = world(upFactsOf, async () => undefined, {}, landsRight, true);
    const report = await up(w);
    assert.equal(report.result, 'converged');
    assert.equal(report.underlayAhead, undefined);
    for (const [node, scripts] of w.probes) assert.deepEqual(scripts, [], node);
    // the facts probe alone, as before this change (the lock's release comes after the report)
    for (const node of w.commands.keys()) assert.equal(report.roundTrips[node], 1, node);
    const baseline = report.phases.find((p) => p.id === 'baseline')!;
    for (const node of baseline.nodes)
      for (const check of node.checks) assert.match(check.message, /not probed: every node already runs the mesh/, node.node);
  });

  it('a facts gate that STOPs ends the probes it started: every watcher and sender ended, nothing left running', async () => {
    const rejections: unknown[] = [];
    const onRejection = (reason: unknown) => rejections.push(reason);
    process.on('unhandledRejection', onRejection);
    try {
      const stopped: string[] = [];
      // no forward lands anywhere and each window is 2 s: the probe is still running when the facts gate stops
      const pace: NetworkPace = { scale: 1, onStop: (node, role, how) => stopped.push(`${role} ${node.name} ${how}`) };
      const w = world(
        (node) => (node === SLOW ? notRootFacts : bareFacts),
        (w) => w.firstWatch,
        pace,
        () => undefined,
      );
      const report = await up(w);
      assert.equal(report.result, 'stopped');
      assert.equal(report.stoppedAt, 'facts');
      const watchers = w.log.filter((line) => line.startsWith('watch '));
      assert.ok(watchers.length > 0, `the probes started during the facts step: ${w.log.join(', ')}`);
      assert.equal(w.running(), 0, 'no command still running once up returned');
      await sleep(0);
      // every watcher and sender that reached a node was ended, none ran out its window or rounds
      const started = [...w.probes.values()].flat().length;
      assert.equal(stopped.length, started, stopped.join(', '));
      assert.deepEqual(
        stopped.filter((s) => !s.endsWith(' ended')),
        [],
      );
      assert.deepEqual(rejections, []);
    } finally {
      process.off('unhandledRejection', onRejection);
    }
  });
});
