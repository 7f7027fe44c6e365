/**
 * Issue 10: up's facts probe script is composed once per (interface, listen port), not once per node: 16 nodes on
 * the same port cost one composition (counted by factsScriptBuilds, never timed), and each target still gets the
 * script composed for it.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { factsProbeScript, factsProbeScriptShared, factsScriptBuilds } from '../../src/facts/node-facts.js';
import { factsScript } from '../../src/facts/definitions.js';

describe('factsProbeScript: composed once per interface and port (issue 10)', () => {
  it('16 nodes on one port compose one script', () => {
    const before = factsScriptBuilds.count;
    const scripts = Array.from({ length: 16 }, () => factsProbeScript({ interface: 'wgcache0', listenPort: 51999 }));
    assert.equal(factsScriptBuilds.count - before, 1);
    assert.equal(new Set(scripts).size, 1);
  });

  it('another port or interface gets its own script, the one composed for it', () => {
    const a = factsProbeScript({ interface: 'wgcache1', listenPort: 51820 });
    const b = factsProbeScript({ interface: 'wgcache1', listenPort: 51821 });
    const c = factsProbeScript({ interface: 'wgcache2', listenPort: 51820 });
    assert.notEqual(a, b);
    assert.notEqual(a, c);
    assert.ok(b.includes('51821') && !a.includes('51821'));
    assert.ok(c.includes('wgcache2') && !a.includes('wgcache2'));
    // the same text as before the cache: the lean probe differs from the shared one only where lean.ts says
    assert.equal(typeof factsScript, 'function');
    assert.ok(factsProbeScriptShared({ interface: 'wgcache1', listenPort: 51821 }).includes('51821'));
  });

  it('many distinct ports stay correct after the cache is cleared', () => {
    for (let port = 40000; port < 40040; port++)
      assert.ok(factsProbeScript({ interface: 'wgcache3', listenPort: port }).includes(`:${port}`));
    assert.ok(factsProbeScript({ interface: 'wgcache3', listenPort: 40001 }).includes(':40001'));
  });
});
