import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { renderReloadDropIn, reloadDropInPath, syncconfKeepingKeyCommand } from '../../src/render/systemd.js';

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

  it('is the same command meshctl runs for a peers-only change', () => {
    assert.equal(execReloadScript(dropIn, 'wg0'), syncconfKeepingKeyCommand('wg0', '/etc/wireguard/wg0.key'));
  });
});
