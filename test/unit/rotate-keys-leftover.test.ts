/**
 * Q10 F2 (HIGH): rotate-keys ran a key another user made or could read. Before: (a) rotateReadScript reused any
 * non-empty wg0.key.new that `wg pubkey` accepted as "a pending key of an interrupted rotation" whoever owned it, and
 * the rename kept the planted file's owner on wg0.key; (b) `wg genkey > wg0.key.new.meshctl-tmp` wrote the new key
 * into a planted temp file (no rm first, no noclobber), chmod kept its owner; and rotate-keys judged no file modes.
 *
 * The real scripts (src/steps/keys.ts) run under /bin/sh in a temp directory standing in for /etc/wireguard (every
 * `/etc/wireguard` of the script replaced by it), with a stand-in `wg` first in PATH (genkey, pubkey with the real
 * X25519 public key, set/show of the running key in a file; no interface, no packet sent), and files planted with
 * another owner (`chown 65534`, needs root). The engine's side (which keys count as pending, the preflight's
 * file-modes judgement, the report) over the scripted homelab of ../support/rotate-mesh.ts.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, linkSync, lstatSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { createPrivateKey, createPublicKey, randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { parseRotateRead, rotateReadScript, swapKeyScript } from '../../src/steps/keys.js';
import {
  judgeRotationPreflight,
  pendingKeyCandidates,
  rotateNode,
  rotationPreflight,
  type PreflightRead,
} from '../../src/engine/rotate.js';
import { describeRotation } from '../../src/commands/rotate-keys.js';
import { rotateKeysFake } from '../support/rotate-mesh.js';
import { tempDir } from '../support/temp-dir.js';

const isRoot = process.getuid?.() === 0;
const NOBODY = 65534;

/** WireGuard's public key of a base64 private key (X25519, as `wg pubkey`). */
function publicOf(privateKey: string): string {
  const raw = Buffer.from(privateKey.trim(), 'base64');
  const der = Buffer.concat([Buffer.from('302e020100300506032b656e04220420', 'hex'), raw]);
  const key = createPrivateKey({ key: der, format: 'der', type: 'pkcs8' });
  return createPublicKey(key).export({ format: 'der', type: 'spki' }).subarray(-32).toString('base64');
}

/** A stand-in `wg`: genkey, pubkey (refuses what is not a key), `set IFACE private-key FILE`, `show IFACE public-key`. */
const FAKE_WG = `#!/usr/bin/env node
const c = require('node:crypto');
const fs = require('node:fs');
const [cmd, , what, file] = process.argv.slice(2);
const live = process.env.FAKE_WG_LIVE;
function pub(text) {
  const t = text.trim();
  const raw = Buffer.from(t, 'base64');
  if (!/^[A-Za-z0-9+/]{43}=$/.test(t) || raw.length !== 32) { process.stderr.write('Key is not the correct length or format\\n'); process.exit(1); }
  const der = Buffer.concat([Buffer.from('302e020100300506032b656e04220420', 'hex'), raw]);
  return c.createPublicKey(c.createPrivateKey({ key: der, format: 'der', type: 'pkcs8' })).export({ format: 'der', type: 'spki' }).subarray(-32).toString('base64');
}
if (cmd === 'genkey') process.stdout.write(c.randomBytes(32).toString('base64') + '\\n');
else if (cmd === 'pubkey') process.stdout.write(pub(fs.readFileSync(0, 'utf8')) + '\\n');
else if (cmd === 'set' && what === 'private-key') fs.writeFileSync(live, pub(fs.readFileSync(file, 'utf8')) + '\\n');
else if (cmd === 'show' && what === 'public-key' && fs.existsSync(live)) process.stdout.write(fs.readFileSync(live, 'utf8'));
else if (cmd === 'show' && what === 'peers') process.exit(0);
else process.exit(1);
`;

/** A node's /etc/wireguard in a temp dir: root's 0700, a key (root's 0600) running live; `run` runs a script there. */
function node() {
  const root = tempDir('meshctl-rotate-');
  const dir = join(root, 'wireguard');
  const bin = join(root, 'bin');
  mkdirSync(dir, { mode: 0o700 });
  mkdirSync(bin);
  writeFileSync(join(bin, 'wg'), FAKE_WG, { mode: 0o755 });
  const key = randomBytes(32).toString('base64');
  writeFileSync(join(dir, 'wg0.key'), `${key}\n`, { mode: 0o600 });
  const live = join(root, 'live');
  writeFileSync(live, `${publicOf(key)}\n`);
  const run = (script: string) =>
    spawnSync('/bin/sh', ['-c', script.replaceAll('/etc/wireguard', dir)], {
      encoding: 'utf8',
      env: { ...process.env, PATH: `${bin}:${process.env.PATH}`, FAKE_WG_LIVE: live },
    });
  const stat = (name: string) => {
    const s = lstatSync(join(dir, name));
    return { uid: s.uid, mode: (s.mode & 0o777).toString(8), regular: s.isFile() };
  };
  return { dir, key, current: publicOf(key), run, stat, path: (name: string) => join(dir, name) };
}

/** A valid WireGuard private key another user knows, planted at `path` with `uid` and `mode`. */
function plantKey(path: string, uid: number, mode: number): string {
  const key = randomBytes(32).toString('base64');
  writeFileSync(path, `${key}\n`, { mode });
  chmodSync(path, mode);
  chownSync(path, uid, uid);
  return publicOf(key);
}

describe('rotate-keys: the new key is made only in root-only files, a leftover wg0.key.new used only when meshctl put it on the peers (Q10 F2)', () => {
  it('(a) a planted wg0.key.new of another user (a valid key, 0600): discarded, a fresh root 0600 key made, the output says so', {
    skip: !isRoot && 'needs root (chown)',
  }, () => {
    const n = node();
    const planted = plantKey(n.path('wg0.key.new'), NOBODY, 0o600);
    // even when a peer held its public half, a file not root's is never used
    const r = n.run(rotateReadScript('wg0', { generate: true, pendingKeys: [planted] }));
    assert.equal(r.status, 0, r.stderr);
    const read = parseRotateRead(r.stdout);
    assert.equal(read.reused, false, r.stdout);
    assert.notEqual(read.next, planted, 'the planted key is the new key');
    assert.deepEqual(n.stat('wg0.key.new'), { uid: 0, mode: '600', regular: true });
    assert.equal(read.leftovers?.length, 1, r.stdout);
    assert.equal(read.leftovers![0]!.reason, 'owner-mode');
    assert.equal(read.leftovers![0]!.file.uid, NOBODY);
    assert.ok(!existsSync(n.path('wg0.key.new.meshctl-tmp')));
  });

  it('a root 0600 wg0.key.new is used again only when its public half is a pending key the peers hold, never the current key', () => {
    const n = node();
    const pendingPub = plantKey(n.path('wg0.key.new'), 0, 0o600);
    // held by no peer: no interrupted rotation left it
    let r = n.run(rotateReadScript('wg0', { generate: true, pendingKeys: [] }));
    assert.equal(r.status, 0, r.stderr);
    let read = parseRotateRead(r.stdout);
    assert.equal(read.reused, false);
    assert.notEqual(read.next, pendingPub);
    assert.deepEqual(
      read.leftovers?.map((l) => l.reason),
      ['not-pending'],
    );
    // the key a peer holds (an interrupted rotation's): used again, nothing discarded
    const again = plantKey(n.path('wg0.key.new'), 0, 0o600);
    r = n.run(rotateReadScript('wg0', { generate: true, pendingKeys: [again] }));
    read = parseRotateRead(r.stdout);
    assert.equal(read.reused, true, r.stdout);
    assert.equal(read.next, again);
    assert.equal(read.leftovers, undefined);
    // a copy of the current key (exposed, the reason to rotate) is never the "new" key, even when listed
    writeFileSync(n.path('wg0.key.new'), `${n.key}\n`, { mode: 0o600 });
    r = n.run(rotateReadScript('wg0', { generate: true, pendingKeys: [n.current] }));
    read = parseRotateRead(r.stdout);
    assert.equal(read.reused, false);
    assert.notEqual(read.next, n.current);
    assert.deepEqual(
      read.leftovers?.map((l) => l.reason),
      ['current'],
    );
  });

  it('(b) a planted temp file (another user, 0666): removed, the key made in a new file, never written through it', {
    skip: !isRoot && 'needs root (chown)',
  }, () => {
    const n = node();
    const tmp = n.path('wg0.key.new.meshctl-tmp');
    writeFileSync(tmp, '', { mode: 0o666 });
    chmodSync(tmp, 0o666);
    chownSync(tmp, NOBODY, NOBODY);
    // the planter keeps a second name of its file (a hard link) to read what root writes into it
    const watch = join(n.dir, '..', 'planted-link');
    linkSync(tmp, watch);
    const r = n.run(rotateReadScript('wg0', { generate: true }));
    assert.equal(r.status, 0, r.stderr);
    assert.equal(readFileSync(watch, 'utf8'), '', 'the new private key was written into the planted file');
    assert.deepEqual(n.stat('wg0.key.new'), { uid: 0, mode: '600', regular: true });
    const read = parseRotateRead(r.stdout);
    assert.equal(read.leftovers?.[0]?.file.path, tmp);
  });

  it('a symbolic link planted as wg0.key.new or its temp file: neither followed nor read, removed', () => {
    const n = node();
    const target = join(n.dir, '..', 'elsewhere');
    writeFileSync(target, 'untouched\n', { mode: 0o644 });
    symlinkSync(target, n.path('wg0.key.new'));
    symlinkSync(target, n.path('wg0.key.new.meshctl-tmp'));
    const r = n.run(rotateReadScript('wg0', { generate: true, pendingKeys: [] }));
    assert.equal(r.status, 0, r.stderr);
    assert.equal(readFileSync(target, 'utf8'), 'untouched\n');
    assert.deepEqual(n.stat('wg0.key.new'), { uid: 0, mode: '600', regular: true });
    assert.deepEqual(
      parseRotateRead(r.stdout)
        .leftovers?.map((l) => l.file.type)
        .sort(),
      ['symbolic link', 'symbolic link'],
    );
  });

  it('/etc/wireguard writable by others: no key made in it (exit 1, naming it)', () => {
    const n = node();
    chmodSync(n.dir, 0o777);
    const r = n.run(rotateReadScript('wg0', { generate: true }));
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /is not root's or is writable by group or others \(uid, mode: 0 777\): no key is made in it/);
    assert.ok(!existsSync(n.path('wg0.key.new')) && !existsSync(n.path('wg0.key.new.meshctl-tmp')));
  });

  it("the swap refuses a wg0.key.new that is not root's 0600 (nothing changed), and leaves wg0.key root's 0600", {
    skip: !isRoot && 'needs root (chown)',
  }, () => {
    const n = node();
    plantKey(n.path('wg0.key.new'), NOBODY, 0o600);
    let r = n.run(swapKeyScript('wg0', []));
    assert.notEqual(r.status, 0, r.stdout);
    assert.match(
      r.stderr,
      /wg0\.key\.new is not a regular file of root's with mode 0600 \(uid, mode, type: 65534 600 regular file\): not used; nothing changed/,
    );
    assert.equal(readFileSync(n.path('wg0.key'), 'utf8'), `${n.key}\n`);
    assert.deepEqual(n.stat('wg0.key'), { uid: 0, mode: '600', regular: true });
    // a right one: swapped, the key file root's 0600, the interface runs it
    const pub = plantKey(n.path('wg0.key.new'), 0, 0o600);
    r = n.run(swapKeyScript('wg0', []));
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`^live=${pub.replace(/[+/]/g, '\\$&')}$`, 'm'));
    assert.deepEqual(n.stat('wg0.key'), { uid: 0, mode: '600', regular: true });
    assert.equal(readFileSync(n.path('wg0.pub'), 'utf8'), `${pub}\n`);
  });

  it("the reads print the WireGuard files' owner and mode and the peers' public keys, never a private key", () => {
    const n = node();
    writeFileSync(n.path('wg0.conf'), `[Interface]\nPrivateKey = ${n.key}\n\n[Peer]\npublickey=${n.current}\nAllowedIPs = 10.0.0.2/32\n`, {
      mode: 0o600,
    });
    const r = n.run(rotateReadScript('wg0', { generate: false, listPeers: true }));
    assert.equal(r.status, 0, r.stderr);
    assert.ok(!r.stdout.includes(n.key), 'a private key was printed');
    const read = parseRotateRead(r.stdout);
    assert.deepEqual(read.peerKeys, [n.current]);
    assert.equal(read.confHoldsKey, true);
    assert.deepEqual(
      read.files?.map((f) => [f.path.replace(n.dir, '/etc/wireguard'), f.type, f.mode, f.uid]),
      [
        ['/etc/wireguard', 'directory', '700', 0],
        ['/etc/wireguard/wg0.key', 'regular file', '600', 0],
        ['/etc/wireguard/wg0.conf', 'regular file', '600', 0],
      ],
    );
  });
});

describe('rotate-keys engine: the file-modes judgement first, the peers as the record of a pending key (Q10 F2)', () => {
  const { inventory, names, keys, next, mesh } = rotateKeysFake();
  const pendingOnPeer = randomBytes(32).toString('base64');

  it("the pending candidates: keys the peers hold that are no peer's own key", () => {
    const reads = new Map([
      ['wk-1', { current: keys.get('wk-1')!, reused: false, peerKeys: [keys.get('ms-1')!, keys.get('wk-2')!, pendingOnPeer] }],
      ['wk-2', { current: keys.get('wk-2')!, reused: false, peerKeys: [keys.get('wk-1')!, keys.get('ms-1')!] }],
    ]);
    assert.deepEqual(pendingKeyCandidates(reads), [keys.get('ms-1')!, pendingOnPeer].sort());
  });

  it('the rotated node is given the keys its peers hold and reports a discarded leftover in its line', async () => {
    let generateScript = '';
    const planted = { path: '/etc/wireguard/wg0.key.new', stat: 'regular file|600|65534|nobody|/etc/wireguard/wg0.key.new' };
    const m = mesh({
      overrides: (n) =>
        n === 'ms-1'
          ? [
              {
                match: /wg genkey/,
                reply: (script) => {
                  generateScript = script;
                  m.order.push('ms-1:read+generate');
                  return {
                    stdout: `current=${keys.get(n)}\nlive=${keys.get(n)}\nleftover=owner-mode|${planted.stat}\nreused=no\nnext=${next}\n`,
                  };
                },
              },
            ]
          : [
              {
                match: /^set -e\numask 077\nif \[ ! -s[\s\S]*wg show wg0 peers/,
                reply: () => {
                  m.order.push(`${n}:read`);
                  const held = names.filter((o) => o !== n).map((o) => `peer=${keys.get(o)}`);
                  return {
                    stdout: `current=${keys.get(n)}\nlive=${keys.get(n)}\n${held.join('\n')}\n${n === 'wk-2' ? `peer=${pendingOnPeer}\n` : ''}`,
                  };
                },
              },
            ],
    });
    const report = await rotateNode(m.ctx, inventory.nodes[0]!);
    assert.equal(report.outcome, 'rotated', report.error);
    // the peers were read before the key was made, and it was given their pending keys, not their own
    assert.ok(m.order.indexOf('ms-1:read+generate') > Math.max(...['wk-1', 'wk-2', 'ctb-edge-1'].map((p) => m.order.indexOf(`${p}:read`))));
    assert.match(
      generateScript,
      new RegExp(`for mc_k in ${[keys.get('ms-1')!, pendingOnPeer].sort().join(' ').replace(/[+/]/g, '\\$&')}; do`),
    );
    assert.deepEqual(report.leftoversDiscarded, [
      "/etc/wireguard/wg0.key.new (regular file, mode 0600, owner nobody (uid 65534): not a regular file of root's with mode 0600)",
    ]);
    assert.match(
      describeRotation(report),
      /^ms-1: public key .* -> .*; 3 peers updated; .*\(a leftover file on ms-1 that was not meshctl's pending key was discarded and a new key made: \/etc\/wireguard\/wg0\.key\.new \(regular file, mode 0600, owner nobody/,
    );
  });

  it('a peer whose read fails: the rotated node makes no key at all', async () => {
    const m = mesh({
      overrides: (n) =>
        n === 'wk-1' ? [{ match: /^set -e\numask 077\nif \[ ! -s/, reply: { code: 255, stderr: 'connection closed' } }] : [],
    });
    const report = await rotateNode(m.ctx, inventory.nodes[0]!);
    assert.equal(report.outcome, 'not-rotated');
    assert.ok(!m.order.some((e) => e.includes('generate') || e.includes('discard')), m.order.join(' '));
  });

  const healthy = (n: string): PreflightRead => ({
    current: keys.get(n)!,
    live: keys.get(n)!,
    files: [
      { path: '/etc/wireguard', type: 'directory', mode: '700', uid: 0, owner: 'root' },
      { path: '/etc/wireguard/wg0.key', type: 'regular file', mode: '600', uid: 0, owner: 'root' },
      { path: '/etc/wireguard/wg0.pub', type: 'regular file', mode: '644', uid: 0, owner: 'root' },
      { path: '/etc/wireguard/wg0.conf', type: 'regular file', mode: '600', uid: 0, owner: 'root' },
    ],
  });

  it("the preflight STOPs on a node whose /etc/wireguard others may write, or whose key is not root's, with the baseline's fix", () => {
    const reads = new Map(names.map((n) => [n, healthy(n)]));
    assert.deepEqual(judgeRotationPreflight(inventory, reads, new Set(['wk-2'])), []);
    const wk2 = healthy('wk-2') as { files: { mode: string }[] };
    wk2.files[0]!.mode = '777';
    reads.set('wk-2', wk2 as PreflightRead);
    const ms1 = healthy('ms-1') as { files: { uid: number; owner: string }[] };
    Object.assign(ms1.files[1]!, { uid: NOBODY, owner: 'nobody' });
    reads.set('ms-1', ms1 as PreflightRead);
    const lines = judgeRotationPreflight(inventory, reads, new Set(['wk-2']));
    assert.equal(lines.length, 2, lines.join('\n'));
    assert.match(
      lines.find((l) => l.startsWith('wk-2: '))!,
      /^wk-2: \/etc\/wireguard is writable by group and others \(mode 0777\).*fix the modes as root: chmod 700 \/etc\/wireguard/,
    );
    assert.match(
      lines.find((l) => l.startsWith('ms-1: '))!,
      /^ms-1: \/etc\/wireguard\/wg0\.key is owned by nobody \(uid 65534\), not root.*chown root:root \/etc\/wireguard\/wg0\.key/,
    );
  });

  it("rotationPreflight reads the modes from the nodes (the read script's stat) and sends nothing but reads", async () => {
    const m = mesh({
      overrides: (n) =>
        n === 'wk-2'
          ? [
              {
                match: /stat -c 'wgfile=%F\|%a\|%u\|%U\|%n' -- \/etc\/wireguard \/etc\/wireguard\/wg0\.key/,
                reply: () => {
                  m.order.push('wk-2:read');
                  return {
                    stdout: `current=${keys.get(n)}\nlive=${keys.get(n)}\nwgfile=directory|777|0|root|/etc/wireguard\nwgfile=regular file|600|0|root|/etc/wireguard/wg0.key\n`,
                  };
                },
              },
            ]
          : [],
    });
    const unfit = await rotationPreflight(m.ctx, new Set(['wk-2']));
    assert.equal(unfit.length, 1, unfit.join('\n'));
    assert.match(unfit[0]!, /^wk-2: \/etc\/wireguard is writable by group and others \(mode 0777\)/);
    assert.deepEqual(m.order.sort(), names.map((n) => `${n}:read`).sort());
  });
});
