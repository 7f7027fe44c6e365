/**
 * The run lock in `up` (src/engine/up.ts, src/engine/lock.ts) over scripted fake connections: the first node (by
 * name) is locked alone, every other node's lock is taken by its facts probe (issue 10: one round trip and one SSH
 * channel fewer per node), facts are read under the lock, and a refusal still stops the run before anything
 * changes, naming the holder, with every lock of this run released. Facts: the bare-node capture of a lab node.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { runUp, type Connector, type UpView } from '../../src/engine/up.js';
import { loadInventory } from '../../src/inventory/load.js';
import { FakeConnection, untilAborted } from '../support/fake-connection.js';
import { TransportError } from '../../src/transport/types.js';

const inventory = loadInventory('inventories/homelab.yaml');
const bareFacts = readFileSync('test/fixtures/facts/bare-debian12.txt', 'utf8');
const playbookPath = 'test/fixtures/up/facts-only.yaml';
const FIRST = [...inventory.nodes.map((n) => n.name)].sort()[0]!;
const lockAnswer = (answer: string) => `@@meshctl begin lock\n${answer}\n@@meshctl end lock rc=0\n`;

/** A node that answers the facts probe (with the lock's answer first when the probe carries the lock). */
function node(name: string, answer: string, log: string[]) {
  return new FakeConnection(name, [
    {
      match: /@@meshctl begin uid/,
      reply: (script) => {
        log.push(`facts ${name}`);
        return { stdout: `${script.includes('take_lock') ? lockAnswer(answer) : ''}${bareFacts}` };
      },
    },
    {
      match: /take_lock/,
      reply: () => {
        log.push(`lock ${name}`);
        return { stdout: `${answer}\n` };
      },
    },
    {
      match: /rm -f/,
      reply: () => {
        log.push(`release ${name}`);
        return {};
      },
    },
  ]);
}

function run(
  answers: Record<string, string> = {},
  options: { dryRun?: boolean; swap?: Map<string, FakeConnection>; forks?: number; seen?: string[] } = {},
) {
  const log: string[] = [];
  const connections = new Map(
    inventory.nodes.map((n) => [n.name, options.swap?.get(n.name) ?? node(n.name, answers[n.name] ?? 'acquired', log)]),
  );
  const connector: Connector = {
    connectAll: async () => ({ connections, failures: new Map(), close: async () => undefined }),
    connectOne: async () => {
      throw new Error('no reconnect in this test');
    },
  };
  const view: UpView = {
    onEvent: (event) => options.seen?.push(event.type),
    gate: async () => {
      options.seen?.push('gate');
      return true;
    },
  };
  const report = runUp(inventory, connector, view, {
    signal: new AbortController().signal,
    playbookPath,
    rollbackDeadlineS: 0,
    ...(options.dryRun ? { dryRun: true } : {}),
    ...(options.forks ? { forks: options.forks } : {}),
  });
  return { report, log, connections };
}

describe('up: the run lock folded into the facts probe (issue 10)', () => {
  it('locks every node in its facts probe, the first node before any other: one round trip per node for lock and facts', async () => {
    const { report, log, connections } = run();
    const r = await report;
    assert.equal(r.result, 'converged', JSON.stringify(r.phases));
    // every node, the first one too: its facts probe alone (the lock is in it); was 2 on the first node
    assert.deepEqual(r.roundTrips, Object.fromEntries(inventory.nodes.map((n) => [n.name, 1])));
    assert.equal(log[0], `facts ${FIRST}`, 'nothing before the first node is locked');
    for (const [name, c] of connections) {
      const facts = c.scripts.find((s) => s.includes('@@meshctl begin uid'))!;
      assert.equal(facts.split('take_lock()').length, 2, `${name}: locked once`);
      assert.ok(facts.indexOf('take_lock') < facts.indexOf('@@meshctl begin now'), `${name}: the lock comes before the facts`);
    }
    // released everywhere at the end
    assert.deepEqual(log.filter((l) => l.startsWith('release')).sort(), inventory.nodes.map((n) => `release ${n.name}`).sort());
  });

  it('a lock held on another node stops the run as before: result locked, the holder named, every lock of this run released', async () => {
    const other = 'holder=ops@laptop pid=4242 started=1796000000 run=abcd';
    const refusedNode = inventory.nodes.map((n) => n.name).find((n) => n !== FIRST)!;
    const { report, log } = run({ [refusedNode]: `held ${other}` });
    const r = await report;
    assert.equal(r.result, 'locked');
    assert.match(r.locked ?? '', new RegExp(`^${refusedNode} is locked by another meshctl run: ops@laptop \\(pid 4242\\)`));
    assert.deepEqual(r.phases, [], 'a locked run reports no phase (nothing is recorded in the local state)');
    assert.deepEqual(log.filter((l) => l.startsWith('release')).sort(), inventory.nodes.map((n) => `release ${n.name}`).sort());
  });

  it('a took-over stale lock in a facts probe is a warning of the run', async () => {
    const refusedNode = inventory.nodes.map((n) => n.name).find((n) => n !== FIRST)!;
    const { report } = run({ [refusedNode]: 'took-over holder=ops@laptop pid=4242 started=1700000000 run=abcd' });
    const r = await report;
    assert.equal(r.result, 'converged');
    assert.deepEqual(r.warnings, [`${refusedNode}: took over the run lock of ops@laptop (pid 4242) since 2023-11-14 22:13:20 UTC`]);
  });

  it('refused at the first node: no other node is touched, the view shows nothing (as when its lock was taken alone)', async () => {
    const seen: string[] = [];
    const { report, log } = run({ [FIRST]: 'held holder=x@y pid=1 started=1 run=r' }, { seen });
    const r = await report;
    assert.equal(r.result, 'locked');
    assert.match(r.locked ?? '', new RegExp(`^${FIRST} is locked by another meshctl run: x@y \\(pid 1\\)`));
    assert.deepEqual(r.phases, []);
    assert.deepEqual(log, [`facts ${FIRST}`, `release ${FIRST}`]);
    assert.deepEqual(seen, [], 'no phase, no gate shown');
  });

  it("the other nodes' probes start once the first node's lock section has streamed back, before its probe ends", {
    timeout: 10_000,
  }, async () => {
    let othersStarted: () => void = () => undefined;
    const started = new Promise<void>((resolve) => (othersStarted = resolve));
    const first = new FakeConnection(FIRST, [
      {
        match: /@@meshctl begin uid/,
        reply: async (_script, io) => {
          io.write(lockAnswer('acquired'));
          // the rest of the probe comes only after another node's probe was sent: the lock's answer is read from
          // the stream, not after the whole probe (else this waits until the test's timeout)
          await started;
          return { stdout: bareFacts };
        },
      },
      { match: /rm -f/, reply: {} },
    ]);
    const { report, log } = run({}, { swap: new Map([[FIRST, first]]) });
    const poll = setInterval(() => log.some((l) => l.startsWith('facts ')) && othersStarted(), 2);
    const r = await report.finally(() => clearInterval(poll));
    assert.equal(r.result, 'converged', JSON.stringify(r.phases));
    assert.deepEqual(r.roundTrips, Object.fromEntries(inventory.nodes.map((n) => [n.name, 1])));
  });

  it("Ctrl-C while the first node's probe runs: no other node is sent anything, up reports the run interrupted", async () => {
    const controller = new AbortController();
    const first = new FakeConnection(FIRST, [
      { match: /@@meshctl begin uid/, reply: untilAborted(controller.signal) },
      { match: /rm -f/, reply: {} },
    ]);
    const log: string[] = [];
    const connections = new Map(inventory.nodes.map((n) => [n.name, n.name === FIRST ? first : node(n.name, 'acquired', log)]));
    const connector: Connector = {
      connectAll: async () => ({ connections, failures: new Map(), close: async () => undefined }),
      connectOne: async () => {
        throw new Error('no reconnect in this test');
      },
    };
    const view: UpView = { onEvent: () => undefined, gate: async () => true };
    const report = runUp(inventory, connector, view, { signal: controller.signal, playbookPath, rollbackDeadlineS: 0 });
    setTimeout(() => controller.abort(new Error('interrupted by the operator')), 20);
    // it rejected with the reason (meshctl said only "meshctl: interrupted", no summary): an interrupted run, as at
    // any other point of the run (test/unit/up-interrupted-early.test.ts)
    const r = await report;
    assert.equal(r.result, 'interrupted');
    assert.equal(r.changes, 0);
    assert.match(r.phases.at(-1)?.nodes.find((n) => n.node === FIRST)?.error ?? '', /interrupted by the operator/);
    assert.deepEqual(log, [], 'no other node touched');
    assert.ok(
      first.scripts.some((s) => /rm -f/.test(s)),
      "the first node's lock released",
    );
  });

  it('fewer forks than nodes: the first node is locked alone, as before (a held probe must not hold a fork)', async () => {
    const { report, log } = run({}, { forks: 1 });
    const r = await report;
    assert.equal(r.result, 'converged', JSON.stringify(r.phases));
    assert.equal(log[0], `lock ${FIRST}`);
    assert.equal(r.roundTrips[FIRST], 2);
  });
});

describe('up: the login root check done by the first command (issue 10: no separate id -u round trip)', () => {
  /** A sudo login (admin@) whose every command fails as sudo does. */
  const sudoNode = (name: string, failure: { throws?: boolean; code?: number; stderr?: string }) => {
    const c = new FakeConnection(name, [
      {
        match: /./,
        reply: () => {
          if (failure.throws)
            throw new TransportError(
              name,
              `${name} (admin@${name}:22): sudo asks for a password; meshctl needs passwordless sudo (NOPASSWD) or user root`,
              'sudo',
            );
          return { code: failure.code ?? 1, stderr: failure.stderr ?? '' };
        },
      },
    ]);
    (c as { target: string }).target = `admin@${name}:22`;
    return c;
  };
  const notFirst = inventory.nodes.map((n) => n.name).find((n) => n !== FIRST)!;

  it("sudo asking for a password in the facts probe: unreachable, the transport's message, nothing changed", async () => {
    const { report } = run({}, { swap: new Map([[notFirst, sudoNode(notFirst, { throws: true })]]) });
    const r = await report;
    assert.equal(r.result, 'unreachable');
    assert.deepEqual(r.phases, []);
    assert.equal(r.connectFailures.length, 1);
    assert.match(r.connectFailures[0]!.error, new RegExp(`^${notFirst} \\(admin@${notFirst}:22\\): sudo asks for a password`));
  });

  it('sudo missing on the first node (its lock is the first command): unreachable, said as the probe said it', async () => {
    const { report, log } = run(
      {},
      { swap: new Map([[FIRST, sudoNode(FIRST, { code: 127, stderr: 'bash: line 1: sudo: command not found\n' })]]) },
    );
    const r = await report;
    assert.equal(r.result, 'unreachable');
    assert.deepEqual(r.connectFailures, [
      { node: FIRST, error: `${FIRST} (admin@${FIRST}:22): logged in as admin, but sudo is not installed; use user root or install sudo` },
    ]);
    assert.deepEqual(log, [], 'no other node touched');
  });

  it('a dry run (no lock): the facts probe is the check; a refusing sudoers is unreachable', async () => {
    const stderr = "Sorry, user admin is not allowed to execute '/bin/sh' as root on wk-1.\n";
    const { report } = run({}, { dryRun: true, swap: new Map([[notFirst, sudoNode(notFirst, { code: 1, stderr })]]) });
    const r = await report;
    assert.equal(r.result, 'unreachable');
    assert.match(r.connectFailures[0]!.error, /admin may not use sudo \(Sorry, user admin is not allowed to execute/);
  });
});
