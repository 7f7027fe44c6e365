/** The judges shared by up's gates and verify, on facts parsed from real lab captures (test/fixtures/facts, probes). */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import {
  interfaceFromAddr,
  interfaceFromFacts,
  judgeHandshake,
  judgeHandshakesRecent,
  judgeInterface,
  judgeOverlayRoutes,
  judgePeerRoute,
  judgeRpFilter,
  judgeService,
  routeCovers,
  rpFilterFromFacts,
  serviceFromFacts,
} from '../../src/checks/judge.js';
import { parseChecklist } from '../../src/checks/probes.js';
import { parseFactsProbe } from '../../src/facts/node-facts.js';
import { REJECT_AFTER_TIME_S } from '../../src/remote/wireguard.js';

const target = { interface: 'wg0', listenPort: 51820 };
const facts = (name: string) => parseFactsProbe(readFileSync(`test/fixtures/facts/${name}`, 'utf8'), target);
const checklist = (name: string) =>
  parseChecklist(readFileSync(`test/fixtures/probes/${name}`, 'utf8'), {
    ...target,
    peerIps: ['172.27.15.11', '172.27.15.13', '172.27.15.31'],
    firewall: true,
  });
// wk-1's peers in the homelab lab (converged-wk-1.txt)
const wk1Peers = () =>
  facts('converged-wk-1.txt').peers.map((p) => ({ name: p.allowedIps[0]!, publicKey: p.publicKey, allowedIps: p.allowedIps }));

describe('judgeService', () => {
  it('passes enabled+active, fails a stopped unit, fails a bare node (from up facts and verify checklist alike)', () => {
    assert.equal(judgeService({ iface: 'wg0' }, serviceFromFacts(facts('converged-wk-1.txt'), 'wg0')).status, 'pass');
    const bare = judgeService({ iface: 'wg0' }, serviceFromFacts(facts('bare-debian12.txt'), 'wg0'));
    assert.equal(bare.status, 'fail');
    assert.equal(bare.message, 'wg-quick@wg0 is inactive');
    const stopped = checklist('checklist-interface-missing.txt');
    assert.equal(judgeService({ iface: 'wg0' }, { service: stopped.service, interfacePresent: stopped.iface.exists }).status, 'fail');
  });

  it('warns on active but disabled, and on no systemd with the interface up', () => {
    const disabled = judgeService(
      { iface: 'wg0' },
      { service: { systemd: true, active: 'active', enabled: 'disabled' }, interfacePresent: true },
    );
    assert.equal(disabled.status, 'warn');
    assert.match(disabled.message, /reboot/);
    assert.equal(judgeService({ iface: 'wg0' }, { service: { systemd: false }, interfacePresent: true }).status, 'warn');
    assert.equal(judgeService({ iface: 'wg0' }, { service: { systemd: false }, interfacePresent: false }).status, 'fail');
  });
});

describe('judgeInterface', () => {
  it('passes a running interface with the expected key, fails a missing one or another key', () => {
    const f = facts('converged-wk-1.txt');
    const ok = judgeInterface({ iface: 'wg0', publicKey: f.keys.publicKey! }, interfaceFromFacts(f, 'wg0'));
    assert.equal(ok.status, 'pass');
    assert.match(ok.message, /ifindex \d+/);
    assert.equal(judgeInterface({ iface: 'wg0', publicKey: wk1Peers()[0]!.publicKey }, interfaceFromFacts(f, 'wg0')).status, 'fail');
    assert.equal(judgeInterface({ iface: 'wg0' }, interfaceFromFacts(facts('bare-debian12.txt'), 'wg0')).message, 'wg0 does not exist');
  });

  it('fails an interface that runs without a key', () => {
    const f = facts('converged-wk-1.txt');
    const keyless = judgeInterface(
      { iface: 'wg0', publicKey: f.keys.publicKey! },
      { ...interfaceFromFacts(f, 'wg0'), publicKey: undefined },
    );
    assert.equal(keyless.status, 'fail');
    assert.match(keyless.message, /without a private key/);
  });

  it('reads verify checklists (ip -j addr)', () => {
    assert.equal(judgeInterface({ iface: 'wg0' }, interfaceFromAddr(checklist('checklist-healthy.txt').iface, 'wg0')).status, 'pass');
    const gone = judgeInterface({ iface: 'wg0' }, interfaceFromAddr(checklist('checklist-interface-missing.txt').iface, 'wg0'));
    assert.deepEqual([gone.status, gone.evidence], ['fail', ['ip addr: Device "wg0" does not exist.']]);
  });
});

describe('judgeRpFilter', () => {
  it('judges the effective value max(all, iface)', () => {
    assert.equal(judgeRpFilter({ iface: 'wg0', mode: 2 }, checklist('checklist-healthy.txt').rpFilter).status, 'pass');
    const strict = judgeRpFilter({ iface: 'wg0', mode: 2 }, checklist('checklist-route-missing-rp-strict.txt').rpFilter);
    assert.equal(strict.status, 'fail');
    assert.match(strict.message, /strict \(1\).*loose \(2\)/);
    assert.equal(judgeRpFilter({ iface: 'wg0', mode: 2 }, { all: 0, iface: 0, effective: 0 }).status, 'warn');
    assert.equal(judgeRpFilter({ iface: 'wg0', mode: 2 }, {}).status, 'warn');
  });

  it("up's gate: all and default must be the mode too; before the interface exists they are all there is", () => {
    const gate = { iface: 'wg0', mode: 2, requireAllAndDefault: true };
    assert.equal(judgeRpFilter(gate, rpFilterFromFacts(facts('converged-wk-1.txt'))).status, 'pass');
    const bare = judgeRpFilter(gate, rpFilterFromFacts(facts('bare-debian12.txt')));
    assert.deepEqual([bare.status, bare.message], ['fail', 'rp_filter is all=0 default=0, the design wants 2']);
    assert.equal(judgeRpFilter(gate, { all: 2, default: 2 }).status, 'pass');
  });
});

describe('routes', () => {
  it('ip route show prints host routes without /32: a /32 is covered by its bare address', () => {
    assert.ok(routeCovers(['172.27.15.12 scope link'], '172.27.15.12/32'));
    assert.ok(routeCovers(['10.9.0.0/24'], '10.9.0.0/24'));
    assert.ok(!routeCovers(['172.27.15.12'], '172.27.15.13/32'));
  });

  it('judgeOverlayRoutes: all peers of the converged node pass; a node without routes fails naming each', () => {
    const peers = wk1Peers();
    assert.equal(judgeOverlayRoutes({ iface: 'wg0', peers }, facts('converged-wk-1.txt')).status, 'pass');
    const none = judgeOverlayRoutes({ iface: 'wg0', peers }, facts('bare-debian12.txt'));
    assert.equal(none.status, 'fail');
    for (const p of peers) assert.ok(none.message.includes(p.allowedIps[0]!));
    const cl = checklist('checklist-route-missing-rp-strict.txt');
    const one = judgeOverlayRoutes(
      {
        iface: 'wg0',
        peers: [
          { name: 'wk-1', allowedIps: ['172.27.15.11/32'] },
          { name: 'wk-2', allowedIps: ['172.27.15.13/32'] },
        ],
      },
      cl,
    );
    assert.equal(one.message, 'missing routes via wg0: 172.27.15.11/32 (wk-1)');
  });

  it('judgePeerRoute: the route lookup shows where traffic goes instead', () => {
    const cl = checklist('checklist-route-missing-rp-strict.txt');
    const j = judgePeerRoute({ iface: 'wg0', peer: 'wk-1', ip: '172.27.15.11' }, { lookup: cl.routes[0]! });
    assert.equal(j.status, 'fail');
    assert.match(j.message, /routed via eth0 192\.168\.15\.1, not wg0/);
    assert.equal(judgePeerRoute({ iface: 'wg0', peer: 'wk-2', ip: '172.27.15.13' }, { lookup: cl.routes[1]! }).status, 'pass');
    assert.equal(
      judgePeerRoute({ iface: 'wg0', peer: 'wk-1', ip: '172.27.15.11' }, { interfaceRoutes: cl.interfaceRoutes }).status,
      'fail',
    );
  });
});

describe('handshakes', () => {
  it('fresh handshakes of the converged node pass, against the node clock', () => {
    const f = facts('converged-wk-1.txt');
    assert.equal(judgeHandshakesRecent(wk1Peers(), { peers: f.peers, now: f.now! }).status, 'pass');
  });

  it('a handshake older than REJECT_AFTER_TIME is no live session: warn per peer, fail for the gate', () => {
    const f = facts('converged-wk-1.txt');
    const peers = wk1Peers();
    const later = f.peers[0]!.latestHandshake! + REJECT_AFTER_TIME_S + 1;
    assert.equal(judgeHandshake(peers[0]!, { peers: f.peers, now: later - 2 }).status, 'pass');
    const old = judgeHandshake(peers[0]!, { peers: f.peers, now: later });
    assert.equal(old.status, 'warn');
    assert.match(old.message, /over 3 min/);
    const gate = judgeHandshakesRecent(peers, { peers: f.peers, now: later });
    assert.equal(gate.status, 'fail');
    assert.ok(gate.message.includes(peers[0]!.name));
    const stale = f.peers.filter((p) => later - p.latestHandshake! > REJECT_AFTER_TIME_S);
    assert.equal(gate.evidence!.length, stale.length);
  });

  it('a peer that is missing or never shook hands fails', () => {
    const f = facts('converged-wk-1.txt');
    assert.match(judgeHandshake({ name: 'x', publicKey: 'AAAA' }, { peers: f.peers }).message, /not a peer with its key/);
    const never = f.peers.map((p) => ({ ...p, latestHandshake: undefined }));
    const j = judgeHandshake(wk1Peers()[0]!, { peers: never, now: f.now!, afterPing: true });
    assert.deepEqual([j.status, j.message.endsWith('even after the pings')], ['fail', true]);
  });
});
