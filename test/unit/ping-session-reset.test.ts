/**
 * The ping phase's session reset before its second round (src/checks/ping-matrix.ts sessionResets,
 * src/engine/session-reset.ts). Seen in the 32-node bench lab (docs/transport-cost.md, 2026-12-02): pairs whose
 * session carried one direction only failed the first round and answered the second only when the deaf end's own
 * 15 s timer fired. Here, in inventories/homelab.yaml, a scripted mesh whose "deaf" pair answers a second round only
 * when its dialer cleared its session in that round (what a fresh handshake does on a node), a "broken" pair never
 * answers, and every other pair answers at once; then the reset command itself, run by a real shell against stub
 * `wg` and `wg-quick` commands.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadInventory } from '../../src/inventory/load.js';
import { runPingMatrix } from '../../src/engine/ping.js';
import { failedDirectPairs } from '../../src/engine/fallback.js';
import { sessionResetCommand } from '../../src/engine/session-reset.js';
import { RECHECK, runPingRound, sessionResets } from '../../src/checks/ping-matrix.js';
import { firstContactPairs } from '../../src/topology/endpoints.js';
import { desiredMesh, type DesiredNodeConfig } from '../../src/topology/desired.js';
import type { MeshStepInput } from '../../src/engine/types.js';
import { FakeConnection } from '../support/fake-connection.js';

const inventory = loadInventory(new URL('../../inventories/homelab.yaml', import.meta.url).pathname);
const nameOf = new Map(inventory.nodes.map((n) => [n.overlayIp, n.name]));
const pair = (a: string, b: string) => [a, b].sort().join(' ');
const DEAF = pair('ms-1', 'wk-1');
const BROKEN = pair('wk-1', 'wk-2');
const dialerOf = new Map(firstContactPairs(inventory).map((p) => [pair(p.from, p.to), p]));

// public keys as a node reports them (43 base64 characters and '='; never a private key)
const keys = new Map(inventory.nodes.map((n, i) => [n.name, `${String.fromCharCode(66 + i).repeat(42)}A=`]));
const desired = new Map(desiredMesh(inventory, keys).map((d) => [d.node, d]));

const deadlineOf = (script: string) => Number(/\bping -n -q -c \d+ -i [\d.]+ -w (\d+)/.exec(script)?.[1]);
const targetsOf = (script: string) =>
  /^set -- (.*)$/m
    .exec(script)![1]!
    .split(' ')
    .map((ip) => nameOf.get(ip.replaceAll("'", ''))!);
/** whether `script` clears its node's session with `peer` (sessionResetCommand's call for the peer's name and key) */
const clears = (script: string, peer: string) => script.includes(`\nmc_reset ${peer} ${keys.get(peer)!}\n`);

/**
 * A mesh of fake nodes. The deaf pair answers only in a round in which its dialer's script cleared its session with
 * the other end (a fresh handshake then mends it), the broken pair never; every script of a round is recorded
 * before any of them is answered, so an end's answer may depend on the other end's script of the same round.
 */
function mesh(options: { answersFirstContact?: boolean; lost?: boolean } = {}) {
  const connections = new Map<string, FakeConnection>();
  const cleared = (a: string, b: string) => {
    const { from, to } = dialerOf.get(pair(a, b))!;
    const scripts = connections.get(from)!.scripts;
    return scripts.some((s) => clears(s, to));
  };
  const reply = async (self: string, script: string) => {
    await new Promise((resolve) => setImmediate(resolve));
    // the reset's section, as sessionResetCommand's script prints it when every peer was added back
    // (options.lost: none was: each is said to be lost, as when wg addconf fails)
    const resets = [...script.matchAll(/^mc_reset (\S+) /gm)].map((m) =>
      options.lost ? `lost ${m[1]} removed, and wg addconf could not add it back: Configuration parsing error` : `reset ${m[1]}`,
    );
    const out: string[] = resets.length > 0 ? ['@@meshctl begin session-reset', ...resets, '@@meshctl end session-reset rc=0'] : [];
    for (const peer of targetsOf(script)) {
      const key = pair(self, peer);
      // answersFirstContact: the deaf pair's one echo of the first contact is answered (a session that broke after it)
      const firstContact = /\bping -n -q -c 1 /.test(script);
      const answers =
        key !== BROKEN && (key !== DEAF || (cleared(self, peer) && !options.lost) || (!!options.answersFirstContact && firstContact));
      const ip = inventory.nodes.find((n) => n.name === peer)!.overlayIp;
      out.push(
        `@@meshctl begin ping:${ip}`,
        `--- ${ip} ping statistics ---`,
        answers ? '3 packets transmitted, 3 received, 0% packet loss' : '140 packets transmitted, 0 received, 100% packet loss',
        ...(answers ? ['rtt min/avg/max/mdev = 0.400/0.500/0.600/0.050 ms'] : []),
        `@@meshctl end ping:${ip} rc=${answers ? 0 : 1}`,
      );
    }
    if (script.includes('@@meshctl begin now'))
      out.push('@@meshctl begin routes', '@@meshctl end routes rc=0', '@@meshctl begin dump', '@@meshctl end dump rc=0');
    out.push('@@meshctl begin now', '1', '@@meshctl end now rc=0', '@@meshctl begin done', '@@meshctl end done rc=0');
    return { stdout: out.join('\n') };
  };
  for (const n of inventory.nodes)
    connections.set(n.name, new FakeConnection(n.name, [{ match: /ping/, reply: (script) => reply(n.name, script) }]));
  const input = (changedSoFar: boolean): MeshStepInput<'desired'> => ({
    inventory,
    nodes: inventory.nodes.map((node) => ({ node, connection: connections.get(node.name)!, values: { desired: desired.get(node.name)! } })),
    changedSoFar,
    signal: new AbortController().signal,
  });
  return { connections, input };
}

describe('the ping phase clears a failed pair’s session at its dialer before the second round', () => {
  it('after a change: a pair whose first contact got no answer is reset before the round and passes it', async () => {
    const { connections, input } = mesh();
    const out = await runPingMatrix(input(true));
    const cells = out.matrix!.cells;
    assert.equal(cells['ms-1']!['wk-1']!.ok, true, 'ms-1 -> wk-1 answered after the reset');
    assert.equal(cells['wk-1']!['ms-1']!.ok, true, 'wk-1 -> ms-1 too');
    // the reset does not make a pair that really fails pass
    assert.equal(cells['wk-1']!['wk-2']!.ok, false);
    assert.equal(cells['wk-2']!['wk-1']!.ok, false);
    assert.deepEqual(failedDirectPairs(inventory, out.matrix!), [BROKEN]);
    // both pairs got no answer at their first contact: both reset before the round; only the broken one pinged again
    assert.deepEqual(out.matrix!.reset, [DEAF, BROKEN].sort());
    assert.deepEqual(out.matrix!.recheck?.pairs, [BROKEN]);
    assert.deepEqual(out.matrix!.recheck?.reset, [BROKEN]);
    const withReset = (node: string, peer: string) => connections.get(node)!.scripts.filter((s) => clears(s, peer));
    const deaf = dialerOf.get(DEAF)!;
    assert.deepEqual(withReset(deaf.from, deaf.to).map(deadlineOf), [7], `${deaf.from} clears its session in the round`);
    assert.equal(withReset(deaf.to, deaf.from).length, 0, `${deaf.to} keeps its session with ${deaf.from}`);
    const broken = dialerOf.get(BROKEN)!;
    assert.deepEqual(withReset(broken.from, broken.to).map(deadlineOf), [7, RECHECK.deadlineSeconds], 'in the round and the second');
    assert.equal(withReset(broken.to, broken.from).length, 0);
    // a node in no failed pair clears nothing
    assert.ok(connections.get('ctb-edge-1')!.scripts.every((s) => !s.includes('remove')));
  });

  it('a pair that answered its first contact and failed the round is reset before the second round', async () => {
    const { connections, input } = mesh({ answersFirstContact: true });
    const out = await runPingMatrix(input(true));
    const cells = out.matrix!.cells;
    assert.equal(cells['ms-1']!['wk-1']!.ok, true, 'answered the second round');
    assert.equal(cells['wk-1']!['ms-1']!.ok, true);
    assert.deepEqual(out.matrix!.reset, [BROKEN], 'the deaf pair answered its first contact: not reset then');
    assert.deepEqual(out.matrix!.recheck?.pairs, [DEAF, BROKEN].sort());
    assert.deepEqual(out.matrix!.recheck?.answered, [DEAF]);
    assert.deepEqual(out.matrix!.recheck?.reset, [DEAF, BROKEN].sort());
    const deaf = dialerOf.get(DEAF)!;
    const withReset = (node: string, peer: string) => connections.get(node)!.scripts.filter((s) => clears(s, peer));
    assert.deepEqual(withReset(deaf.from, deaf.to).map(deadlineOf), [RECHECK.deadlineSeconds], 'in the second round only');
    assert.equal(withReset(deaf.to, deaf.from).length, 0);
  });

  it('a reset that lost its peer is listed as not reset, and the failed cell says why (RV4 F1.1, F1.2)', async () => {
    const { input } = mesh({ lost: true });
    const out = await runPingMatrix(input(true));
    const deaf = dialerOf.get(DEAF)!;
    assert.equal(out.matrix!.reset, undefined, 'no pair is listed as reset');
    assert.equal(out.matrix!.recheck?.reset, undefined);
    const lost = `${deaf.from} -> ${deaf.to}: removed, and wg addconf could not add it back: Configuration parsing error`;
    assert.ok(out.matrix!.notReset?.includes(lost), JSON.stringify(out.matrix!.notReset));
    const cell = out.matrix!.cells[deaf.from]![deaf.to]!;
    assert.equal(cell.ok, false);
    assert.match(cell.error ?? '', /its session reset removed, and wg addconf could not add it back/);
  });

  it('a run that changed nothing clears nothing (one round, as before)', async () => {
    const { connections, input } = mesh();
    const out = await runPingMatrix(input(false));
    assert.equal(out.matrix!.cells['ms-1']!['wk-1']!.ok, false);
    for (const c of connections.values()) {
      assert.equal(c.scripts.length, 1, c.node);
      assert.ok(!c.scripts[0]!.includes('remove'), c.node);
    }
  });

  it('a round without resetSessions (verify, or a caller that does not ask) only pings again', async () => {
    const { connections } = mesh();
    const targets = inventory.nodes.map((n) => ({ node: n.name, ip: n.overlayIp }));
    const round = await runPingRound(connections, targets, { recheck: true, firstContact: firstContactPairs(inventory) });
    assert.equal(round.matrix.recheck?.reset, undefined);
    assert.equal(round.matrix.reset, undefined);
    assert.equal(round.matrix.cells['ms-1']!['wk-1']!.ok, false);
    for (const c of connections.values())
      assert.ok(
        c.scripts.every((s) => !s.includes('remove')),
        c.node,
      );
  });
});

describe('sessionResets: which end clears which sessions', () => {
  const contact = [
    { from: 'a', to: 'b' },
    { from: 'c', to: 'a' },
  ];
  it('the dialer of each failed pair, once per pair whichever end saw it fail', () => {
    const resets = sessionResets(
      [
        ['a', 'b'],
        ['b', 'a'],
        ['a', 'c'],
      ],
      contact,
      () => true,
    );
    assert.deepEqual(
      [...resets].map(([node, peers]) => [node, [...peers]]),
      [
        ['a', ['b']],
        ['c', ['a']],
      ],
    );
  });
  it('no reset for a pair without a dialer, or whose dialer pings nothing in the second round', () => {
    assert.equal(sessionResets([['b', 'd']], contact, () => true).size, 0);
    assert.equal(sessionResets([['a', 'c']], contact, (node) => node !== 'c').size, 0);
  });
});

describe('sessionResetCommand, run by a shell against stub wg and wg-quick', () => {
  const base: DesiredNodeConfig = desired.get('wk-1')!;
  // the first peer dialled by a DNS name in the file (inventory endpoint.host), the second by address
  const NAMED = 'b.dyn.invalid:51820';
  const config: DesiredNodeConfig = {
    ...base,
    peers: base.peers.map((p, i) => (i === 0 ? { ...p, endpoint: NAMED } : i === 1 ? { ...p, endpoint: '192.0.2.3:51820' } : p)),
  };
  const [gone, kept, other] = [config.peers[0]!, config.peers[1]!, config.peers[2]!];

  /**
   * Runs the command with stubs first in PATH. The stub `wg` keeps the live peers (key, endpoint) in a file; its
   * `addconf` is all-or-nothing as wg(8)'s: it fails before setting anything when an Endpoint of its input is not
   * numeric (wg resolves names first: "Name or service not known", here with no resolver) or with `addconf: 'fails'`.
   * Returns the log, every addconf's input, the live peers after and the reset's section as printed.
   */
  function runWith(options: { strip: 'ok' | 'fails'; addconf?: 'fails'; live: Record<string, string> }, peers = [gone.name]) {
    const dir = mkdtempSync(join(tmpdir(), 'meshctl-reset-'));
    try {
      writeFileSync(
        join(dir, 'live'),
        Object.entries(options.live)
          .map(([k, ep]) => `${k}\t${ep}\n`)
          .join(''),
      );
      writeFileSync(join(dir, 'log'), '');
      writeFileSync(join(dir, 'key'), 'stub-private-key-of-the-test\n');
      const file = [
        '[Interface]',
        `ListenPort = ${config.listenPort}`,
        ...config.peers.flatMap((p) => [
          '[Peer]',
          `PublicKey = ${p.publicKey}`,
          `AllowedIPs = ${p.allowedIps.join(', ')}`,
          ...(p.endpoint ? [`Endpoint = ${p.endpoint}`] : []),
        ]),
      ].join('\n');
      writeFileSync(join(dir, 'file'), `${file}\n`);
      writeFileSync(
        join(dir, 'wg-quick'),
        `#!/bin/sh\necho "wg-quick $*" >> ${dir}/log\n${options.strip === 'ok' ? `cat ${dir}/file` : 'echo "wg-quick: no such file" >&2; exit 1'}\n`,
      );
      writeFileSync(
        join(dir, 'wg'),
        [
          '#!/bin/sh',
          `D=${dir}`,
          'echo "wg $*" >> $D/log',
          'case "$1 $3" in',
          '  "show endpoints") cat $D/live ;;',
          '  "set peer") grep -v "^$4\t" $D/live > $D/live.new; mv $D/live.new $D/live ;;',
          '  "addconf /dev/stdin")',
          '    cat > $D/in; cat $D/in >> $D/addconf; echo "--" >> $D/addconf',
          `    ${options.addconf === 'fails' ? 'echo "Unable to modify interface: Protocol not supported" >&2; exit 1' : ':'}`,
          `    h=$(sed -n 's/^Endpoint = //p' $D/in | grep -v '^[0-9.]*:[0-9]*$')`,
          '    if [ -n "$h" ]; then echo "Name or service not known: \\`$h\'" >&2; echo "Configuration parsing error" >&2; exit 1; fi',
          `    k=$(sed -n 's/^PublicKey = //p' $D/in); e=$(sed -n 's/^Endpoint = //p' $D/in)`,
          '    printf \'%s\\t%s\\n\' "$k" "${e:-(none)}" >> $D/live ;;',
          'esac',
        ].join('\n'),
      );
      chmodSync(join(dir, 'wg-quick'), 0o755);
      chmodSync(join(dir, 'wg'), 0o755);
      const reset = sessionResetCommand({ ...config, privateKeyPath: join(dir, 'key') }, peers)!;
      const stdout = execFileSync('sh', ['-c', reset.command], {
        env: { ...process.env, PATH: `${dir}:${process.env.PATH}` },
        encoding: 'utf8',
      });
      const read = (name: string) => {
        try {
          return readFileSync(join(dir, name), 'utf8');
        } catch {
          return undefined;
        }
      };
      const live = Object.fromEntries(
        read('live')!
          .trim()
          .split('\n')
          .filter(Boolean)
          .map((l) => l.split('\t') as [string, string]),
      );
      const body = /@@meshctl begin session-reset\n([\s\S]*?)\n?@@meshctl end session-reset rc=0/.exec(stdout)?.[1];
      return { log: read('log')!.trim().split('\n'), addconf: read('addconf'), live, body, outcome: reset.read(body), reset };
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }

  it('a peer whose file Endpoint is a name that does not resolve is added back, and so is every other peer of the reset (RV4 F1.1)', () => {
    // gone roamed to another address than the file's; kept has no live endpoint (never heard from)
    const live = { [gone.publicKey]: '198.51.100.7:40000', [kept.publicKey]: '(none)', [other.publicKey]: '192.0.2.9:51820' };
    const { live: after, addconf, outcome } = runWith({ strip: 'ok', live }, [gone.name, kept.name]);
    assert.deepEqual(after, live, 'every peer is live again, with the endpoint it had (the roamed one too, F1.3)');
    assert.ok(!addconf!.includes(NAMED), 'no name is given to wg addconf');
    assert.ok(!addconf!.includes('[Interface]'), 'no [Interface] section: the private key is left alone');
    assert.equal(addconf!.split('--').length - 1, 2, 'one wg addconf per peer');
    assert.deepEqual(outcome, { reset: [gone.name, kept.name], notReset: [] });
  });

  it('removes the peer, then adds its own [Peer] block back, and touches no other peer', () => {
    const live = { [gone.publicKey]: '192.0.2.2:51820', [kept.publicKey]: '192.0.2.3:51820' };
    const { log, addconf, live: after } = runWith({ strip: 'ok', live });
    const removed = log.indexOf(`wg set wg0 peer ${gone.publicKey} remove`);
    const added = log.indexOf('wg addconf wg0 /dev/stdin');
    assert.ok(removed >= 0, log.join('\n'));
    assert.ok(added > removed, 'added back after the remove');
    assert.ok(!log.some((l) => l.includes(kept.publicKey)), 'the other peers are not touched');
    const block = ['[Peer]', `PublicKey = ${gone.publicKey}`, `AllowedIPs = ${gone.allowedIps.join(', ')}`, 'Endpoint = 192.0.2.2:51820'];
    assert.equal(addconf, `${block.join('\n')}\n--\n`, 'exactly its block: no [Interface], no other peer');
    assert.deepEqual(after, live);
  });

  it('a peer that cannot be added back is said to be lost, with wg’s message, in the section the rounds read', () => {
    const live = { [gone.publicKey]: '192.0.2.2:51820', [kept.publicKey]: '192.0.2.3:51820' };
    const { outcome, live: after } = runWith({ strip: 'ok', addconf: 'fails', live }, [gone.name, kept.name]);
    assert.deepEqual(outcome.reset, []);
    assert.deepEqual(
      outcome.notReset.map((n) => [n.peer, n.lost]),
      [
        [gone.name, true],
        [kept.name, true],
      ],
    );
    assert.match(outcome.notReset[0]!.why, /could not add it back: Unable to modify interface: Protocol not supported/);
    assert.deepEqual(after, {});
  });

  it('removes nothing when the file cannot be read back, and says nothing was reset', () => {
    const live = { [gone.publicKey]: '192.0.2.2:51820' };
    const { log, addconf, live: after, body, outcome } = runWith({ strip: 'fails', live });
    assert.ok(!log.some((l) => l.includes('remove')), log.join('\n'));
    assert.equal(addconf, undefined);
    assert.deepEqual(after, live);
    assert.equal(body, undefined);
    assert.deepEqual(outcome.reset, []);
    assert.deepEqual(
      outcome.notReset.map((n) => [n.peer, n.lost]),
      [[gone.name, false]],
    );
  });

  it('is nothing for peers the node does not have, and covers only its own peers (RV4 F1.2)', () => {
    assert.equal(sessionResetCommand(config, ['no-such-node']), undefined);
    assert.deepEqual(sessionResetCommand(config, ['no-such-node', kept.name])!.peers, [kept.name]);
  });
});
