/**
 * The relay's wg-quick lines and verify's `relay` check (issue 11). The fixtures in test/fixtures/relay/ are the
 * relay fact's real output after the rendered PostUp ran (iptables 1.8.9 nf_tables, nftables 1.0.6) in an empty
 * network namespace; the last test runs the lines themselves in one (root only), as wg-quick does: under `set -e`.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { judgeRelay, RELAY_FACT, type RelayState } from '../../src/checks/relay-check.js';
import { relayHooks } from '../../src/render/relay.js';

const CTX = { interface: 'wg0', listenPort: 51820 };
const parse = (body: string): RelayState => RELAY_FACT.parse({ name: 'relay', body, rc: 0 } as never, CTX);
const fixture = (name: string) => parse(readFileSync(`test/fixtures/relay/${name}.txt`, 'utf8'));
const PAIRS = [{ a: 'b-1', b: 'c-1' }];

describe('the relay check', () => {
  it('passes a relay with forwarding on and the rule in place, iptables or nftables', () => {
    for (const name of ['iptables', 'nft']) {
      const j = judgeRelay('wg0', PAIRS, fixture(name))!;
      assert.equal(j.status, 'pass', `${name}: ${j.message}`);
      assert.equal(j.message, 'relays b-1<->c-1: forwarding on wg0 only, wg0 -> other interfaces dropped');
    }
    assert.equal(fixture('iptables').forwarding, 1);
  });

  it('fails a relay whose drop rule is gone while forwarding is on (relayed nodes could reach its underlay)', () => {
    const state = fixture('iptables');
    const noDrop = { ...state, iptables: state.iptables.filter((l) => !l.endsWith('-j DROP')) };
    const j = judgeRelay('wg0', PAIRS, noDrop)!;
    assert.equal(j.status, 'fail');
    assert.match(
      j.message,
      /rule for wg0 \(accept wg0 -> wg0, drop wg0 -> other interfaces\) is not whole: under an ACCEPT FORWARD policy relayed nodes could reach its underlay, under a DROP one \(ufw, Docker\) the relayed pairs cannot pass \(`meshctl up` sets it back on the running wg0, no restart\)/,
    );
    const noJump = { ...state, iptables: state.iptables.filter((l) => !l.startsWith('-A FORWARD')) };
    assert.equal(judgeRelay('wg0', PAIRS, noJump)!.status, 'fail', 'a chain nothing jumps to drops nothing');
    assert.equal(judgeRelay('wg0', PAIRS, { forwarding: 1, iptables: [], nft: [] })!.status, 'fail');
  });

  it('fails a relay with forwarding off (its relayed pairs cannot pass)', () => {
    const j = judgeRelay('wg0', PAIRS, { ...fixture('nft'), forwarding: 0 })!;
    assert.equal(j.status, 'fail');
    assert.match(j.message, /forwarding is off on wg0: the relayed pairs cannot pass/);
  });

  it('says nothing about a node that relays nothing, but warns about a leftover rule there', () => {
    assert.equal(judgeRelay('wg0', undefined, { forwarding: 0, iptables: [], nft: [] }), undefined);
    assert.equal(judgeRelay('wg0', [], { forwarding: 1, iptables: [], nft: [] }), undefined, "the host's own forwarding is its business");
    const leftover = judgeRelay('wg0', undefined, fixture('iptables'))!;
    assert.equal(leftover.status, 'warn');
    assert.match(leftover.message, /relays no pair, but meshctl's relay rule for wg0 is still there/);
  });
});

const root = process.getuid?.() === 0 && spawnSync('unshare', ['--net', 'true']).status === 0;

describe('the relay lines, run as wg-quick runs them (set -e), in an empty network namespace', {
  skip: root ? false : 'needs root and unshare',
}, () => {
  for (const tool of ['iptables', 'nft']) {
    it(`${tool}: PostUp twice leaves one rule set, PreDown removes it and never fails, also when nothing is there`, () => {
      const hooks = relayHooks('wg0');
      // hide iptables to take the nftables branch
      const postUp = tool === 'nft' ? hooks.postUp.map((l) => l.replace('if command -v iptables', 'if false')) : hooks.postUp;
      const fact = RELAY_FACT.command(CTX);
      const script = [
        'ip link add wg0 type veth peer name wgpeer',
        ...postUp,
        ...postUp,
        'echo @@up',
        fact,
        'echo @@down',
        ...hooks.preDown,
        fact,
        ...hooks.preDown,
        'echo @@end',
      ].join('\n');
      const run = spawnSync('unshare', ['--net', 'bash', '-e', '-c', script], { encoding: 'utf8', timeout: 20_000 });
      assert.equal(run.status, 0, run.stderr);
      const [up, down] = run.stdout.split('@@down\n');
      const upState = parse(up!.split('@@up\n')[1]!);
      assert.equal(judgeRelay('wg0', PAIRS, upState)!.status, 'pass', JSON.stringify(upState));
      assert.equal(upState.iptables.filter((l) => l.startsWith('-A FORWARD')).length, tool === 'iptables' ? 1 : 0);
      assert.deepEqual(parse(down!.split('@@end')[0]!), { forwarding: 0, iptables: [], nft: [] });
    });
  }

  it('the fact runs iptables once (each iptables-nft call loads the whole ruleset) and reads what the two -S calls read', () => {
    const real = spawnSync('sh', ['-c', 'command -v iptables'], { encoding: 'utf8' }).stdout.trim();
    const dir = mkdtempSync(join(tmpdir(), 'meshctl-relay-'));
    try {
      // a counting iptables first on PATH
      writeFileSync(join(dir, 'iptables'), `#!/bin/sh\necho call >> ${dir}/calls\nexec ${real} "$@"\n`, { mode: 0o755 });
      const chain = 'meshctl-fwd-wg0';
      const script = [
        'ip link add wg0 type veth peer name wgpeer',
        ...relayHooks('wg0').postUp,
        // other rules in FORWARD and another chain, which the fact leaves out
        'iptables -w -N other && iptables -w -A other -j RETURN && iptables -w -A FORWARD -o lo -j other',
        `export PATH=${dir}:$PATH`,
        RELAY_FACT.command(CTX),
        `cp ${dir}/calls ${dir}/fact-calls`,
        'echo @@two',
        `{ iptables -w -S ${chain}; iptables -w -S FORWARD | grep -F -e '-j ${chain}'; } | sed 's/^/ipt: /'`,
      ].join('\n');
      const run = spawnSync('unshare', ['--net', 'bash', '-e', '-c', script], { encoding: 'utf8', timeout: 20_000 });
      assert.equal(run.status, 0, run.stderr);
      const [fact, two] = run.stdout.split('@@two\n');
      assert.deepEqual(parse(fact!).iptables, parse(two!).iptables);
      assert.equal(parse(fact!).iptables.length, 4);
      assert.equal(readFileSync(join(dir, 'fact-calls'), 'utf8').trim().split('\n').length, 1, 'one iptables call by the fact');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
