/**
 * Issue 10 at 1,000 nodes: verify's scripts grow by a few bytes per peer, not by a section per peer. Measured
 * (docs/farm.md): the first script was 283 KB per node at 1,000 nodes (a route section of 264 bytes per peer) and
 * the cold-start script 236 KB (a burst section per direction, twice); verify makes and sends N of each, and held
 * ~0.5 GB of script text at once. Now each peer is an address in one list (src/checks/checklist-lean.ts routeLoop,
 * src/checks/cold-start.ts burstSections). Bytes are counted here on the scripts' text, no timings; this file uses
 * only the functions the scripts had before, so it runs against the old code as well (where it fails).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { checklistScript } from '../../src/checks/probes.js';
import { sendAndWatchScript, type Direction } from '../../src/checks/cold-start.js';

/** n IPv4 overlay addresses as a large mesh has them (10.X.Y.Z, 8 to 11 characters). */
const addresses = (n: number) => Array.from({ length: n }, (_, i) => `10.${Math.floor(i / 250)}.${i % 250}.${(i % 7) + 1}`);
const directions = (n: number): Direction[] => addresses(n).map((host, i) => ({ from: 'a', to: `n${i}`, endpoint: { host, port: 51820 } }));

/** Bytes the script grows by per peer between 100 and 200 peers. */
const perPeer = (script: (peers: number) => string) => (script(200).length - script(100).length) / 100;

describe("verify's scripts: bytes per peer", () => {
  it("the checklist (in verify's first script) grows by its peers' addresses, < 20 bytes per peer (was 264)", () => {
    const bytes = perPeer((n) => checklistScript({ interface: 'wg0', listenPort: 51820, peerIps: addresses(n) }));
    // an address and a space each: 9.9 bytes on average here (the old route section: 264)
    assert.ok(bytes < 20, `${bytes} bytes per peer`);
  });

  it('the checklist of debug (shared: false, with the firewall) too', () => {
    const bytes = perPeer((n) => checklistScript({ interface: 'wg0', listenPort: 51820, peerIps: addresses(n), firewall: true }));
    assert.ok(bytes < 20, `${bytes} bytes per peer`);
  });

  it("the cold-start script grows by each direction's HOST/PORT, < 24 bytes per direction (was 233)", () => {
    // a receiver too (the watch's target), as every node of a full mesh is
    const bytes = perPeer((n) => sendAndWatchScript(directions(n), 1_000_000));
    assert.ok(bytes < 24, `${bytes} bytes per direction`);
  });
});
