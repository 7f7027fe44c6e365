import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  renderReloadDropIn,
  reloadDropInPath,
  syncconfKeepingKeyCommand,
  syncPeersCommand,
  syncPeersStep,
} from '../../src/render/systemd.js';

/** What systemd hands to /bin/bash -c: the ExecReload's single-quoted word, with `$$` and `%i` expanded. */
function execReloadScript(dropIn: string, instance: string): string {
  const line = dropIn
    .split('\n')
    .filter((l) => l.startsWith('ExecReload='))
    .at(-1)!;
  const quoted = line.match(/^ExecReload=\/bin\/bash -c '(.*)'$/)![1]!;
  return quoted.replaceAll('%i', instance).replaceAll('$$', '$');
}

/**
 * Runs a script with stand-ins for wg-quick and wg on PATH: `wg-quick strip` prints a peers-only file (or fails),
 * `wg syncconf` records what it was given. This checks the shell plumbing; the lab test runs the real tools.
 */
function runWithStandIns(script: string, { stripFails = false } = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'meshctl-dropin-'));
  try {
    const strip = stripFails
      ? 'exit 1'
      : 'printf "[Interface]\\nListenPort = 51820\\n\\n[Peer]\\nPublicKey = PEER\\nAllowedIPs = 172.27.15.31/32\\n"';
    writeFileSync(join(dir, 'wg-quick'), `#!/bin/sh\n[ "$1" = strip ] && [ "$2" = wg0 ] || exit 9\n${strip}\n`);
    writeFileSync(join(dir, 'wg'), `#!/bin/sh\n[ "$1 $2 $3" = "syncconf wg0 /dev/stdin" ] || exit 9\ncat > ${dir}/synced\n`);
    writeFileSync(join(dir, 'wg0.key'), 'PRIVATE-KEY-STAND-IN=\n');
    for (const tool of ['wg-quick', 'wg']) chmodSync(join(dir, tool), 0o755);
    const result = spawnSync('/bin/bash', ['-c', script.replaceAll('/etc/wireguard/wg0.key', join(dir, 'wg0.key'))], {
      env: { PATH: `${dir}:/usr/bin:/bin` },
      encoding: 'utf8',
    });
    const synced = existsSync(join(dir, 'synced')) ? readFileSync(join(dir, 'synced'), 'utf8') : undefined;
    return { code: result.status, synced };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe('the reload drop-in (a reload keeps the private key)', () => {
  const dropIn = renderReloadDropIn('wg0');

  it("clears the stock ExecReload, then sets its own; lives in the unit's drop-in directory", () => {
    assert.equal(reloadDropInPath('wg0'), '/etc/systemd/system/wg-quick@wg0.service.d/meshctl-keep-key.conf');
    const lines = dropIn.split('\n');
    assert.equal(lines.filter((l) => l === '[Service]').length, 1);
    const reloads = lines.filter((l) => l.startsWith('ExecReload='));
    assert.equal(reloads.length, 2);
    assert.equal(reloads[0], 'ExecReload=');
    assert.match(dropIn, /^# Managed by meshctl/);
  });

  it('escapes for systemd: every shell $ doubled, no % but the %i specifier', () => {
    const command = dropIn.split('\n').at(-2)!;
    assert.doesNotMatch(command.replaceAll('$$', ''), /\$/);
    assert.doesNotMatch(command.replaceAll('%i', ''), /%/);
  });

  it('feeds wg syncconf the stripped file plus the key from the key file', () => {
    const { code, synced } = runWithStandIns(execReloadScript(dropIn, 'wg0'));
    assert.equal(code, 0);
    assert.equal(
      synced,
      '[Interface]\nListenPort = 51820\n\n[Peer]\nPublicKey = PEER\nAllowedIPs = 172.27.15.31/32\n[Interface]\nPrivateKey = PRIVATE-KEY-STAND-IN=\n',
    );
  });

  it('never calls syncconf when wg-quick strip fails (syncconf given only the key would drop every peer)', () => {
    const { code, synced } = runWithStandIns(execReloadScript(dropIn, 'wg0'), { stripFails: true });
    assert.notEqual(code, 0);
    assert.equal(synced, undefined);
  });

  it('is the plain key-keeping syncconf (meshctl itself syncs with syncPeersCommand, whose awk and sed would not fit systemd quoting)', () => {
    assert.equal(execReloadScript(dropIn, 'wg0'), syncconfKeepingKeyCommand('wg0', '/etc/wireguard/wg0.key'));
  });
});

const FIXTURES = join(import.meta.dirname, '../fixtures/wg-sync');
/** ms-1 of the homelab lab, converged: `wg-quick strip wg0` and the peer lines of `wg show wg0 dump` */
const STRIP = readFileSync(join(FIXTURES, 'ms-1.strip.conf'), 'utf8');
const DUMP = readFileSync(join(FIXTURES, 'ms-1.dump-peers.txt'), 'utf8');
const KEYS = {
  edge: '3x2QNxybmsS25IxbeN+bccoz+M+rs6WHNNO72qXahD0=',
  wk1: 'DTrKKDdYwRfrZJiMMaX6omSvpZJHP5iMlhCg5lSJuBE=',
  wk2: '901qmpfIAjItuz6onSIxV/zwyTG4tR7SQ6ElkLXv+SU=',
};
const HEADER = STRIP.slice(0, STRIP.indexOf('ListenPort'));

/**
 * Runs syncPeersCommand with stand-ins for wg-quick and wg on PATH, the node's awk and sed: `wg-quick strip` prints
 * `strip`; `wg show wg0 listen-port` prints `port`; `wg show wg0 dump` an interface line, then `dump`; `wg addconf`
 * records its input, `wg set` its arguments. The lab (membership.test.ts) runs the real tools.
 */
function runSync({
  strip = STRIP,
  dump = DUMP,
  port = '51820',
  showFails = false,
  stripFails = false,
  addconfFails = false,
  removeFails = false,
  step = false,
} = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'meshctl-sync-'));
  try {
    writeFileSync(join(dir, 'strip'), strip);
    writeFileSync(join(dir, 'dump'), `PRIVATE-STAND-IN=\tPUBLIC=\t${port}\toff\n${dump}`);
    writeFileSync(join(dir, 'wg-quick'), `#!/bin/sh\n[ "$1 $2" = "strip wg0" ] || exit 9\n${stripFails ? 'exit 1' : `cat ${dir}/strip`}\n`);
    const wg = [
      '#!/bin/sh',
      `case "$*" in`,
      `"show wg0 listen-port") ${showFails ? 'echo "Unable to access interface" >&2; exit 1' : `echo ${port}`} ;;`,
      `"show wg0 dump") cat ${dir}/dump ;;`,
      `"addconf wg0 /dev/stdin") cat > ${dir}/added${addconfFails ? '; echo "Unable to modify interface" >&2; exit 1' : ''} ;;`,
      `"set wg0 "*) echo "$*" >> ${dir}/set${removeFails ? '; exit 1' : ''} ;;`,
      '*) exit 9 ;;',
      'esac',
    ];
    writeFileSync(join(dir, 'wg'), `${wg.join('\n')}\n`);
    writeFileSync(join(dir, 'wg0.key'), 'PRIVATE-KEY-STAND-IN=\n');
    for (const tool of ['wg-quick', 'wg']) chmodSync(join(dir, tool), 0o755);
    // step: as the enable step runs it, in a `set -e` script that goes on after it
    const sync = step
      ? `set -e\n${syncPeersStep('wg0', '/etc/wireguard/wg0.key')}\necho went-on`
      : syncPeersCommand('wg0', '/etc/wireguard/wg0.key');
    const script = sync.replaceAll('/etc/wireguard/wg0.key', join(dir, 'wg0.key'));
    const result = spawnSync('/bin/sh', ['-c', script], { env: { PATH: `${dir}:/usr/bin:/bin` }, encoding: 'utf8' });
    const read = (f: string) => (existsSync(join(dir, f)) ? readFileSync(join(dir, f), 'utf8') : undefined);
    // blank lines mean nothing to wg(8); the shell's $(...) drops trailing ones
    const added = read('added')
      ?.split('\n')
      .filter((l) => l.trim() !== '');
    return { code: result.status, stdout: result.stdout, stderr: result.stderr, added, set: read('set') };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
const withKey = (body: string) => `${body}[Interface]\nPrivateKey = PRIVATE-KEY-STAND-IN=\n`.split('\n').filter((l) => l.trim() !== '');
/** the [Peer] block of `name` as the fixture has it (comment line to the blank line after it) */
const blockOf = (name: string) => {
  const start = STRIP.indexOf(`[Peer]\n# ${name}\n`);
  const end = STRIP.indexOf('\n\n', start);
  return STRIP.slice(start, end === -1 ? undefined : end + 1);
};
const dumpWithout = (key: string) =>
  DUMP.split('\n')
    .filter((l) => !l.startsWith(key))
    .join('\n');
const dumpEdit = (key: string, field: number, value: string) =>
  DUMP.split('\n')
    .map((l) =>
      l.startsWith(key)
        ? l
            .split('\t')
            .map((f, i) => (i === field ? value : f))
            .join('\t')
        : l,
    )
    .join('\n');

describe("meshctl's peer sync (syncPeersCommand): what wg syncconf would change, and nothing the interface already runs", () => {
  it('a converged interface gets no peer, no ListenPort (wireguard-go would re-open its socket) and no removal', () => {
    const r = runSync();
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(r.added, withKey(HEADER));
    assert.equal(r.set, undefined);
  });

  it('a peer missing live is added, and only it: the others are not sent (no replace of their AllowedIPs)', () => {
    const r = runSync({ dump: dumpWithout(KEYS.wk2) });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(r.added, withKey(`${HEADER}\n${blockOf('wk-2')}`));
    assert.equal(r.set, undefined);
  });

  it('a live peer the file lacks is removed with wg set ... remove, after the additions', () => {
    const stray = 'kTQScJDzwi8gde48LOsco+z2HxDoWbBkyC78HXijHwk=';
    const r = runSync({ dump: `${DUMP}${stray}\t(none)\t(none)\t10.66.0.0/16\t0\t0\t0\toff\n` });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(r.added, withKey(HEADER));
    assert.equal(r.set, `set wg0 peer ${stray} remove\n`);
  });

  it('a peer whose AllowedIPs, endpoint or keepalive differ live is sent whole; a keepalive the file lacks is switched off', () => {
    assert.deepEqual(
      runSync({ dump: dumpEdit(KEYS.wk1, 3, '172.27.15.11/32,10.9.9.0/24') }).added,
      withKey(`${HEADER}\n${blockOf('wk-1')}`),
    );
    assert.deepEqual(runSync({ dump: dumpEdit(KEYS.wk1, 3, '(none)') }).added, withKey(`${HEADER}\n${blockOf('wk-1')}`));
    assert.deepEqual(
      runSync({ dump: dumpEdit(KEYS.edge, 2, '198.51.100.99:51820') }).added,
      withKey(`${HEADER}\n${blockOf('ctb-edge-1')}\n`),
    );
    assert.deepEqual(runSync({ dump: dumpEdit(KEYS.edge, 7, '7') }).added, withKey(`${HEADER}\n${blockOf('ctb-edge-1')}\n`));
    assert.deepEqual(
      runSync({ dump: dumpEdit(KEYS.wk1, 7, '7') }).added,
      withKey(`${HEADER}\n${blockOf('wk-1')}PersistentKeepalive = off\n`),
    );
  });

  it('the same CIDRs in another order or spacing are the same; a live preshared key the file lacks is zeroed', () => {
    const strip = STRIP.replace('AllowedIPs = 172.27.15.11/32', 'AllowedIPs = 10.9.9.0/24 ,172.27.15.11/32');
    assert.deepEqual(runSync({ strip, dump: dumpEdit(KEYS.wk1, 3, '172.27.15.11/32,10.9.9.0/24') }).added, withKey(HEADER));
    const psk = runSync({ dump: dumpEdit(KEYS.wk1, 1, '(hidden)') }).added!;
    assert.deepEqual(psk, withKey(`${HEADER}${blockOf('wk-1')}PresharedKey = ${'A'.repeat(43)}=\n`));
  });

  it('a listen port that differs live is sent', () => {
    assert.deepEqual(runSync({ port: '51821' }).added, withKey(STRIP.slice(0, STRIP.indexOf('[Peer]'))));
  });

  it('as a step of a set -e script, a failed sync stops the script with status 1 and says so; a good one goes on', () => {
    // `set -e` ignores a failure inside an AND-OR list: the enable step went on and reported done (old code)
    const stray = 'kTQScJDzwi8gde48LOsco+z2HxDoWbBkyC78HXijHwk=';
    for (const r of [
      runSync({ step: true, addconfFails: true }),
      runSync({ step: true, showFails: true }),
      runSync({ step: true, strip: '' }),
      runSync({ step: true, removeFails: true, dump: `${DUMP}${stray}\t(none)\t(none)\t10.66.0.0/16\t0\t0\t0\toff\n` }),
    ]) {
      assert.equal(r.code, 1, r.stderr);
      assert.doesNotMatch(r.stdout, /went-on/);
      assert.match(r.stderr, /meshctl: the peer sync of wg0 failed/);
    }
    const good = runSync({ step: true, dump: dumpWithout(KEYS.wk2) });
    assert.equal(good.code, 0, good.stderr);
    assert.match(good.stdout, /went-on/);
    assert.deepEqual(good.added, withKey(`${HEADER}\n${blockOf('wk-2')}`));
    const converged = runSync({ step: true });
    assert.equal(converged.code, 0, converged.stderr);
    assert.match(converged.stdout, /went-on/);
  });

  it('changes nothing when wg-quick strip or wg show fails', () => {
    for (const r of [runSync({ showFails: true }), runSync({ strip: '' }), runSync({ stripFails: true })]) {
      assert.notEqual(r.code, 0);
      assert.equal(r.added, undefined);
      assert.equal(r.set, undefined);
    }
  });
});
