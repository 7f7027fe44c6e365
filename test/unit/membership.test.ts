/**
 * Issue 9, membership, the pure parts: --limit names (src/engine/limit.ts), the registry that renders a limited
 * run from the whole inventory, the outside nodes' keys (read, or from the state), the local state file
 * (src/state/state.ts), and `down`'s probe, plan and script (src/steps/down.ts, run through a real sh where it can).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadInventory } from '../../src/inventory/load.js';
import { MeshctlError } from '../../src/errors.js';
import {
  collectValues,
  gatherOutsideKeys,
  limitInventory,
  membershipRegistry,
  parsePublicKeyProbe,
  publicKeyProbeScript,
  resolveLimit,
} from '../../src/engine/limit.js';
import { checkNamed, stepNamed } from '../../src/engine/registry.js';
import type { NodeStep, NodeValues, StepInput } from '../../src/engine/types.js';
import {
  departedNodes,
  emptyState,
  formatState,
  parseState,
  readState,
  statePathFor,
  updateState,
  writeState,
} from '../../src/state/state.js';
import { departedNote, recordRun, statePublicKeys } from '../../src/state/record.js';
import { describeDownChange, downProbeScript, parseDownProbe, planDown, purgeablePaths } from '../../src/steps/down.js';
import { resolveDownTargets, rpFilterLiveNote, splitDownArgs } from '../../src/commands/down.js';
import { FakeConnection } from '../support/fake-connection.js';
import { parseFactsProbe } from '../../src/facts/node-facts.js';
import { tempDir } from '../support/temp-dir.js';

const inventory = loadInventory('inventories/homelab.yaml');
const KEYS: Record<string, string> = {
  'ms-1': 'kZ1jqc6HzSIcsmWUlTUjYtU8jCHKZyAfcAcxi4nqYTU=',
  'wk-1': 'hFzh3yPZHDfvRb1ZsS2xNvbdy5jVt/rNrfMpFmgFN2o=',
  'wk-2': 'qJ5h3GbSgD6AvuzmjjlVn0uVzdh6mcpSw6g1rbM9sko=',
  'ctb-edge-1': 'M3fwNRy2GLHqnlPdDk0jYBeu7PH7VtluCk9pcbYBzhg=',
};

describe('--limit names', () => {
  it('splits commas and repeats, keeps inventory order, drops duplicates', () => {
    const values = collectValues('wk-2', collectValues('ctb-edge-1, wk-2,'));
    assert.deepEqual(resolveLimit(inventory, values), ['wk-2', 'ctb-edge-1']);
  });
  it('refuses unknown names (exit 2) naming every one of them', () => {
    assert.throws(
      () => resolveLimit(inventory, ['ms-1,nope', 'gone']),
      (e: unknown) => e instanceof MeshctlError && e.exitCode === 2 && /nope, gone/.test(e.message),
    );
    assert.throws(
      () => resolveLimit(inventory, [' , ']),
      (e: unknown) => e instanceof MeshctlError && e.exitCode === 2,
    );
  });
  it('limits the inventory to the named nodes, mesh and sites unchanged', () => {
    const limited = limitInventory(inventory, ['wk-1']);
    assert.deepEqual(
      limited.nodes.map((n) => n.name),
      ['wk-1'],
    );
    assert.equal(limited.sites, inventory.sites);
    assert.equal(limited.mesh, inventory.mesh);
  });
});

/** wk-1's facts on a converged homelab node, a real capture (test/fixtures/facts). */
const convergedFacts = () =>
  parseFactsProbe(readFileSync('test/fixtures/facts/converged-wk-1.txt', 'utf8'), { interface: 'wg0', listenPort: 51820 });

describe('a limited run renders from the whole inventory (membershipRegistry)', () => {
  const limited = limitInventory(inventory, ['wk-1']);
  const outsideKeys = new Map(Object.entries(KEYS).filter(([n]) => n !== 'wk-1'));
  const writeConfig = stepNamed('write-config') as NodeStep;

  it('the write-config step of the limited node gets every peer, keys of the others from outside the run', () => {
    const recorded = new Map<string, string>();
    const registry = membershipRegistry(
      { step: stepNamed, check: checkNamed },
      { whole: inventory, outsideKeys, onPublicKey: (n, k) => recorded.set(n, k) },
    );
    const step = registry.step('write-config') as NodeStep;
    assert.deepEqual(step.needs, writeConfig.needs);
    const facts = convergedFacts();
    const own: Pick<NodeValues, 'facts' | 'publicKey'> = { facts, publicKey: { key: KEYS['wk-1']!, created: false, known: true } };
    const input = {
      node: limited.nodes[0]!,
      inventory: limited,
      values: own,
      mesh: new Map([['wk-1', own]]),
      changedSoFar: false,
    } as unknown as StepInput<keyof NodeValues>;
    // the old way (the limited inventory alone) renders wk-1 without a single peer
    const alone = writeConfig.outputs(input, undefined, undefined) as Pick<NodeValues, 'desired'>;
    assert.equal(alone.desired.peers.length, 0);
    const whole = step.outputs(input, undefined, undefined) as Pick<NodeValues, 'desired'>;
    assert.deepEqual(
      whole.desired.peers.map((p) => [p.name, p.publicKey]),
      [
        ['ctb-edge-1', KEYS['ctb-edge-1']],
        ['ms-1', KEYS['ms-1']],
        ['wk-2', KEYS['wk-2']],
      ],
    );
  });

  it('checks see the whole inventory; the ping matrix keeps only the rows of the nodes in the run', async () => {
    let seen = 0;
    const base = {
      step: () => ({
        scope: 'mesh' as const,
        effect: 'probe' as const,
        needs: [],
        provides: [],
        run: async (input: { inventory: { nodes: unknown[] } }) => {
          seen = input.inventory.nodes.length;
          return {
            values: new Map(),
            errors: new Map(),
            matrix: { nodes: ['wk-1', 'ms-1'], cells: { 'wk-1': {}, 'ms-1': {} } },
          };
        },
      }),
      check: () => ({
        needs: [],
        evaluate: (input: { inventory: { nodes: unknown[] } }) => ({
          id: 'x',
          status: 'pass' as const,
          message: `${input.inventory.nodes.length}`,
        }),
      }),
    };
    const registry = membershipRegistry(base as never, { whole: inventory, outsideKeys });
    const mesh = registry.step('ping-matrix')!;
    assert.equal(mesh.scope, 'mesh');
    const out = await (mesh as { run: (i: unknown) => Promise<{ matrix?: { cells: Record<string, unknown> } }> }).run({
      inventory: limited,
      nodes: [{ node: limited.nodes[0], connection: undefined, values: {} }],
      changedSoFar: false,
      signal: new AbortController().signal,
    });
    assert.equal(seen, 4);
    assert.deepEqual(Object.keys(out.matrix!.cells), ['wk-1']);
    const result = await registry.check('any')!.evaluate({
      node: limited.nodes[0]!,
      inventory: limited,
      values: {} as never,
      reconnect: async () => undefined as never,
      mesh: new Map(),
      changedSoFar: false,
    });
    assert.equal(result.message, '4');
  });
});

describe('the outside nodes public keys', () => {
  it('the probe reads the live key, else the .pub file, never the private key (real sh)', () => {
    const script = publicKeyProbeScript('wg0');
    assert.doesNotMatch(script, /wg0\.key/);
    assert.match(script, /wg show wg0 public-key/);
    assert.equal(parsePublicKeyProbe(`${KEYS['ms-1']}\n`), KEYS['ms-1']);
    assert.equal(parsePublicKeyProbe('cat: /etc/wireguard/wg0.pub: No such file or directory\n'), undefined);
    assert.equal(parsePublicKeyProbe(''), undefined);
  });

  it('reads from the nodes that answer, takes the state for one that does not, names one with no key', async () => {
    const outside = limitInventory(inventory, ['ms-1', 'wk-2', 'ctb-edge-1']);
    const connections = new Map([
      ['ms-1', new FakeConnection('ms-1', [{ match: /public-key/, reply: { stdout: `${KEYS['ms-1']}\n` } }])],
      ['wk-2', new FakeConnection('wk-2', [{ match: /public-key/, reply: { stdout: '' } }])],
    ]);
    let closed = false;
    const connector = {
      connectAll: async () => ({
        connections,
        failures: new Map([['ctb-edge-1', new Error('connect timeout')]]),
        close: async () => {
          closed = true;
        },
      }),
    };
    const found = await gatherOutsideKeys(
      connector as never,
      outside,
      new Map([['ctb-edge-1', KEYS['ctb-edge-1']!]]),
      new AbortController().signal,
    );
    assert.deepEqual(
      [...found.keys],
      [
        ['ms-1', KEYS['ms-1']],
        ['ctb-edge-1', KEYS['ctb-edge-1']],
      ],
    );
    assert.deepEqual(found.fromState, ['ctb-edge-1']);
    assert.deepEqual(
      found.missing.map((m) => m.node),
      ['wk-2'],
    );
    assert.match(found.missing[0]!.why, /no WireGuard key yet/);
    assert.ok(closed);
    const none = await gatherOutsideKeys(connector as never, outside, new Map(), new AbortController().signal);
    assert.match(none.missing.find((m) => m.node === 'ctb-edge-1')!.why, /connect timeout, and the local state has no key/);
  });
});

describe('local state', () => {
  const now = new Date('2026-11-30T01:00:00Z');
  const observed = { publicKeys: new Map(Object.entries(KEYS)) };

  it('records public keys with the inventory addresses, stable and secret-free text', () => {
    const state = updateState(emptyState('wg0'), inventory, observed, { now, complete: true });
    assert.deepEqual(Object.keys(state.nodes), ['ms-1', 'wk-1', 'wk-2', 'ctb-edge-1']);
    assert.deepEqual(state.nodes['ms-1'], {
      publicKey: KEYS['ms-1'],
      overlayIp: '172.27.15.12',
      listenPort: 51820,
      seen: now.toISOString(),
      ssh: inventory.nodes.find((n) => n.name === 'ms-1')!.ssh,
    });
    const text = formatState(state);
    assert.deepEqual(Object.keys(JSON.parse(text).nodes), ['ctb-edge-1', 'ms-1', 'wk-1', 'wk-2'], 'sorted by name');
    assert.deepEqual(parseState(text, 'wg0'), parseState(formatState(parseState(text, 'wg0')), 'wg0'));
  });

  it('keeps a node dropped from the inventory, departed after a complete run, with its SSH target; can forget a node', () => {
    const full = updateState(emptyState('wg0'), inventory, observed, { now, complete: true });
    const three = { nodes: inventory.nodes.filter((n) => n.name !== 'wk-2') };
    const wk2 = { name: 'wk-2', publicKey: KEYS['wk-2'], overlayIp: '172.27.15.13', listenPort: 51820 };
    const ssh = inventory.nodes.find((n) => n.name === 'wk-2')!.ssh;
    const limited = updateState(full, three, { publicKeys: new Map() }, { now, complete: false });
    assert.deepEqual(departedNodes(limited, three), [{ ...wk2, ssh }]);
    // Q3 finding 8: a complete run removed its peer everywhere, but its own interface is up: the state keeps how to
    // reach it (for `down`), marked departed; it was dropped here before
    const later = new Date('2026-11-30T02:00:00Z');
    const complete = updateState(full, three, { publicKeys: new Map() }, { now: later, complete: true });
    assert.deepEqual(departedNodes(complete, three), [{ ...wk2, ssh, departed: later.toISOString() }]);
    const again = updateState(complete, three, { publicKeys: new Map() }, { now: new Date('2026-11-30T03:00:00Z'), complete: true });
    assert.equal(again.nodes['wk-2']!.departed, later.toISOString(), 'the time its peers were removed is kept');
    assert.deepEqual(parseState(formatState(again), 'wg0'), again, 'read back as written');
    // back in the inventory: no longer departed
    assert.equal(updateState(again, inventory, { publicKeys: new Map() }, { now, complete: true }).nodes['wk-2']!.departed, undefined);
    // a state of an older meshctl (no SSH target): nothing could reach the node, so it is dropped as before
    const { ssh: _ssh, ...old } = full.nodes['wk-2']!;
    const oldState = { ...full, nodes: { ...full.nodes, 'wk-2': old } };
    assert.ok(!('wk-2' in updateState(oldState, three, { publicKeys: new Map() }, { now, complete: true }).nodes));
    assert.ok(!('ms-1' in updateState(full, inventory, { publicKeys: new Map() }, { now, complete: false, forget: ['ms-1'] }).nodes));
    assert.ok(!('wk-2' in updateState(complete, three, { publicKeys: new Map() }, { now, complete: true, forget: ['wk-2'] }).nodes));
  });

  it('a node renamed in the inventory (same key, or same SSH host and port) is not departed, and down refuses it (RV2 finding 1)', () => {
    const full = updateState(emptyState('wg0'), inventory, observed, { now, complete: true });
    const wk2 = inventory.nodes.find((n) => n.name === 'wk-2')!;
    // wk-2 renamed wk-9: the same machine (its sshd, its key), a new name
    const renamedInv = { ...inventory, nodes: inventory.nodes.map((n) => (n.name === 'wk-2' ? { ...n, name: 'wk-9' } : n)) };
    const sameKey = { publicKeys: new Map(Object.entries({ ...KEYS, 'wk-9': KEYS['wk-2']! })) };
    const after = updateState(full, renamedInv, sameKey, { now, complete: true });
    assert.ok(!('wk-2' in after.nodes), 'a complete run forgets the old name instead of marking it departed');
    // before that run (or after a --limit run) the old name is still in the state: it is the same machine
    const limited = updateState(full, renamedInv, { publicKeys: new Map() }, { now, complete: false });
    const gone = departedNodes(limited, renamedInv);
    assert.deepEqual(
      gone.map((d) => [d.name, d.sameMachineAs]),
      [['wk-2', 'wk-9']],
      'the same SSH host and port',
    );
    assert.throws(
      () => resolveDownTargets(renamedInv, gone, ['wk-2']),
      (e: unknown) => e instanceof MeshctlError && e.exitCode === 2 && /wk-2 is the same machine as wk-9/.test(e.message),
    );
    assert.deepEqual(resolveDownTargets(renamedInv, gone, ['wk-2'], { forget: true }).names, ['wk-2'], '--forget may drop it');
    // by key alone: the renamed node's SSH target changed too, but the state read its key under the new name
    const moved = {
      ...renamedInv,
      nodes: renamedInv.nodes.map((n) => (n.name === 'wk-9' ? { ...n, ssh: { ...wk2.ssh, host: '192.0.2.99' } } : n)),
    };
    const keyed = updateState(limited, moved, sameKey, { now, complete: false });
    assert.equal(departedNodes(keyed, moved).find((d) => d.name === 'wk-2')?.sameMachineAs, 'wk-9');
    // a node really dropped is still departed and reachable
    const three = { ...inventory, nodes: inventory.nodes.filter((n) => n.name !== 'wk-2') };
    assert.equal(
      departedNodes(updateState(full, three, { publicKeys: new Map() }, { now, complete: true }), three)[0]?.sameMachineAs,
      undefined,
    );
  });

  it('down --forget drops a departed node the state cannot reach (no SSH target: an older state) without contacting it (RV2 finding 5)', () => {
    const three = { ...inventory, nodes: inventory.nodes.filter((n) => n.name !== 'wk-2') };
    const old = [{ name: 'wk-2', publicKey: KEYS['wk-2']!, overlayIp: '172.27.15.13', listenPort: 51820 }];
    assert.throws(() => resolveDownTargets(three, old, ['wk-2']), /does not say how to reach it/);
    const chosen = resolveDownTargets(three, old, ['wk-2'], { forget: true });
    assert.deepEqual([chosen.names, chosen.nodes.map((n) => n.name)], [['wk-2'], []]);
  });

  it('plan and up name a dropped node, say its own interface stays up, and give the down command that reaches it', () => {
    const three = { ...inventory, source: 'my mesh.yaml', nodes: inventory.nodes.filter((n) => n.name !== 'wk-2') };
    const ssh = inventory.nodes.find((n) => n.name === 'wk-2')!.ssh;
    const gone = { name: 'wk-2', publicKey: KEYS['wk-2'], overlayIp: '172.27.15.13', listenPort: 51820, ssh };
    const first = departedNote(gone, three);
    assert.match(first, /^note: wk-2 is no longer in the inventory: its peer \(qJ5h3GbSgD…\) is removed from every node; /);
    assert.match(first, /its own wg0 stays up until `meshctl down 'my mesh\.yaml' wk-2` takes it down/);
    const later = departedNote({ ...gone, departed: '2026-11-30T02:00:00.000Z' }, three);
    assert.match(
      later,
      /wk-2 left the inventory .*removed from every node at 2026-11-30T02:00:00\.000Z\) but its own wg0 was not taken down/,
    );
    assert.match(later, /`meshctl down 'my mesh\.yaml' wk-2` does it/);
    assert.match(departedNote(gone, three, ['ms-1']), /removed from the nodes in --limit/);
    const { ssh: _ssh, ...unreachable } = gone;
    assert.match(departedNote(unreachable, three), /meshctl down OLD-INVENTORY wk-2/);
  });

  it('drops what it cannot trust: bad JSON, another interface or version, a value that is not a key', () => {
    assert.deepEqual(parseState('{', 'wg0'), emptyState('wg0'));
    const good = formatState(updateState(emptyState('wg0'), inventory, observed, { now, complete: true }));
    assert.deepEqual(parseState(good, 'wg1'), emptyState('wg1'));
    assert.deepEqual(parseState(good.replace('"version": 1', '"version": 2'), 'wg0'), emptyState('wg0'));
    const bad = JSON.parse(good);
    bad.nodes['ms-1'].publicKey = 'not a key';
    assert.ok(!('ms-1' in parseState(JSON.stringify(bad), 'wg0').nodes));
  });

  it('is written atomically next to the inventory, and read back by recordRun / statePublicKeys', () => {
    const dir = tempDir('meshctl-state-');
    const path = join(dir, 'mesh.yaml');
    writeFileSync(path, readFileSync('inventories/homelab.yaml'));
    const inv = loadInventory(path);
    assert.equal(statePathFor(path), `${path}.state.json`);
    assert.equal(statePublicKeys(inv).size, 0);
    const written = recordRun(inv, { command: 'up', result: 'converged', nodes: ['ms-1'], publicKeys: KEYS, complete: true }, now);
    assert.equal(written.path, `${path}.state.json`);
    assert.deepEqual(readdirSync(dir).sort(), ['mesh.yaml', 'mesh.yaml.state.json'], 'no temp file left');
    assert.equal(statePublicKeys(inv).get('wk-2'), KEYS['wk-2']);
    assert.equal(readState(path, 'wg0').lastApply?.result, 'converged');
    writeState(path, emptyState('wg0'));
    assert.equal(statePublicKeys(inv).size, 0);
    const unwritable = recordRun(
      { ...inv, source: join(dir, 'missing-dir', 'x.yaml') },
      { command: 'up', result: 'x', nodes: [], publicKeys: {}, complete: false },
    );
    assert.match(unwritable.warning ?? '', /could not write the local state/);
  });
});

/** `down`'s probe output on a node where `up` converged, and where nothing of the mesh is left (lab, Debian 12). */
const PROBE_UP = [
  'systemd=yes',
  'active=active',
  'enabled=enabled',
  'interface=present',
  'interface-kind=wireguard',
  'file=/etc/wireguard/wg0.conf',
  'file=/etc/wireguard/wg0.key',
  'file=/etc/wireguard/wg0.pub',
  'file=/etc/sysctl.d/99-wireguard.conf',
  'file=/etc/systemd/system/wg-quick@wg0.service.d/meshctl-keep-key.conf',
  'dropin-dir=present',
  '',
].join('\n');
const PROBE_CLEAN = ['systemd=yes', 'active=inactive', 'enabled=disabled', ''].join('\n');

describe('down on a node', () => {
  it('parses the probe', () => {
    const facts = parseDownProbe(PROBE_UP);
    assert.equal(facts.systemd, true);
    assert.equal(facts.interfacePresent, true);
    assert.equal(facts.files.length, 5);
    assert.deepEqual(parseDownProbe(PROBE_CLEAN).files, []);
  });

  it('plans stop, disable, delete and (with --purge) every file and the drop-in', () => {
    const plan = planDown(parseDownProbe(PROBE_UP), 'wg0', true);
    assert.deepEqual(plan.changes.map(describeDownChange), [
      'stop and disable wg-quick@wg0 (was active, enabled)',
      'delete interface wg0',
      'remove /etc/wireguard/wg0.conf',
      'remove /etc/wireguard/wg0.key',
      'remove /etc/wireguard/wg0.pub',
      'remove /etc/sysctl.d/99-wireguard.conf',
      'remove /etc/systemd/system/wg-quick@wg0.service.d/meshctl-keep-key.conf',
      'systemctl daemon-reload (the drop-in or timer units are gone)',
    ]);
    assert.match(plan.script!, /systemctl disable --now --no-reload wg-quick@wg0/);
    assert.doesNotMatch(plan.script!, /cat [^\n]*wg0\.key/, 'the key is removed, never read');
    const keep = planDown(parseDownProbe(PROBE_UP), 'wg0', false);
    assert.ok(keep.changes.every((c) => c.kind !== 'remove-file'));
  });

  it('is idempotent: nothing found, nothing to do', () => {
    assert.deepEqual(planDown(parseDownProbe(PROBE_CLEAN), 'wg0', true), { changes: [] });
  });

  it('the probe finds the files it names (real sh; paths that exist nowhere here)', () => {
    const out = execFileSync('sh', ['-c', downProbeScript('wg-mbtest9')], { encoding: 'utf8' });
    const facts = parseDownProbe(out);
    assert.deepEqual(facts.files, []);
    assert.equal(facts.interfacePresent, false);
    assert.ok(purgeablePaths('wg0').includes('/etc/wireguard/wg0.conf.bak'));
    // a private key in any form meshctl leaves: rotate-keys' pending key and the temp files (Q10 F12)
    for (const left of ['wg0.key.new', 'wg0.key.new.meshctl-tmp', 'wg0.key.meshctl-tmp'])
      assert.ok(purgeablePaths('wg0').includes(`/etc/wireguard/${left}`), left);
  });

  it('splits the inventory from the node names', () => {
    assert.deepEqual(
      splitDownArgs(['mesh.yaml', 'wk-1'], () => false),
      { inventory: 'mesh.yaml', nodes: ['wk-1'] },
    );
    assert.deepEqual(
      splitDownArgs(['wk-1', 'wk-2'], () => false),
      { nodes: ['wk-1', 'wk-2'] },
    );
    assert.deepEqual(
      splitDownArgs(['inv'], (p) => p === 'inv'),
      { inventory: 'inv', nodes: [] },
    );
    assert.deepEqual(
      splitDownArgs([], () => false),
      { nodes: [] },
    );
  });
});

describe('down on a node the inventory dropped (Q3 finding 8)', () => {
  const three = { ...inventory, nodes: inventory.nodes.filter((n) => n.name !== 'wk-2') };
  const ssh = { host: '192.168.15.4', port: 22, user: 'root', become: 'none' as const };
  const gone = { name: 'wk-2', publicKey: KEYS['wk-2']!, overlayIp: '172.27.15.13', listenPort: 51820, ssh, departed: 'x' };

  it('reaches it through the SSH target the local state kept', () => {
    const targets = resolveDownTargets(three, [gone], ['wk-2']);
    assert.deepEqual(targets.names, ['wk-2']);
    assert.deepEqual(targets.departed, [gone]);
    assert.deepEqual(
      targets.nodes.map((n) => [n.name, n.ssh]),
      [['wk-2', ssh]],
    );
    const both = resolveDownTargets(three, [gone], ['wk-2', 'ms-1', 'ms-1']);
    assert.deepEqual(both.names, ['ms-1', 'wk-2']);
    assert.deepEqual(resolveDownTargets(three, [gone], []).names, ['ms-1', 'wk-1', 'ctb-edge-1'], 'no names: the inventory');
  });

  it('an unknown name is bad input that speaks of down, not of --limit', () => {
    assert.throws(
      () => resolveDownTargets(three, [gone], ['wk-9', 'zz']),
      (e: unknown) =>
        e instanceof MeshctlError &&
        e.outcome === 'badInput' &&
        !e.message.includes('--limit') &&
        /down names nodes neither in .* nor in its local state: wk-9, zz/.test(e.message) &&
        e.details.some((d) => /only the local state knows .*: wk-2/.test(d)),
    );
    const { ssh: _ssh, ...old } = gone;
    assert.throws(() => resolveDownTargets(three, [old], ['wk-2']), /does not say how to reach it/);
  });
});

describe('down --purge and the live rp_filter (Q3 finding 9)', () => {
  it("says the live rp_filter values stay until the next boot when it removes meshctl's sysctl file, and only then", () => {
    const note = rpFilterLiveNote(planDown(parseDownProbe(PROBE_UP), 'wg0', true).changes);
    assert.match(
      note ?? '',
      /net\.ipv4\.conf\.all\.rp_filter and net\.ipv4\.conf\.default\.rp_filter keep their live value until the next boot/,
    );
    assert.equal(rpFilterLiveNote(planDown(parseDownProbe(PROBE_UP), 'wg0', false).changes), undefined, 'without --purge the file stays');
    assert.equal(rpFilterLiveNote(planDown(parseDownProbe(PROBE_CLEAN), 'wg0', true).changes), undefined, 'no file, nothing to say');
  });
});
