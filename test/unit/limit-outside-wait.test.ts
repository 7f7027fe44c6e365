/**
 * Finding 8: `up --limit` waited the whole connect timeout for an outside node whose public key the local state holds.
 * With `giveUp` (src/engine/limit.ts gatherOutsideKeys), such a node is planned from the state once `giveUp` resolves;
 * a node the state has no key for is still waited for. A scripted fake connector; no clock involved: the stuck node
 * answers (with another key) only after the gathering could have ended.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { loadInventory } from '../../src/inventory/load.js';
import { gatherOutsideKeys, limitInventory, OUTSIDE_GRACE_MIN_MS, outsideGiveUp } from '../../src/engine/limit.js';
import type { Connection } from '../../src/transport/types.js';
import { FakeConnection } from '../support/fake-connection.js';

const inventory = loadInventory('inventories/homelab.yaml');
const KEY = {
  ms1: 'kZ1jqc6HzSIcsmWUlTUjYtU8jCHKZyAfcAcxi4nqYTU=',
  wk2State: 'qJ5h3GbSgD6AvuzmjjlVn0uVzdh6mcpSw6g1rbM9sko=',
  wk2Live: 'hFzh3yPZHDfvRb1ZsS2xNvbdy5jVt/rNrfMpFmgFN2o=',
};
const ticks = async (n: number) => {
  for (let i = 0; i < n; i++) await new Promise((r) => setImmediate(r));
};

describe('--limit: outside nodes whose key the state holds are not waited for past giveUp (finding 8)', () => {
  it('each outside node on its own: one that answered in time is planned with its live key while another is late', async () => {
    // a review's finding (stop 25): read as one group, wk-2 down made wk-1's key come from the state too (older than
    // a key rotated from another machine: the tunnel would break)
    const outside = limitInventory(inventory, ['wk-1', 'wk-2']);
    const wk1Live = 'uFzh3yPZHDfvRb1ZsS2xNvbdy5jVt/rNrfMpFmgFN2o=';
    const connector = {
      async connectAll(nodes: typeof inventory) {
        const names = nodes.nodes.map((n) => n.name);
        if (names.includes('wk-2')) await new Promise(() => undefined);
        const connections = new Map<string, Connection>();
        for (const name of names)
          connections.set(
            name,
            new FakeConnection(name, [{ match: /public-key/, reply: { stdout: `${name === 'wk-1' ? wk1Live : KEY.ms1}\n` } }]),
          );
        return { connections, failures: new Map<string, Error>(), close: async () => undefined };
      },
    };
    let giveUp: () => void = () => undefined;
    const given = new Promise<void>((resolve) => (giveUp = resolve));
    const state = new Map([
      ['wk-1', 'oldwk1oldwk1oldwk1oldwk1oldwk1oldwk1oldwk1o='],
      ['wk-2', KEY.wk2State],
    ]);
    const gathering = gatherOutsideKeys(connector, outside, state, new AbortController().signal, given);
    await ticks(10);
    giveUp();
    const found = await gathering;
    assert.equal(found.keys.get('wk-1'), wk1Live, 'the live key that came in time');
    assert.equal(found.keys.get('wk-2'), KEY.wk2State);
    assert.deepEqual(found.notWaited, ['wk-2']);
  });

  it('plans a silent outside node from the state once giveUp resolves; its late answer is not used', async () => {
    const outside = limitInventory(inventory, ['ms-1', 'wk-2']);
    let answerWk2: () => void = () => undefined;
    const wk2Answers = new Promise<void>((resolve) => (answerWk2 = resolve));
    const closed: string[] = [];
    const connector = {
      async connectAll(nodes: typeof inventory) {
        const names = nodes.nodes.map((n) => n.name);
        // wk-2's login hangs (its SSH port dropped) until the test lets it answer
        if (names.includes('wk-2')) await wk2Answers;
        const connections = new Map<string, Connection>();
        if (names.includes('ms-1'))
          connections.set('ms-1', new FakeConnection('ms-1', [{ match: /public-key/, reply: { stdout: `${KEY.ms1}\n` } }]));
        if (names.includes('wk-2'))
          connections.set('wk-2', new FakeConnection('wk-2', [{ match: /public-key/, reply: { stdout: `${KEY.wk2Live}\n` } }]));
        return { connections, failures: new Map<string, Error>(), close: async () => void closed.push(...names) };
      },
    };
    let giveUp: () => void = () => undefined;
    const given = new Promise<void>((resolve) => (giveUp = resolve));
    let done = false;
    const gathering = gatherOutsideKeys(connector, outside, new Map([['wk-2', KEY.wk2State]]), new AbortController().signal, given).then(
      (r) => {
        done = true;
        return r;
      },
    );
    await ticks(5);
    assert.equal(done, false, 'before giveUp, wk-2 is waited for');
    giveUp();
    await ticks(5);
    // the old code waited for wk-2's answer: released now, it would have read wk-2's live key
    answerWk2();
    const found = await gathering;
    assert.deepEqual(Object.fromEntries(found.keys), { 'ms-1': KEY.ms1, 'wk-2': KEY.wk2State });
    assert.deepEqual(found.fromState, ['wk-2']);
    assert.deepEqual(found.notWaited, ['wk-2']);
    assert.deepEqual(found.missing, []);
    await ticks(5);
    assert.ok(closed.includes('wk-2'), 'the late connection is closed once it answers');
  });

  it('waits for every node when the state has no key for it, and reads a quick node whose key the state has', async () => {
    const outside = limitInventory(inventory, ['ms-1', 'wk-2']);
    let giveUp: () => void = () => undefined;
    const given = new Promise<void>((resolve) => (giveUp = resolve));
    const connector = {
      async connectAll(nodes: typeof inventory) {
        const connections = new Map<string, Connection>(
          nodes.nodes.map((n) => [
            n.name,
            new FakeConnection(n.name, [{ match: /public-key/, reply: { stdout: `${n.name === 'ms-1' ? KEY.ms1 : KEY.wk2Live}\n` } }]),
          ]),
        );
        return { connections, failures: new Map<string, Error>(), close: async () => undefined };
      },
    };
    const found = await gatherOutsideKeys(connector, outside, new Map([['wk-2', KEY.wk2State]]), new AbortController().signal, given);
    giveUp();
    assert.deepEqual(Object.fromEntries(found.keys), { 'ms-1': KEY.ms1, 'wk-2': KEY.wk2Live });
    assert.deepEqual(found.fromState, []);
  });
});

describe('outsideGiveUp', () => {
  it("resolves only after the run's connections settle (failed too), then the grace (mocked timers)", async (t) => {
    t.mock.timers.enable({ apis: ['setTimeout'] });
    let fail: (e: Error) => void = () => undefined;
    const connected = new Promise((_, reject) => (fail = reject));
    let done = false;
    // a start in the future: the time the connections took counts as nothing, the grace is the least one
    void outsideGiveUp(connected, performance.now() + 600_000).then(() => (done = true));
    t.mock.timers.tick(60_000);
    await ticks(3);
    assert.equal(done, false, 'not before the connections settle');
    fail(new Error('every login failed'));
    await ticks(3);
    t.mock.timers.tick(OUTSIDE_GRACE_MIN_MS - 1);
    await ticks(3);
    assert.equal(done, false, 'not before the grace');
    t.mock.timers.tick(1);
    await ticks(3);
    assert.equal(done, true);
  });
});
