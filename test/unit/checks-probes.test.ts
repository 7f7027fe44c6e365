import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import {
  checklistScript,
  parseChecklist,
  parsePingOutput,
  pingScript,
  splitSections,
  parsePingSummary,
  dropSecretLines,
} from '../../src/checks/probes.js';
import {
  startCaptureScript,
  stopCaptureScript,
  provokeScript,
  cleanupCaptureScript,
  countPackets,
  parsePacketLine,
} from '../../src/debug/capture.js';
import { FACTS, icmpDropOnIfaceRules, udpDropRules } from '../../src/facts/definitions.js';
import { LEAN_FACTS } from '../../src/facts/lean.js';
import { LEAN_PRE_FACTS, leanChecklistFacts } from '../../src/checks/checklist-lean.js';
import { sectionScript } from '../../src/facts/sections.js';
import { factsProbeScript } from '../../src/facts/node-facts.js';

const fx = (name: string) => readFileSync(new URL(`../fixtures/probes/${name}`, import.meta.url), 'utf8');
const params = { interface: 'wg0', listenPort: 51820, peerIps: ['172.27.15.11', '172.27.15.31'], firewall: true };
const ping = {
  targets: [
    { node: 'wk-1', ip: '172.27.15.11' },
    { node: 'ctb-edge-1', ip: '172.27.15.31' },
  ],
  count: 3,
  intervalSeconds: 0.2,
  deadlineSeconds: 7,
  mtu: 1420,
};

const MS1_KEY = 'ObUeY+NV4KDRkOlLCvG6K40+mwca7Zm6bjtfp3zVG1M=';
const labParams = { interface: 'wg0', listenPort: 51820, peerIps: ['172.27.15.11', '172.27.15.13', '172.27.15.31'], firewall: true };

test('checklist on a converged wireguard-go node with systemd (real capture, lab node ms-1)', () => {
  const c = parseChecklist(fx('checklist-healthy.txt'), labParams);
  assert.deepEqual(c.problems, []);
  assert.equal(c.now, 1795991130);
  assert.equal(c.iface.up, true);
  assert.equal(c.iface.mtu, 1420);
  assert.deepEqual(c.iface.addresses, ['172.27.15.12/32']);
  assert.equal(c.listeners[0]!.port, 51820);
  assert.deepEqual(c.listeners[0]!.processes, ['wireguard-go']);
  assert.equal(c.livePublicKey, MS1_KEY);
  assert.equal(c.filePublicKey, c.livePublicKey);
  assert.equal(c.liveListenPort, 51820);
  assert.equal(c.peers.length, 3);
  assert.equal(c.peers[0]!.persistentKeepalive, 25);
  assert.equal(c.config!.peers.length, 3);
  assert.equal(c.config!.interface!.hasPrivateKey, false);
  assert.match(c.configText!, /^# No PrivateKey here on purpose/m, 'the comment of the rendered file survives the filter');
  assert.match(c.configSha256!, /^[0-9a-f]{64}$/);
  assert.deepEqual(c.interfaceRoutes, ['172.27.15.11', '172.27.15.13', '172.27.15.31']);
  assert.deepEqual(
    c.routes.map((r) => r.dev),
    ['wg0', 'wg0', 'wg0'],
  );
  assert.deepEqual(c.rpFilter, { all: 2, default: 2, iface: 2, effective: 2 });
  assert.deepEqual(c.service, { systemd: true, enabled: 'enabled', active: 'active' });
  assert.deepEqual(c.firewall, []);
});

test('checklist with the service stopped and the interface gone (real capture)', () => {
  const c = parseChecklist(fx('checklist-interface-missing.txt'), labParams);
  assert.equal(c.iface.exists, false);
  assert.match(c.iface.error!, /does not exist/);
  assert.equal(c.wgAvailable, false);
  assert.equal(c.livePublicKey, undefined);
  assert.equal(c.filePublicKey, MS1_KEY);
  assert.deepEqual(c.peers, []);
  assert.deepEqual(c.interfaceRoutes, []);
  assert.equal(c.routes[0]!.dev, 'eth0');
  assert.equal(c.rpFilter.iface, undefined);
  assert.deepEqual(c.service, { systemd: true, enabled: 'enabled', active: 'inactive' });
});

test('checklist: route via the default gateway, rp_filter strict (real capture)', () => {
  const c = parseChecklist(fx('checklist-route-missing-rp-strict.txt'), labParams);
  assert.deepEqual(c.routes[0], { dst: '172.27.15.11', dev: 'eth0', gateway: '192.168.15.1', prefsrc: '192.168.15.2' });
  assert.deepEqual(c.interfaceRoutes, ['172.27.15.13', '172.27.15.31']);
  assert.equal(c.rpFilter.effective, 1);
});

test('checklist: firewall rules (real iptables-save -c and nft list ruleset)', () => {
  const c = parseChecklist(fx('checklist-firewall.txt'), { ...labParams, peerIps: ['172.27.15.12'] });
  assert.ok(c.firewall!.includes('[0:0] -A INPUT -p udp -m udp --dport 51820 -j DROP'));
  assert.ok(c.firewall!.includes('[0:0] -A INPUT -i wg0 -p icmp -j DROP'));
  assert.deepEqual(udpDropRules(c.firewall, 51820).length, 2, 'the iptables rule and its nft twin');
  assert.deepEqual(icmpDropOnIfaceRules(c.firewall, 'wg0').length, 2);
});

test('checklist and facts probe share their fact commands', () => {
  const checklist = checklistScript(labParams);
  const facts = factsProbeScript({ interface: 'wg0', listenPort: 51820 });
  for (const def of [
    FACTS.service,
    FACTS.rpFilter,
    FACTS.interfaceRoutes,
    FACTS.listenPortUsers,
    FACTS.interfacePublicKey,
    FACTS.configMeta,
    FACTS.configText,
    FACTS.peers,
  ]) {
    const block = sectionScript(def.name, def.command({ interface: 'wg0', listenPort: 51820 }));
    // verify's checklist runs the lean command where there is one (src/checks/checklist-lean.ts: same section, same
    // parser, fewer processes), the shared one when asked (captures that compare the two)
    const leanCl = leanChecklistFacts(labParams.peerIps).get(def.name);
    const clBlock = leanCl ? sectionScript(leanCl.name, leanCl.command({ interface: 'wg0', listenPort: 51820 })) : block;
    assert.ok(checklist.includes(clBlock), `checklist runs ${def.name}`);
    assert.ok(checklistScript({ ...labParams, shared: true }).includes(block), `shared checklist runs ${def.name}`);
    if (leanCl) assert.equal(leanCl.parse, def.parse, `${def.name}: the lean checklist section is read by the shared parser`);
    // up's probe runs the lean command of a fact where there is one (src/facts/lean.ts: same section, same parser)
    const lean = Object.values(LEAN_FACTS).find((l) => l.name === def.name);
    const upBlock = lean ? sectionScript(lean.name, lean.command({ interface: 'wg0', listenPort: 51820 })) : block;
    assert.ok(facts.includes(upBlock), `facts probe runs ${def.name}`);
    if (lean) assert.equal(lean.parse, def.parse, `${def.name}: the lean section is read by the shared parser`);
  }
  // up reads its firewall drops from the ruleset fact (issue 10: three execs fewer); verify's checklist keeps it
  const firewall = sectionScript(FACTS.firewall.name, FACTS.firewall.command({ interface: 'wg0', listenPort: 51820 }));
  assert.ok(checklist.includes(firewall));
  assert.ok(!facts.includes(firewall));
  assert.ok(facts.includes(`@@meshctl begin ${FACTS.firewallRuleset.name}'`));
});

test('ping output: healthy peer, dead peer skipped by the MTU probe (real capture)', () => {
  const r = parsePingOutput(fx('ping-one-peer-down.txt'), { ...ping, after: [{ name: 'dump', command: 'x' }] });
  assert.equal(r.complete, true);
  assert.deepEqual(r.ping.get('172.27.15.11')!.rttMs, { min: 0.605, avg: 0.961, max: 1.382 });
  assert.equal(r.ping.get('172.27.15.31')!.received, 0);
  assert.equal(r.ping.get('172.27.15.31')!.transmitted, 35);
  assert.equal(r.mtu.get('172.27.15.11')!.ok, true);
  assert.equal(r.mtu.get('172.27.15.31')!.skipped, true);
  assert.ok(r.after.get('dump')!.body.includes('172.27.15.11/32'));
});

test('ping output: MTU black hole found by binary search (real capture)', () => {
  const r = parsePingOutput(fx('ping-mtu-blackhole.txt'), ping);
  const m = r.mtu.get('172.27.15.11')!;
  assert.equal(m.ok, false);
  assert.equal(m.largest, 1204);
  assert.equal(m.tries[0]!.size, 1392);
  assert.equal(m.tries.length, 11);
});

test('ping summary with errors and unreachable', () => {
  assert.equal(parsePingSummary('ping: connect: Network is unreachable', 2).error, 'ping: connect: Network is unreachable');
  const p = parsePingSummary('5 packets transmitted, 0 received, +5 errors, 100% packet loss, time 4005ms');
  assert.equal(p.errors, 5);
  assert.equal(p.loss, 100);
});

test('sections survive output without a final newline and a cut-short script', () => {
  const s = splitSections('@@meshctl begin a\nx\n@@meshctl end a rc=3\n@@meshctl begin b\npartial');
  assert.equal(s.get('a')!.rc, 3);
  assert.equal(s.get('b')!.rc, undefined);
  assert.equal(s.get('b')!.body, 'partial');
});

test('no probe ever reads a private key', () => {
  const scripts = [
    checklistScript(params),
    checklistScript({ ...params, shared: true }),
    ...Object.values(LEAN_PRE_FACTS).map((d) => d.command({ interface: 'wg0', listenPort: 51820 })),
    pingScript({ ...ping, after: [{ name: 'd', command: 'true' }] }),
    startCaptureScript(51820, 5),
    stopCaptureScript({ node: 'n', pid: 1, base: '/tmp/meshctl-debug-abc123' }),
    cleanupCaptureScript({ node: 'n', pid: 1, base: '/tmp/meshctl-debug-abc123' }),
    provokeScript({
      overlayIp: '172.27.15.12',
      endpoint: { host: '203.0.113.10', port: 51821 },
      marker: 'meshctl-debug-aaaaaa',
      seconds: 5,
      mtu: 1420,
    }),
  ].join('\n');
  // the key file is only tested for size, fed to `wg pubkey` (its public half), named to the on-node filter,
  // which redacts it, and stat'ed for its owner and mode (FACTS.wireguardFiles: stat reads no content)
  const allowedKeyUses = scripts
    .replace(/wg pubkey < \S+\.key\b/g, '')
    .replace(/stat -c '[^'\n]*' -- [^;\n]*/g, '')
    .replace(/keyfile=\S+\.key\b/g, '')
    .replace(/\[ ! -s \S+\.key \]/g, '');
  // a dump is read only through an awk that drops its first (interface) line on the node (issue 10: no tail), or
  // keeps only that line's public key and port (verify's lean pre script: src/checks/checklist-lean.ts)
  assert.doesNotMatch(
    allowedKeyUses,
    /private-key|showconf|\.key\b|wg show \S+ dump(?! \| awk '[^']*NR > 1 \{)(?! 2>\/dev\/null \| awk '[^']*NR == 1 \{ print \$2, \$3; next \})/,
  );
  assert.match(checklistScript(params), /grep -Evi '\^\[\[:space:\]\]\*#\?\[\[:space:\]\]\*\(privatekey\|presharedkey\)/);
  const key = 'ObUeY+NV4KDRkOlLCvG6K40+mwca7Zm6bjtfp3zVG1M=';
  assert.equal(
    dropSecretLines(
      `a\nPrivateKey = x\nPresharedKey=y\n# PrivateKey = ${key}\nPostUp = wg set %i private-key <(echo ${key})\nPostUp = wg set %i private-key /etc/wireguard/%i.key\n# No PrivateKey here on purpose\nb`,
    ),
    'a\nPostUp = wg set %i private-key /etc/wireguard/%i.key\n# No PrivateKey here on purpose\nb',
  );
});

test('fixtures hold no private key lines and no interface dump line', () => {
  for (const f of [
    'checklist-healthy.txt',
    'checklist-interface-missing.txt',
    'checklist-firewall.txt',
    'checklist-route-missing-rp-strict.txt',
    'ping-one-peer-down.txt',
  ]) {
    const text = fx(f);
    assert.doesNotMatch(text, /^\s*#?\s*(private|preshared)-?key\s*=/im);
    for (const line of text.split('\n')) assert.notEqual(line.split('\t').length, 4, `${f}: ${line}`);
  }
});

test('capture counts at the receiver (real tcpdump -r output)', () => {
  const ctx = {
    senderAddresses: ['192.168.15.2'],
    receiverAddresses: ['192.168.15.3'],
    senderOverlay: '172.27.15.12',
    receiverOverlay: '172.27.15.11',
    markerLength: 20,
    iface: 'wg0',
  };
  const healthy = countPackets(fx('capture-receiver-healthy.txt').split('\n'), ctx);
  assert.equal(healthy.markers, 3);
  // a session existed already: no handshake in this capture, pings answered one for one
  assert.equal(healthy.initiationsFromSender, 0);
  assert.equal(healthy.icmpRequestsIn, 7);
  assert.equal(healthy.icmpRepliesOut, 7);
  const noAnswer = countPackets(fx('capture-receiver-no-answer.txt').split('\n'), ctx);
  assert.deepEqual([noAnswer.markers, noAnswer.initiationsFromSender, noAnswer.responsesToSender], [3, 1, 0]);
  assert.deepEqual(parsePacketLine('19:48:11.554119 vfx-b In  IP 192.168.15.2.51820 > 192.168.15.3.51820: UDP, length 128'), {
    iface: 'vfx-b',
    dir: 'In',
    src: '192.168.15.2',
    sport: 51820,
    dst: '192.168.15.3',
    dport: 51820,
    udpLength: 128,
  });
});
