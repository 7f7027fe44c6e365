/**
 * Issue 10: what meshctl keeps and sends must not grow faster than the mesh (1,000 simulated nodes: `up` under 1 GB
 * RSS). Counted in bytes and occurrences, not time (the machine is shared). Inventories come from the simulated
 * farm's generator (scripts/bench/farm).
 */
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PerformanceObserver } from 'node:perf_hooks';
import { checkInventoryText } from '../../src/inventory/load.js';
import type { Inventory } from '../../src/inventory/types.js';
import { showStandIns, standInPublicKey, type Plan } from '../../src/engine/plan.js';
import { pingScript } from '../../src/checks/probes.js';
import { runUp, type Connector, type UpView } from '../../src/engine/up.js';
import { loadInventory } from '../../src/inventory/load.js';
import { JSON_WRITE_CHUNK, writeJson } from '../../src/ui/json-text.js';
import { FakeConnection } from '../support/fake-connection.js';
import { recordRun } from '../../src/state/record.js';
import { readState, statePathFor } from '../../src/state/state.js';
import { pathKind, planPaths } from '../../src/topology/paths.js';
import { farmInventory } from '../../scripts/bench/farm/inventory.js';

const dirs: string[] = [];
after(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

/** The farm's inventory of n nodes, its source in a fresh temporary directory (the state file goes next to it). */
function farm(n: number): Inventory {
  const generated = farmInventory(n);
  const ports = new Map(generated.nodes.map((node, i) => [node.name, 10_000 + i]));
  const yaml = generated.yaml((name) => ({ port: ports.get(name)!, identityFile: '/nonexistent' }));
  const dir = mkdtempSync(join(tmpdir(), 'meshctl-scale-'));
  dirs.push(dir);
  const check = checkInventoryText(yaml, join(dir, `farm-${n}.yaml`));
  assert.ok(check.ok, JSON.stringify(!check.ok && check.problems.slice(0, 3)));
  return check.inventory;
}

/** A cold up's plan as far as the state is concerned: per node a config write whose script and diff hold `peers` lines. */
function coldPlan(inventory: Inventory, lines: number): Plan {
  const config = (node: string) => Array.from({ length: lines }, (_, i) => `# ${node} peer line ${i}`);
  return {
    version: 1,
    inventory: inventory.source,
    playbook: 'default',
    dryRun: false,
    phases: [
      {
        id: 'config',
        title: 'Config',
        nodes: inventory.nodes.map((n) => ({
          node: n.name,
          warnings: [],
          actions: [
            {
              step: 'config',
              summary: 'write /etc/wireguard/wg0.conf',
              changes: [
                {
                  kind: 'write-file',
                  path: '/etc/wireguard/wg0.conf',
                  role: 'config',
                  afterSha256: 'a'.repeat(64),
                  diff: config(n.name).map((l) => `+${l}`),
                },
              ],
              script: `cat > /etc/wireguard/wg0.conf <<'EOF'\n${config(n.name).join('\n')}\nEOF\n`,
            },
          ],
        })),
      },
    ],
  };
}

/** The bytes of the state file after recording a converged up of `plan`. */
function stateBytes(inventory: Inventory, plan: Plan): number {
  const recorded = recordRun(inventory, {
    command: 'up',
    result: 'converged',
    nodes: inventory.nodes.map((n) => n.name),
    publicKeys: {},
    complete: true,
    plan,
  });
  assert.ok(recorded.path, recorded.warning);
  return readFileSync(statePathFor(inventory.source)).length;
}

describe('the local state file (src/state) keeps a record of the plan, not its N^2 scripts and diffs', () => {
  it('its bytes per node are bounded and do not grow with the size of each node script (60 nodes, 10 vs 2,000 lines)', () => {
    const inventory = farm(60);
    const small = stateBytes(inventory, coldPlan(inventory, 10));
    const large = stateBytes(inventory, coldPlan(inventory, 2000));
    // the whole plan (the old state) held each node's script and diff: ~2 x 2,000 x 30 bytes = 120 kB per node
    assert.ok(large <= 2000 * 60, `${large} bytes for 60 nodes`);
    assert.ok(large - small <= 60 * 20, `10 lines: ${small} bytes, 2,000 lines: ${large}`);
  });

  it('keeps what a reader may want: per phase, node and action the step, summary and changes (a diff as its line count)', () => {
    const inventory = farm(4);
    stateBytes(inventory, coldPlan(inventory, 5));
    const plan = readState(inventory.source, 'wg0').lastApply?.plan as Plan;
    const action = plan.phases[0]!.nodes[0]!.actions[0]! as unknown as Record<string, unknown>;
    assert.equal(plan.phases[0]!.nodes.length, 4);
    assert.equal(action.step, 'config');
    assert.equal(action.summary, 'write /etc/wireguard/wg0.conf');
    assert.equal(action.script, undefined);
    assert.deepEqual(action.changes, [
      { kind: 'write-file', path: '/etc/wireguard/wg0.conf', role: 'config', afterSha256: 'a'.repeat(64), diffLines: 5 },
    ]);
  });
});

describe('pathKind (src/topology/paths.ts) looks a pair up without building a string', () => {
  // pathBetween makes its answer per call since its `why` texts are made when read (issue 10: the planned texts
  // were ~100 MB at 1,000 nodes); pathKind is the lookup of callers that ask every pair (desired configs)
  /** Garbage collections while pathKind runs for all N(N-1) ordered pairs of the farm of n nodes, `rounds` times. */
  async function collectionsDuringLookups(n: number, rounds: number): Promise<{ gcs: number; direct: number }> {
    const inventory = farm(n);
    const paths = planPaths(inventory);
    const names = inventory.nodes.map((node) => node.name);
    pathKind(paths, names[0]!, names[1]!); // builds the index before counting
    const settle = () => new Promise((resolve) => setTimeout(resolve, 50));
    let gcs = 0;
    const observer = new PerformanceObserver((list) => {
      gcs += list.getEntries().length;
    });
    observer.observe({ entryTypes: ['gc'] });
    await settle();
    gcs = 0;
    let direct = 0;
    for (let r = 0; r < rounds; r++)
      for (const a of names) for (const b of names) if (a !== b && pathKind(paths, a, b) === 'direct') direct++;
    await settle();
    observer.disconnect();
    return { gcs, direct };
  }

  it('1.08 million lookups (600 nodes, 3 rounds) allocate next to nothing: at most 3 garbage collections', async () => {
    const { gcs, direct } = await collectionsDuringLookups(600, 3);
    assert.equal(direct, 3 * 600 * 599); // forwards everywhere: every pair is direct
    // a pairKey string per lookup (the old code) filled the young generation ~10 times here
    assert.ok(gcs <= 3, `${gcs} garbage collections during the lookups`);
  });
});

describe('the ping script (src/checks/probes.ts) lists each peer once: its size is linear in the peers', () => {
  const targets = (peers: number) =>
    Array.from({ length: peers }, (_, i) => ({ node: `n-${i}`, ip: `100.80.${Math.floor(i / 250)}.${(i % 250) + 2}` }));
  const script = (peers: number, mtu?: number) =>
    pingScript({ targets: targets(peers), count: 3, intervalSeconds: 0.05, deadlineSeconds: 7, ...(mtu ? { mtu } : {}) });

  for (const mtu of [undefined, 1420])
    it(`250 peers${mtu ? ', path MTU probed' : ''}: each address written once, under 2 kB + 20 bytes per peer`, () => {
      const text = script(250, mtu);
      for (const { ip } of targets(250)) {
        const escaped = ip.replaceAll('.', '\\.');
        assert.equal(text.match(new RegExp(`(^|[^\\d.])${escaped}(?![\\d.])`, 'g'))?.length, 1, ip);
      }
      // a job per peer in the text (the old script) was 227 kB at 250 peers with the MTU probe
      assert.ok(text.length <= 2000 + 20 * 250, `${text.length} bytes`);
      assert.ok(script(500, mtu).length - text.length <= 20 * 250, 'doubling the peers adds at most 20 bytes a peer');
    });
});

describe('JSON output in pieces (src/ui/json-text.ts): the bytes of JSON.stringify, never one string of the whole', () => {
  /** A real report: `up --dry-run` of the homelab inventory over fake nodes answering with a bare node's facts. */
  async function dryRunReport() {
    const inventory = loadInventory('inventories/homelab.yaml');
    const facts = readFileSync('test/fixtures/facts/bare-debian12.txt', 'utf8');
    const lock = '@@meshctl begin lock\nacquired\n@@meshctl end lock rc=0\n';
    const connections = new Map(
      inventory.nodes.map((n) => [
        n.name,
        new FakeConnection(n.name, [
          { match: /@@meshctl begin uid/, reply: (script) => ({ stdout: `${script.includes('take_lock') ? lock : ''}${facts}` }) },
          { match: /take_lock/, reply: () => ({ stdout: 'acquired\n' }) },
          { match: /rm -f/, reply: () => ({}) },
        ]),
      ]),
    );
    const connector: Connector = {
      connectAll: async () => ({ connections, failures: new Map(), close: async () => undefined }),
      connectOne: () => Promise.reject(new Error('no reconnect here')),
    };
    const view: UpView = { onEvent: () => undefined, gate: async () => true };
    return runUp(inventory, connector, view, { signal: new AbortController().signal, dryRun: true, rollbackDeadlineS: 0 });
  }

  /** What writeJson hands a sink: every write, joined, and the longest one. */
  async function written(value: unknown, indent: number | string) {
    const writes: string[] = [];
    await writeJson({ write: (chunk: string) => writes.push(chunk) > 0 }, value, indent);
    return { text: writes.join(''), longest: Math.max(...writes.map((w) => w.length)) };
  }

  it('a real up --dry-run report (plan, scripts, diffs): the same text as JSON.stringify for indents 2, 0, 4 and a tab', async () => {
    const report = await dryRunReport();
    assert.equal(report.result, 'planned');
    assert.ok(report.plan && report.plan.phases.length > 0);
    for (const indent of [2, 0, 4, '\t']) {
      assert.equal((await written(report, indent)).text, `${JSON.stringify(report, null, indent)}\n`, `indent ${JSON.stringify(indent)}`);
    }
  });

  it("JSON.stringify's rules: toJSON, omitted members, null in arrays, numbers, empty containers, strings to escape", async () => {
    const odd = {
      at: new Date(0),
      // json-ext calls toJSON() without the member's key (no report has a toJSON of its own; Date's ignores it)
      own: { toJSON: () => ({ n: [1, { deep: true }] }) },
      gone: undefined,
      fn: () => 1,
      list: [undefined, () => 1, Symbol('s'), Number.NaN, -0, 1e21, Number.POSITIVE_INFINITY, null, [], {}, [[]], [{}]],
      // biome-ignore lint/suspicious/noSparseArray: a hole is written as null
      sparse: [1, , 3],
      text: 'quote " backslash \\ newline \n tab \t \u2028 \ud800 é 😀',
      'key "quoted"\n': { map: new Map([[1, 2]]), nested: { a: { b: { c: [1, 'two', { three: 3 }] } } } },
      bare: Object.assign(Object.create(null), { x: 1, y: [2] }),
    };
    for (const indent of [2, 0, '', '--', 12, 'abcdefghijklmn'])
      assert.equal((await written(odd, indent)).text, `${JSON.stringify(odd, null, indent)}\n`, `indent ${JSON.stringify(indent)}`);
    for (const value of ['x', 3, null, [], {}, [1, [2, [3]]]])
      assert.equal((await written(value, 2)).text, `${JSON.stringify(value, null, 2)}\n`);
    // where JSON.stringify returns undefined json-ext writes null (documented; a report is never undefined)
    assert.equal((await written(undefined, 2)).text, 'null\n');
  });

  it('a report of 64 nodes with a 256 KiB script each (16 MiB of JSON): no write longer than a chunk and one script', async () => {
    // at 1,000 nodes the text passed V8's longest string (2^29 - 24 characters) and JSON.stringify threw RangeError
    const script = 'x'.repeat(1 << 18); // shared by every action: the value stays small, its text does not
    const value = { phases: [{ nodes: Array.from({ length: 64 }, (_, i) => ({ node: `n-${i}`, actions: [{ script }] })) }] };
    const { text, longest } = await written(value, 2);
    assert.equal(text, `${JSON.stringify(value, null, 2)}\n`);
    assert.ok(longest <= JSON_WRITE_CHUNK + (1 << 18) + 100, `longest write ${longest} of ${text.length}`);
  });
});

describe('showStandIns (src/engine/plan.ts) over a run whose stand-in list grows node by node', () => {
  it('300 nodes, a plan text shown after each push (the keys phase of a dry run): each node read O(1) times, not N/2', () => {
    const names: string[] = [];
    let reads = 0;
    const nodes = new Proxy(names, {
      get(target, key, receiver) {
        if (typeof key === 'string' && /^\d+$/.test(key)) reads++;
        return Reflect.get(target, key, receiver);
      },
    });
    let shown = 0;
    for (let i = 0; i < 300; i++) {
      names.push(`n-${i}`);
      const text = `PublicKey = ${standInPublicKey(`n-${i}`)}\nPublicKey = ${standInPublicKey('n-0')}\n`;
      if (showStandIns(text, nodes) === `PublicKey = <new key of n-${i}>\nPublicKey = <new key of n-0>\n`) shown++;
    }
    assert.equal(shown, 300);
    // a map of the whole list again after each push (the old code) read 300 x 301 / 2 = 45,150 elements
    assert.ok(reads <= 3 * 300, `${reads} reads of the list`);
  });
});
