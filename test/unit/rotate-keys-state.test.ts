/**
 * `rotate-keys` and the local state (src/state): after a rotation the state holds the new public keys. It kept the
 * old ones, and `up --limit` renders a peer that does not answer from the state's key: the limited nodes would then
 * get a key that no longer exists for that peer (its pairs down) until a full `up` read the keys again.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { keysAfterRotation, peersChangedBy, recordRotatedKeys } from '../../src/commands/rotate-keys.js';
import { loadInventory } from '../../src/inventory/load.js';
import type { RotationReport } from '../../src/engine/rotate.js';

// public keys (base64 of 32 bytes: the last character before "=" carries 2 padding bits)
const OLD = 'UKjRyKjdO3lSEVrtJORW2SPbgv65VDcR0MrRBbusmXg=';
const NEW = 'xOK9qeXES8CwFINhW4MY2hEWU19A//XS4BBldlAiPkc=';
const OTHER = 'hqsXkFsuogkV1KMHtLmnAf/cCvo0krlBIv6ksSWcTiI=';

const rotation = (node: string, ok: boolean, newPublicKey?: string): RotationReport => ({
  node,
  ok,
  outcome: ok ? 'rotated' : 'rolled-back',
  interrupted: false,
  oldPublicKey: OLD,
  ...(newPublicKey ? { newPublicKey } : {}),
  reusedPendingKey: false,
  peersUpdated: [],
});

describe('rotate-keys writes the new public keys into the local state', () => {
  const dir = mkdtempSync(join(tmpdir(), 'meshctl-rotate-state-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('keysAfterRotation: the keys read after the rotations, else the completed rotations', () => {
    assert.deepEqual(
      keysAfterRotation(
        [rotation('ms-1', true, NEW)],
        new Map([
          ['ms-1', NEW],
          ['wk-1', OTHER],
        ]),
      ),
      {
        'ms-1': NEW,
        'wk-1': OTHER,
      },
    );
    assert.deepEqual(keysAfterRotation([rotation('ms-1', true, NEW), rotation('wk-1', false, OTHER)]), { 'ms-1': NEW });
  });

  it('peersChangedBy: the ping matrix after rotate-keys starts first contact and resets only when a peer was changed (RV4 F1.5)', () => {
    const given = (outcome: RotationReport['outcome']): RotationReport => ({ ...rotation('ms-1', outcome === 'rotated'), outcome });
    assert.equal(peersChangedBy([]), false);
    assert.equal(peersChangedBy([given('not-rotated'), given('not-rotated')]), false);
    for (const outcome of ['rotated', 'rolled-back', 'incomplete'] as const)
      assert.equal(peersChangedBy([given('not-rotated'), given(outcome)]), true, outcome);
  });

  it('the state file holds the new key, the other nodes and the last run are kept', () => {
    const path = join(dir, 'homelab.yaml');
    writeFileSync(path, readFileSync('inventories/homelab.yaml', 'utf8'));
    const inventory = loadInventory(path);
    const lastApply = { at: '2026-12-01T10:00:00.000Z', command: 'up', result: 'converged', nodes: ['ms-1', 'wk-1'] };
    const seen = '2026-12-01T10:00:00.000Z';
    writeFileSync(
      `${path}.state.json`,
      JSON.stringify({
        version: 1,
        interface: 'wg0',
        nodes: {
          'ms-1': { publicKey: OLD, overlayIp: '172.27.15.12', listenPort: 51820, seen },
          'wk-1': { publicKey: OTHER, overlayIp: '172.27.15.11', listenPort: 51820, seen },
        },
        lastApply,
      }),
    );
    assert.equal(recordRotatedKeys(inventory, { 'ms-1': NEW }, new Date('2026-12-01T11:00:00Z')), undefined);
    const state = JSON.parse(readFileSync(`${path}.state.json`, 'utf8'));
    assert.equal(state.nodes['ms-1'].publicKey, NEW);
    assert.equal(state.nodes['ms-1'].seen, '2026-12-01T11:00:00.000Z');
    assert.equal(state.nodes['wk-1'].publicKey, OTHER);
    assert.deepEqual(state.lastApply, lastApply);
  });

  it('an unwritable state is a warning, not a failure', () => {
    const inventory = loadInventory('inventories/homelab.yaml');
    const warning = recordRotatedKeys({ ...inventory, source: join(dir, 'no-such-dir', 'x.yaml') }, { 'ms-1': NEW });
    assert.match(warning ?? '', /the local state was not updated with the new public keys/);
  });
});
