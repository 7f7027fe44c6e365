/**
 * Findings 17 and 33 (a new user's test): a rollback of a cold run left the re-resolve timer the config step had
 * installed (enabled, active, its files in place: a timer for a mesh the node no longer has), and every run's
 * /run/meshctl/revert-RUN directory stayed after its revert. The arm, revert and disarm scripts run here under a real
 * `sh`, with `systemctl` a stub that keeps each unit's enabled/active state in files (and logs whether the timer's
 * unit file existed when it was disabled), `systemd-run`, `ip` and `wg-quick` stubs that only log, and every path
 * the scripts touch (/etc, /usr/local/lib/meshctl, /run/meshctl, /proc/sys, /sys/class/net) moved into a temporary
 * directory: nothing of the host is touched.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, describe, it } from 'node:test';
import { armScript, PENDING_OTHER_EXIT, revertNowScript, settleRollbacks } from '../../src/engine/revert.js';
import { reresolvePaths } from '../../src/remote/wireguard.js';

const RUN = { runId: '0123456789abcdef', deadlineS: 120 };
const TIMER = 'meshctl-reresolve@wg0.timer';
const rr = reresolvePaths('wg0');
const root = mkdtempSync(join(tmpdir(), 'meshctl-revert-rr-'));
after(() => rmSync(root, { recursive: true, force: true }));

const bin = join(root, 'bin');
mkdirSync(bin);
const SYSTEMCTL = `#!/bin/sh
echo "systemctl $*" >> "$STUB_LOG"
S="$STUB_STATE"
q=0
if [ "$1" = is-active ] && [ "$2" = -q ]; then q=1; set -- is-active "$3"; fi
case "$1" in
  is-active) st=$(cat "$S/$2.active" 2>/dev/null || echo inactive); [ $q = 1 ] || echo "$st"; [ "$st" = active ] ;;
  is-enabled) [ -e "$S/$2.enabled" ] || exit 1; cat "$S/$2.enabled"; [ "$(cat "$S/$2.enabled")" = enabled ] ;;
  enable|disable)
    verb=$1; shift; now=0
    while [ "\${1#--}" != "$1" ]; do [ "$1" = --now ] && now=1; shift; done
    if [ "$1" = ${TIMER} ]; then echo "$verb $1 unit-file-$( [ -e "$TIMER_FILE" ] && echo present || echo absent)" >> "$STUB_LOG"; fi
    if [ $verb = enable ]; then echo enabled > "$S/$1.enabled"; [ $now = 1 ] && echo active > "$S/$1.active"; else echo disabled > "$S/$1.enabled"; [ $now = 1 ] && echo inactive > "$S/$1.active"; fi
    true ;;
  stop) echo inactive > "$S/$2.active" ;;
  start|restart) echo active > "$S/$2.active" ;;
  *) true ;;
esac
`;
writeFileSync(join(bin, 'systemctl'), SYSTEMCTL);
for (const name of ['systemd-run', 'ip', 'wg-quick']) writeFileSync(join(bin, name), `#!/bin/sh\necho "${name} $*" >> "$STUB_LOG"\n`);
for (const name of ['systemctl', 'systemd-run', 'ip', 'wg-quick']) chmodSync(join(bin, name), 0o755);

/** A node in a directory: every absolute path the scripts use moved under it. */
function node(name: string) {
  const dir = join(root, name);
  const at = (path: string) =>
    path
      .replaceAll('/run/meshctl/', `${dir}/run/meshctl/`)
      .replaceAll('/usr/local/lib/meshctl', `${dir}/usr/local/lib/meshctl`)
      .replaceAll('/etc/', `${dir}/etc/`)
      .replaceAll('/proc/sys/', `${dir}/proc/sys/`)
      .replaceAll('/sys/class/net/', `${dir}/sys/class/net/`);
  const write = (path: string, text: string) => {
    mkdirSync(dirname(at(path)), { recursive: true });
    writeFileSync(at(path), text);
  };
  for (const path of ['/proc/sys/net/ipv4/conf/all/rp_filter', '/proc/sys/net/ipv4/conf/default/rp_filter']) write(path, '0\n');
  mkdirSync(join(dir, 'state'), { recursive: true });
  mkdirSync(at('/run/meshctl/'), { recursive: true });
  mkdirSync(at('/sys/class/net/'), { recursive: true });
  const unit = (u: string, enabled: string | undefined, active: string) => {
    if (enabled) writeFileSync(join(dir, 'state', `${u}.enabled`), `${enabled}\n`);
    writeFileSync(join(dir, 'state', `${u}.active`), `${active}\n`);
  };
  const read = (u: string, what: 'enabled' | 'active') => {
    try {
      return readFileSync(join(dir, 'state', `${u}.${what}`), 'utf8').trim();
    } catch {
      return undefined;
    }
  };
  return {
    at,
    write,
    exists: (path: string) => existsSync(at(path)),
    text: (path: string) => readFileSync(at(path), 'utf8'),
    unit,
    read,
    log: () => (existsSync(join(dir, 'log')) ? readFileSync(join(dir, 'log'), 'utf8') : ''),
    revertDirs: () => readdirSync(at('/run/meshctl/')).filter((n) => n.startsWith('revert-')),
    /** runs `script` on this node; its exit code and output */
    run(script: string) {
      const result = spawnSync('sh', ['-c', at(script)], {
        env: {
          PATH: `${bin}:/usr/bin:/bin`,
          STUB_LOG: join(dir, 'log'),
          STUB_STATE: join(dir, 'state'),
          TIMER_FILE: at(rr.timer),
        },
        encoding: 'utf8',
      });
      return { code: result.status, stdout: result.stdout, stderr: result.stderr };
    },
  };
}

/** What the config step of a cold run leaves: wg0.conf and the re-resolve timer installed, enabled and started. */
function configStep(n: ReturnType<typeof node>, timerText = '[Timer]\nOnUnitActiveSec=30\n') {
  n.write('/etc/wireguard/wg0.conf', '[Interface]\nListenPort = 51820\n');
  n.write(rr.script, '#!/bin/sh\n');
  n.write(rr.service, '[Service]\n');
  n.write(rr.timer, timerText);
  n.unit(TIMER, 'enabled', 'active');
}

describe('finding 17: a rollback puts the re-resolve timer back as it was before the run', () => {
  it('a cold node: the timer the run installed is stopped, disabled while its unit file still exists, and its files removed', () => {
    const n = node('cold');
    n.unit('wg-quick@wg0.service', 'disabled', 'inactive');
    const arm = n.run(armScript('wg0', RUN, true, 'config'));
    assert.equal(arm.code, 0, arm.stderr);
    configStep(n);
    const revert = n.run(revertNowScript(RUN.runId));
    assert.equal(revert.code, 0, revert.stderr);
    assert.match(revert.stdout, /^rollback=reverted$/m);
    for (const path of [rr.script, rr.service, rr.timer, '/etc/wireguard/wg0.conf']) assert.equal(n.exists(path), false, `${path} left`);
    assert.equal(n.read(TIMER, 'active'), 'inactive');
    assert.equal(n.read(TIMER, 'enabled'), 'disabled');
    assert.match(n.log(), new RegExp(`^disable ${TIMER} unit-file-present$`, 'm'), n.log());
    assert.match(n.log(), /^systemctl daemon-reload$/m);
  });

  it('a node that ran the timer before: its old unit file is back, and the timer enabled and restarted on it', () => {
    const n = node('warm');
    n.unit('wg-quick@wg0.service', 'enabled', 'active');
    configStep(n, '[Timer]\nOnUnitActiveSec=30\n');
    const arm = n.run(armScript('wg0', RUN, true, 'config'));
    assert.equal(arm.code, 0, arm.stderr);
    // this run's config step rewrote the timer's unit file
    n.write(rr.timer, '[Timer]\nOnUnitActiveSec=20\n');
    const revert = n.run(revertNowScript(RUN.runId));
    assert.equal(revert.code, 0, revert.stderr);
    assert.equal(n.text(rr.timer), '[Timer]\nOnUnitActiveSec=30\n');
    assert.equal(n.read(TIMER, 'enabled'), 'enabled');
    assert.equal(n.read(TIMER, 'active'), 'active');
    assert.doesNotMatch(n.log(), new RegExp(`disable ${TIMER}`));
    assert.match(n.log(), new RegExp(`^systemctl restart ${TIMER}$`, 'm'));
  });
});

describe('Q5 4a: a directory the change made goes back too, only while empty', () => {
  const DROPIN = '/etc/systemd/system/wg-quick@wg0.service.d/meshctl-keep-key.conf';
  const DROPIN_DIR = '/etc/systemd/system/wg-quick@wg0.service.d';
  const revertCold = (name: string, before: (n: ReturnType<typeof node>) => void, during: (n: ReturnType<typeof node>) => void) => {
    const n = node(name);
    n.unit('wg-quick@wg0.service', 'disabled', 'inactive');
    before(n);
    assert.equal(n.run(armScript('wg0', RUN, true, 'config')).code, 0);
    configStep(n);
    n.write(DROPIN, '[Service]\n');
    during(n);
    const revert = n.run(revertNowScript(RUN.runId));
    assert.equal(revert.code, 0, revert.stderr);
    assert.match(revert.stdout, /^rollback=reverted$/m);
    return n;
  };
  it("a cold node: the drop-in's directory and the re-resolve script's, absent before, are removed", () => {
    const n = revertCold(
      'dirs-cold',
      () => undefined,
      () => undefined,
    );
    assert.equal(n.exists(DROPIN), false);
    assert.equal(n.exists(DROPIN_DIR), false, 'the empty drop-in directory was left');
    assert.equal(n.exists(dirname(rr.script)), false, 'the empty /usr/local/lib/meshctl was left');
    assert.equal(n.exists('/etc/systemd/system'), true, 'only the directory the change made');
  });
  it('a directory that held something else, or was there before, stays', () => {
    const filled = revertCold(
      'dirs-filled',
      () => undefined,
      (n) => n.write(`${DROPIN_DIR}/override.conf`, '[Service]\nNice=5\n'),
    );
    assert.equal(filled.exists(DROPIN), false);
    assert.equal(filled.text(`${DROPIN_DIR}/override.conf`), '[Service]\nNice=5\n');
    const before = revertCold(
      'dirs-before',
      (n) => {
        mkdirSync(n.at(DROPIN_DIR), { recursive: true });
        mkdirSync(n.at(dirname(rr.script)), { recursive: true });
      },
      () => undefined,
    );
    assert.equal(before.exists(DROPIN), false);
    assert.equal(before.exists(DROPIN_DIR), true, 'it was there before the run');
    assert.equal(before.exists(dirname(rr.script)), true);
  });
});

describe('finding 33: no revert directory is left behind', () => {
  it('a run that reverted a node itself leaves no directory of its own', () => {
    const n = node('own');
    n.unit('wg-quick@wg0.service', 'disabled', 'inactive');
    n.run(armScript('wg0', RUN, true, 'config'));
    assert.deepEqual(n.revertDirs(), [`revert-${RUN.runId}`]);
    configStep(n);
    assert.match(n.run(revertNowScript(RUN.runId)).stdout, /^rollback=reverted$/m);
    assert.deepEqual(n.revertDirs(), []);
  });

  it("the next run's arm removes the directories of dead runs and keeps (and is refused by) one whose timer is pending", () => {
    const n = node('stale');
    n.unit('wg-quick@wg0.service', 'enabled', 'active');
    const dead = (id: string, files: Record<string, string>) => {
      for (const [file, text] of Object.entries(files)) n.write(`/run/meshctl/revert-${id}/${file}`, text);
    };
    // reverted by its own timer after meshctl was killed
    dead('aaaaaaaaaaaaaaa1', { state: 'active=active\n', unit: 'meshctl-revert-aaaaaaaaaaaaaaa1-config\n', reverted: '1\n' });
    // confirmed, killed between stopping its timer and removing the directory: no timer left
    dead('aaaaaaaaaaaaaaa2', { state: 'active=active\n', unit: 'meshctl-revert-aaaaaaaaaaaaaaa2-enable\n' });
    const arm = n.run(armScript('wg0', RUN, true, 'config'));
    assert.equal(arm.code, 0, arm.stderr);
    assert.deepEqual(n.revertDirs(), [`revert-${RUN.runId}`]);

    const pending = node('pending');
    pending.unit('wg-quick@wg0.service', 'enabled', 'active');
    pending.write('/run/meshctl/revert-bbbbbbbbbbbbbbb1/state', 'active=active\n');
    pending.write('/run/meshctl/revert-bbbbbbbbbbbbbbb1/unit', 'meshctl-revert-bbbbbbbbbbbbbbb1-config\n');
    pending.unit('meshctl-revert-bbbbbbbbbbbbbbb1-config.timer', undefined, 'active');
    const refused = pending.run(armScript('wg0', RUN, true, 'config'));
    assert.equal(refused.code, PENDING_OTHER_EXIT, refused.stderr);
    assert.deepEqual(pending.revertDirs(), ['revert-bbbbbbbbbbbbbbb1']);
  });
});

describe('finding 18: a pending revert fires when it said, and the next run says when', () => {
  it('the timer is armed for an absolute time (a daemon-reload re-arms a relative --on-active timer)', () => {
    const n = node('calendar');
    n.unit('wg-quick@wg0.service', 'enabled', 'active');
    const before = Math.floor(Date.now() / 1000);
    assert.equal(n.run(armScript('wg0', RUN, true, 'config')).code, 0);
    const after = Math.floor(Date.now() / 1000);
    const line = n
      .log()
      .split('\n')
      .find((l) => l.startsWith('systemd-run'))!;
    assert.doesNotMatch(line, /--on-active/);
    const at = /--on-calendar=(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) UTC /.exec(line)?.[1];
    assert.ok(at, line);
    const fires = Date.parse(`${at.replace(' ', 'T')}Z`) / 1000;
    assert.ok(fires >= before + 120 && fires <= after + 120, `${at}: not ${RUN.deadlineS} s after the arm`);
    assert.equal(Number(n.text(`/run/meshctl/revert-${RUN.runId}/deadline`)), fires);
  });

  it("another run's pending change: refused with the run, its time and the seconds left", () => {
    const n = node('pending-when');
    n.unit('wg-quick@wg0.service', 'enabled', 'active');
    const other = { runId: 'cccccccccccccccc', deadlineS: 90 };
    assert.equal(n.run(armScript('wg0', other, true, 'enable')).code, 0);
    n.unit('meshctl-revert-cccccccccccccccc-enable.timer', undefined, 'active');
    const refused = n.run(armScript('wg0', RUN, true, 'config'));
    assert.equal(refused.code, PENDING_OTHER_EXIT);
    assert.match(
      refused.stderr,
      /^not changed: an unconfirmed change of an earlier meshctl run is pending here \(revert-cccccccccccccccc: interrupted, or killed, before it was confirmed\); the node starts going back to that run's snapshot by itself at \d\d:\d\d:\d\d UTC \(in (8\d|90) s\); run up again after that$/m,
    );
  });

  it('a node whose step failed before it armed (that refusal) gets no second FAIL: nothing of this run changed there', async () => {
    const reports = [{ node: 'ms-1', changes: [], checks: [], error: 'write-config: ... (exit 76): not changed: ...' }];
    await settleRollbacks({
      runId: RUN.runId,
      armed: new Set(['ms-1']),
      reports,
      confirms: false,
      deadlineS: 120,
      run: async () => ({ code: 0, stdout: 'rollback=none\n', stderr: '' }),
    });
    assert.deepEqual(reports[0]!.checks, [
      { id: 'rollback', status: 'pass', message: 'nothing of this run changed on ms-1: nothing to roll back' },
    ]);
  });
});
