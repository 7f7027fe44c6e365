/**
 * A new user's finding (2026-12-01): a revert restarted wg-quick@wg0 whenever wg0.conf differed, so a peers-only
 * change (a keepalive on three nodes) going back cut every pair of those nodes for seconds, the pairs it had not
 * touched too. Now the revert goes back as gently as the change came: the same [Interface] part and a running
 * interface, the peers are synced onto the restored file (../../src/render/systemd.ts syncPeersCommand, the enable
 * step's own command) and their routes with them; an MTU change alone is set back live (a new user's finding Q3-6:
 * the enable step sets it live too); any other [Interface] change still restarts. A peer sync that fails is no
 * `reverted` (a reviewer's finding RV-6). The arm and revert scripts run here under a real `sh` with stand-ins on
 * PATH: `systemctl` keeping each unit's state in a file, `wg` answering from a file that plays the live interface
 * (`show ... dump`, `listen-port`, `allowed-ips`) and recording `addconf`/`set`, `wg-quick strip` reading the file
 * as wg-quick does, `ip` logging (and `ip link set dev wg0 mtu N` setting the stand-in /sys/class/net/wg0/mtu),
 * `systemd-run` doing nothing; every path the scripts touch is moved into a temporary directory. FAIL_STRIP,
 * FAIL_ADDCONF, FAIL_REMOVE make that `wg-quick strip`, `wg addconf` or `wg set ... remove` fail. The lab proof:
 * test/lab/interrupt.test.ts, test/lab/mtu-live.test.ts.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, describe, it } from 'node:test';
import { armScript, revertNowScript } from '../../src/engine/revert.js';

const RUN = { runId: '0123456789abcdef', deadlineS: 120 };
const KEYS = ['3x2QNxybmsS25IxbeN+bccoz+M+rs6WHNNO72qXahD0=', 'DTrKKDdYwRfrZJiMMaX6omSvpZJHP5iMlhCg5lSJuBE='];
const root = mkdtempSync(join(tmpdir(), 'meshctl-revert-gentle-'));
after(() => rmSync(root, { recursive: true, force: true }));

const bin = join(root, 'bin');
mkdirSync(bin);
const stubs: Record<string, string> = {
  systemctl: [
    'echo "systemctl $*" >> "$STUB_LOG"',
    'q=; [ "$2" = -q ] && { q=1; set -- "$1" "$3"; }',
    'case "$1" in',
    '  is-active) st=$(cat "$STUB_STATE/$2.active" 2>/dev/null || echo inactive); [ -n "$q" ] || echo "$st"; [ "$st" = active ] ;;',
    '  is-enabled) cat "$STUB_STATE/$2.enabled" 2>/dev/null ;;',
    // what each stop and start saw of the config: wg-quick reads it at both (down needs it: wg-quick(8))
    // SLOW_STOP: a stop or restart that takes that long (a hung wg-quick down, a loaded node)
    // CUT_AT_STOP: the deadline's kill lands during a stop or restart (cutOff)
    '  stop|start|restart) if [ "$1" != start ] && [ -n "$SLOW_STOP" ]; then sleep "$SLOW_STOP"; fi',
    '    if [ "$1" != start ] && [ -n "$CUT_AT_STOP" ]; then kill -KILL 0; fi',
    '    { grep "^MTU" "$WG_CONF" 2>/dev/null || echo "no $WG_CONF"; } | sed "s|^|$1 |" >> "$STUB_STATE/$2.ops" ;;',
    '  *) true ;;',
    'esac',
  ].join('\n'),
  wg: [
    'case "$*" in',
    '  "show wg0 listen-port") echo 51820 ;;',
    `  "show wg0 dump") printf 'PRIV\\tPUB\\t51820\\toff\\n'; cat "$LIVE" ;;`,
    `  "show wg0 allowed-ips") awk -F '\\t' '{ gsub(",", " ", $4); print $1 "\\t" $4 }' "$LIVE" ;;`,
    // CUT_AT_SYNC: the deadline's kill lands during the peer sync (cutOff)
    '  "addconf wg0 /dev/stdin") if [ -n "$CUT_AT_SYNC" ]; then kill -KILL 0; fi; echo "wg addconf" >> "$STUB_LOG"; cat >> "$STUB_STATE/addconf"; [ -z "$FAIL_ADDCONF" ] ;;',
    '  "set wg0 peer "*" remove") echo "wg $*" >> "$STUB_LOG"; [ -z "$FAIL_REMOVE" ] ;;',
    '  *) echo "wg $*" >> "$STUB_LOG" ;;',
    'esac',
  ].join('\n'),
  // wg-quick(8) strip: the file without wg-quick's own keys
  'wg-quick': `echo "wg-quick $*" >> "$STUB_LOG"\nif [ "$1" = strip ] && [ -n "$FAIL_STRIP" ]; then echo "wg-quick: cannot read $WG_CONF" >&2; exit 1; fi\n[ "$1" = strip ] && grep -viE '^[[:space:]]*(Address|MTU|DNS|Table|PreUp|PostUp|PreDown|PostDown|SaveConfig)[[:space:]]*=' "$WG_CONF"; true`,
  // the routes via wg0 as `ip route show` prints them (a host route without its /32): a peer's, and a stale one
  // and `ip link set dev wg0 mtu N` sets the interface's MTU (the stand-in /sys/class/net/wg0/mtu: WG_MTU)
  ip: `echo "ip $*" >> "$STUB_LOG"\n[ "$*" = "-4 route show dev wg0 proto boot scope link" ] && printf '172.27.15.12 scope link\\n172.27.15.99 scope link\\n'\ncase "$*" in "link set dev wg0 mtu "*) echo "$6" > "$WG_MTU" ;; esac; true`,
  'systemd-run': 'true',
  // HOLD_CMP=FILE: the first compare waits (having made FILE) until FILE.release exists
  cmp: 'if [ -n "$HOLD_CMP" ] && [ ! -e "$HOLD_CMP.release" ]; then : > "$HOLD_CMP"; while [ ! -e "$HOLD_CMP.release" ]; do sleep 0.05; done; fi\nexec /usr/bin/cmp "$@"',
  // FULL_DISK: a copy that creates its target and then fails, as cp(1) on a full disk
  cp: 'if [ -n "$FULL_DISK" ]; then for t; do :; done; : > "$t"; echo "cp: error writing \'$t\': No space left on device" >&2; exit 1; fi\nexec /bin/cp "$@"',
};
for (const [name, body] of Object.entries(stubs)) {
  writeFileSync(join(bin, name), `#!/bin/sh\n${body}\n`);
  chmodSync(join(bin, name), 0o755);
}

const CONF = (mtu: number, keepalive?: number) =>
  [
    '# Managed by meshctl',
    '[Interface]',
    'Address = 172.27.15.11/24',
    'ListenPort = 51820',
    `MTU = ${mtu}`,
    'PostUp = wg set %i private-key /etc/wireguard/%i.key',
    ...KEYS.flatMap((key, i) => [
      '',
      '[Peer]',
      `PublicKey = ${key}`,
      `AllowedIPs = 172.27.15.${12 + i}/32`,
      `Endpoint = 10.99.0.${12 + i}:51820`,
      ...(keepalive ? [`PersistentKeepalive = ${keepalive}`] : []),
    ]),
    '',
  ].join('\n');
/** CONF(1420) with another ListenPort: an [Interface] change that only a restart applies */
const PORT_CHANGE = CONF(1420).replace('ListenPort = 51820', 'ListenPort = 51821');
/** `wg show wg0 dump`'s peer lines of an interface running CONF(_, keepalive) */
const LIVE_DUMP = (keepalive?: number) =>
  KEYS.map(
    (key, i) => `${key}\t(none)\t10.99.0.${12 + i}:51820\t172.27.15.${12 + i}/32\t1796058129\t100\t200\t${keepalive ?? 'off'}\n`,
  ).join('');

/**
 * Runs `script` under sh in a process group of its own (coreutils timeout makes one), killed with every process it
 * started as the connection's deadline kills a remote command's group: at the moment a stand-in meets its CUT_AT_*
 * variable (`kill -KILL 0`), not after a time, which a loaded machine (a CI run) could reach before or after that
 * point; the 60 s timeout only ends a run that never met it.
 */
const cutOff = (script: string, env: Record<string, string>) =>
  spawnSync('timeout', ['-s', 'KILL', '60', 'sh', '-c', script], { env: { ...env, PATH: `${env.PATH}` }, encoding: 'utf8' });

/** What revertAfter's `before` gets: the node's paths, the stand-ins' environment, a reader of its files. */
interface RevertNode {
  at: (path: string) => string;
  env: Record<string, string>;
  read: (file: string) => string;
  /** the run's snapshot directory on this node */
  runDir: string;
  /** the live interface's MTU now (the stand-in /sys/class/net/wg0/mtu) */
  mtu: () => string;
}

/**
 * A node running wg0 on CONF(1420) (live MTU 1420) whose revert is armed, then changed to `conf` (live as `live`,
 * MTU `liveMtu`: what the enable step left), reverted at once; `cold`: a node without wg0 (no file, the unit
 * inactive and disabled) that the change set up and started.
 * Returns the log of the stand-ins, what `wg addconf` was fed, how often wg-quick@wg0 was restarted (a stop on the
 * changed file, then a start on the restored one), and each stop and start with the MTU line of the file it saw.
 */
function revertAfter(
  name: string,
  conf: string,
  live: string,
  {
    interfaceGone = false,
    cold = false,
    enableArmed = true,
    liveMtu,
    mtuAtSnapshot = 1420,
    before,
  }: {
    interfaceGone?: boolean;
    cold?: boolean;
    enableArmed?: boolean;
    liveMtu?: number;
    /** the live MTU before the change (1420, the file's, unless set by hand) */
    mtuAtSnapshot?: number;
    before?: (node: RevertNode) => void;
  } = {},
) {
  const dir = join(root, name);
  const at = (path: string) =>
    path
      .replaceAll('/run/meshctl/', `${dir}/run/meshctl/`)
      .replaceAll('/etc/', `${dir}/etc/`)
      .replaceAll('/proc/sys/', `${dir}/proc/sys/`)
      .replaceAll('/sys/class/net/', `${dir}/sys/class/net/`)
      .replaceAll('/usr/local/lib/meshctl/', `${dir}/usr/local/lib/meshctl/`);
  const write = (path: string, text: string) => {
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(path, text);
  };
  for (const f of ['all', 'default']) write(at(`/proc/sys/net/ipv4/conf/${f}/rp_filter`), '0\n');
  mkdirSync(at('/etc/wireguard/'), { recursive: true });
  if (!cold) write(at('/etc/wireguard/wg0.conf'), CONF(1420));
  write(at('/etc/wireguard/wg0.key'), 'PRIVATE-KEY-STAND-IN=\n');
  const unitState = (active: string, enabled: string) => {
    write(join(dir, 'state', 'wg-quick@wg0.active'), `${active}\n`);
    write(join(dir, 'state', 'wg-quick@wg0.enabled'), `${enabled}\n`);
  };
  if (cold) unitState('inactive', 'disabled');
  else unitState('active', 'enabled');
  write(join(dir, 'live'), live);
  if (!interfaceGone && !cold) write(at('/sys/class/net/wg0/ifindex'), '7\n');
  if (!interfaceGone && !cold) write(at('/sys/class/net/wg0/mtu'), `${mtuAtSnapshot}\n`);
  mkdirSync(at('/run/meshctl/'), { recursive: true });
  const env = {
    PATH: `${bin}:/usr/bin:/bin`,
    STUB_LOG: join(dir, 'log'),
    STUB_STATE: join(dir, 'state'),
    LIVE: join(dir, 'live'),
    WG_CONF: at('/etc/wireguard/wg0.conf'),
    WG_MTU: at('/sys/class/net/wg0/mtu'),
  };
  const run = (script: string) => {
    const result = spawnSync('sh', ['-c', at(script)], { env, encoding: 'utf8' });
    assert.equal(result.status, 0, result.stderr);
    return result.stdout;
  };
  const read = (f: string) => (existsSync(join(dir, f)) ? readFileSync(join(dir, f), 'utf8') : '');
  run(armScript('wg0', RUN, true, 'config'));
  write(at('/etc/wireguard/wg0.conf'), conf);
  // the run reached its enable step (which may change the interface), unless it stopped at the config gate
  if (enableArmed) run(armScript('wg0', RUN, true, 'enable'));
  if (cold) {
    unitState('active', 'enabled');
    write(at('/sys/class/net/wg0/ifindex'), '7\n');
    write(at('/sys/class/net/wg0/mtu'), '1420\n');
  }
  if (liveMtu !== undefined) write(at('/sys/class/net/wg0/mtu'), `${liveMtu}\n`);
  const mtuNow = () => (existsSync(at('/sys/class/net/wg0/mtu')) ? readFileSync(at('/sys/class/net/wg0/mtu'), 'utf8').trim() : '');
  before?.({ at, env, read, runDir: at(`/run/meshctl/revert-${RUN.runId}`), mtu: mtuNow });
  assert.match(run(revertNowScript(RUN.runId)), /rollback=reverted/);
  if (cold) assert.ok(!existsSync(at('/etc/wireguard/wg0.conf')), 'the file the change made is removed');
  else assert.equal(readFileSync(at('/etc/wireguard/wg0.conf'), 'utf8'), CONF(1420), 'the file is restored');
  assert.ok(!existsSync(at(`/run/meshctl/revert-${RUN.runId}`)), 'the run directory is removed');
  const ops = read('state/wg-quick@wg0.ops').split('\n').filter(Boolean);
  const mtu = (conf: string) => /^MTU = .*/m.exec(conf)?.[0];
  const restarts = ops.filter((op) => op === `restart ${mtu(CONF(1420))}`).length;
  return { log: read('log'), addconf: read('state/addconf'), restarts, ops, mtu: mtuNow() };
}

describe('a revert goes back as gently as its change came', () => {
  it('a peers-only change that was applied (keepalive 20): the peers are synced back, keeping the key; no restart', () => {
    const { log, addconf, restarts } = revertAfter('peers-applied', CONF(1420, 20), LIVE_DUMP(20));
    assert.equal(restarts, 0, log);
    // only what differs from the live interface: each peer's keepalive switched off, as `wg syncconf` would
    const blocks = addconf.split('\n').filter((l) => l.trim() !== '');
    for (const key of KEYS) assert.ok(blocks.includes(`PublicKey = ${key}`), addconf);
    assert.equal(blocks.filter((l) => l === 'PersistentKeepalive = off').length, KEYS.length, addconf);
    assert.ok(!blocks.some((l) => /^(Address|MTU|PostUp)/.test(l)), 'wg-quick keys are stripped');
    // the private key goes along (the file carries none), so the sync never clears it
    assert.deepEqual(blocks.slice(-2), ['[Interface]', 'PrivateKey = PRIVATE-KEY-STAND-IN=']);
    // and the peers' routes are made as the enable step makes them
    for (const route of ['172.27.15.12/32', '172.27.15.13/32']) assert.match(log, new RegExp(`ip -4 route replace ${route} dev wg0`));
    assert.doesNotMatch(log, /wg set wg0 peer .* remove/);
    // a route no peer of the restored file has is deleted; a peer's, printed without its /32, is kept
    assert.match(log, /ip -4 route del 172\.27\.15\.99 dev wg0/);
    assert.doesNotMatch(log, /route del 172\.27\.15\.1[23]/);
  });

  it('a change stopped before its enable step (live still as the old file): nothing is sent to the interface', () => {
    const { log, addconf, restarts } = revertAfter('peers-not-applied', CONF(1420, 20), LIVE_DUMP());
    assert.equal(restarts, 0, log);
    // syncPeersCommand sends the [Interface] lines and the key alone: the same key, which wg(8) leaves as it is
    assert.doesNotMatch(addconf, /\[Peer\]/);
    assert.doesNotMatch(log, /wg set/);
  });

  it('comments, blank lines and spacing in [Interface] are no [Interface] change (wg-quick reads them so)', () => {
    const respaced = CONF(1420, 20)
      .replace('MTU = 1420', '  MTU=1420   # the same value')
      .replace('[Interface]', '[interface]\n# a note\n')
      .replace('# Managed by meshctl', '# Managed by meshctl, another header');
    const { restarts, addconf } = revertAfter('respaced', respaced, LIVE_DUMP(20));
    assert.equal(restarts, 0);
    assert.match(addconf, /PersistentKeepalive = off/);
  });

  it('an MTU change applied live (1420 -> 1380) is set back live: the MTU of the snapshot, no restart, no peer sent', () => {
    const { log, addconf, ops, mtu } = revertAfter('mtu', CONF(1380), LIVE_DUMP(), { liveMtu: 1380 });
    assert.deepEqual(ops, [], log);
    assert.match(log, /^ip link set dev wg0 mtu 1420$/m);
    assert.equal(mtu, '1420');
    // the peers did not change: the sync finds nothing to send but the [Interface] lines and the same key
    assert.doesNotMatch(addconf, /\[Peer\]/);
    assert.doesNotMatch(log, /wg set/);
  });

  it('an MTU and peers change is set back live: the MTU, then the peers synced (their keepalive off), no restart', () => {
    const { log, addconf, ops, mtu } = revertAfter('mtu-peers', CONF(1380, 20), LIVE_DUMP(20), { liveMtu: 1380 });
    assert.deepEqual(ops, [], log);
    assert.equal(mtu, '1420');
    assert.equal(addconf.split('\n').filter((l) => l === 'PersistentKeepalive = off').length, KEYS.length, addconf);
  });

  it("an MTU set live with the file unchanged (1380 by hand -> 1420, the file's) goes back to 1380 live, no restart (RV4 F3.1)", () => {
    const { log, ops, mtu } = revertAfter('mtu-live-only', CONF(1420), LIVE_DUMP(), { mtuAtSnapshot: 1380, liveMtu: 1420 });
    assert.deepEqual(ops, [], log);
    assert.match(log, /^ip link set dev wg0 mtu 1380$/m);
    assert.equal(mtu, '1380');
  });

  it('the same with a peers change (keepalive 20): the MTU back live, then the peers synced, no restart (RV4 F3.1)', () => {
    const { log, addconf, ops, mtu } = revertAfter('mtu-live-peers', CONF(1420, 20), LIVE_DUMP(20), { mtuAtSnapshot: 1380, liveMtu: 1420 });
    assert.deepEqual(ops, [], log);
    assert.equal(mtu, '1380');
    assert.equal(addconf.split('\n').filter((l) => l === 'PersistentKeepalive = off').length, KEYS.length, addconf);
  });

  it("a snapshot without the live MTU (an older meshctl's) restarts on an MTU change, as before", () => {
    const { ops, log } = revertAfter('mtu-old-snapshot', CONF(1380), LIVE_DUMP(), {
      liveMtu: 1380,
      before({ runDir }) {
        const state = join(runDir, 'state');
        writeFileSync(state, readFileSync(state, 'utf8').replace(/^mtu=.*\n/m, ''));
      },
    });
    assert.deepEqual(ops, ['restart MTU = 1420'], log);
    assert.doesNotMatch(log, /ip link set dev wg0 mtu/);
  });

  it('another [Interface] change (ListenPort) is one restart after the restore (its down reads the restored file), nothing else', () => {
    const { ops, addconf, log } = revertAfter('port-order', PORT_CHANGE, LIVE_DUMP());
    assert.deepEqual(ops, ['restart MTU = 1420']);
    assert.equal(addconf, '');
    assert.doesNotMatch(log, /ip link set dev wg0 mtu/);
  });

  it("a cold run's revert stops wg-quick while its wg0.conf is still there, then removes the file (CI, stop 25)", () => {
    // wg-quick down refuses without the file ("does not exist"), and systemd then waited out its stop timeout on the
    // wireguard-go left in the unit: the revert timed out at 60 s and left the unit enabled
    const { ops, log } = revertAfter('cold', CONF(1420), LIVE_DUMP(), { cold: true });
    assert.deepEqual(ops, ['stop MTU = 1420'], log);
    assert.match(log, /systemctl disable --no-reload wg-quick@wg0/);
    assert.match(log, /ip link del wg0/);
  });

  it("a revert cut off midway (the command's deadline) keeps the timer armed, and the timer's run finishes it (CI, stop 25)", () => {
    const { ops } = revertAfter('cut-off', PORT_CHANGE, LIVE_DUMP(), {
      before({ at, env, read, runDir }) {
        // meshctl's revert killed during its stop with every process it started, as the remote `timeout` of the
        // connection's deadline kills its process group
        const mark = read('log').length;
        const cut = cutOff(at(revertNowScript(RUN.runId)), { ...env, CUT_AT_STOP: '1' });
        assert.notEqual(cut.status, 0, 'killed by the deadline');
        assert.doesNotMatch(read('log').slice(mark), /systemctl stop meshctl-revert-/, 'the timer stays armed');
        assert.ok(existsSync(join(runDir, 'state')) && !existsSync(join(runDir, 'reverted')), 'the snapshot stays, not reverted');
        // the timer fires: its service runs the kept script (and waits for the cut-off one's stop to end)
        const timer = spawnSync('/bin/sh', [join(runDir, 'revert.sh')], { env, encoding: 'utf8' });
        assert.equal(timer.status, 0, timer.stderr);
        assert.ok(existsSync(join(runDir, 'reverted')));
      },
    });
    // the cut-off restart never finished (killed); the timer's restarted on the restored file
    assert.deepEqual(ops, ['restart MTU = 1420'], ops.join('\n'));
  });

  it('a peers-only revert cut off after its files were restored is finished by the timer: the peers synced back (a review)', () => {
    const { addconf, log } = revertAfter('cut-after-restore', CONF(1420, 20), LIVE_DUMP(20), {
      before({ at, env, read, runDir }) {
        const cut = cutOff(at(revertNowScript(RUN.runId)), { ...env, CUT_AT_SYNC: '1' });
        assert.notEqual(cut.status, 0, 'killed by the deadline');
        assert.equal(read('state/addconf'), '', 'cut off before its sync');
        assert.equal(readFileSync(at('/etc/wireguard/wg0.conf'), 'utf8'), CONF(1420), 'the file is already back');
        const timer = spawnSync('/bin/sh', [join(runDir, 'revert.sh')], { env, encoding: 'utf8' });
        assert.equal(timer.status, 0, timer.stderr);
      },
    });
    // the timer's run did what the first one decided, though the file it compares is already the old one
    assert.match(addconf, /PersistentKeepalive = off/, log);
  });

  it("a snapshot's state removed while its revert runs: the revert goes on from what it read, never takes the interface down (a review)", () => {
    const { ops, log } = revertAfter('state-gone', PORT_CHANGE, LIVE_DUMP(), {
      before({ env, runDir }) {
        const hold = join(runDir, '..', 'hold-cmp');
        const script = [
          `/bin/sh ${join(runDir, 'revert.sh')} & pid=$!`,
          `while [ ! -e ${hold} ]; do sleep 0.05; done`,
          // the state goes while the revert is past its checks (as a cleanup of another script could remove it)
          `rm -f ${join(runDir, 'state')}`,
          `: > ${hold}.release`,
          'wait $pid',
        ].join('\n');
        const both = spawnSync('sh', ['-c', script], { env: { ...env, HOLD_CMP: hold }, encoding: 'utf8' });
        assert.equal(both.status, 0, both.stderr);
      },
    });
    assert.deepEqual(ops, ['restart MTU = 1420'], log);
    assert.doesNotMatch(log, /ip link del|disable/);
  });

  it("meshctl's revert and the timer's at the same moment take turns: one of them goes back, the other finds it done", () => {
    const { ops } = revertAfter('both-at-once', PORT_CHANGE, LIVE_DUMP(), {
      before({ env, runDir }) {
        // both started at once, each stop slow enough that they would overlap
        const script = join(runDir, 'revert.sh');
        const both = spawnSync('sh', ['-c', `/bin/sh ${script} & /bin/sh ${script} & wait`], {
          env: { ...env, SLOW_STOP: '1' },
          encoding: 'utf8',
        });
        assert.equal(both.status, 0, both.stderr);
      },
    });
    assert.deepEqual(ops, ['restart MTU = 1420']);
  });

  it('a change stopped at the config gate (never applied): the file goes back, the interface is not touched', () => {
    // a new user's finding (2026-12-02): "n" at the config gate restarted wg-quick on every node (0.3-0.9 s cut)
    const mtu = revertAfter('config-gate-mtu', CONF(1380), LIVE_DUMP(), { enableArmed: false });
    assert.deepEqual(mtu.ops, [], mtu.log);
    assert.doesNotMatch(mtu.log, /ip link set/);
    const port = revertAfter('config-gate-port', PORT_CHANGE, LIVE_DUMP(), { enableArmed: false });
    assert.deepEqual(port.ops, [], port.log);
    const peers = revertAfter('config-gate-peers', CONF(1420, 20), LIVE_DUMP(), { enableArmed: false });
    assert.deepEqual(peers.ops, [], peers.log);
    assert.equal(peers.addconf, '');
    assert.doesNotMatch(peers.log, /ip -4 route/);
    // a cold run stopped at its config gate: wg-quick was never started, the file it wrote is removed
    const cold = revertAfter('config-gate-cold', CONF(1420), LIVE_DUMP(), { cold: true, enableArmed: false });
    assert.deepEqual(cold.ops, [], cold.log);
  });

  it('a file that cannot be put back (a full disk) fails the revert, leaves no partial copy, and the timer stays', () => {
    assert.throws(
      () =>
        revertAfter('full-disk', CONF(1380), LIVE_DUMP(), {
          before({ at, env, runDir }) {
            // cp fails as on a full disk, after creating its target (the stand-in `cp`: FULL_DISK)
            const result = spawnSync('sh', ['-c', at(revertNowScript(RUN.runId))], { env: { ...env, FULL_DISK: '1' }, encoding: 'utf8' });
            assert.equal(result.status, 1, result.stdout);
            assert.match(result.stderr, /not reverted: could not restore, start or sync .*wg0\.conf/);
            assert.ok(!existsSync(at('/etc/wireguard/wg0.conf.meshctl-revert')), 'no partial copy left');
            assert.ok(existsSync(join(runDir, 'state')) && !existsSync(join(runDir, 'reverted')), 'the timer tries again');
            throw new Error('checked');
          },
        }),
      /checked/,
    );
  });

  it('a file equal to its snapshot is not copied back (Q9 F-immutable: the write had failed on an immutable wg0.conf)', () => {
    assert.throws(
      () =>
        revertAfter('unchanged-file', CONF(1420), LIVE_DUMP(), {
          before({ at, env, runDir }) {
            // any copy fails (the stand-in `cp`: FULL_DISK), as the immutable file's rename did: none is needed
            const result = spawnSync('sh', ['-c', at(revertNowScript(RUN.runId))], { env: { ...env, FULL_DISK: '1' }, encoding: 'utf8' });
            assert.equal(result.status, 0, result.stdout + result.stderr);
            assert.doesNotMatch(result.stderr, /not reverted/);
            assert.ok(existsSync(join(runDir, 'reverted')) || !existsSync(runDir), 'the revert is done, its timer has nothing left');
            throw new Error('checked');
          },
        }),
      /checked/,
    );
  });

  it('a unit active without its interface (deleted by hand) is restarted, not synced', () => {
    const { addconf, restarts } = revertAfter('gone', CONF(1420, 20), LIVE_DUMP(20), { interfaceGone: true });
    assert.equal(restarts, 1);
    assert.equal(addconf, '');
  });
});

describe("a peer sync that fails is no `reverted` (a reviewer's finding RV-6): exit 1, and the next try finishes it", () => {
  /** a third peer on the live interface, which the restored file lacks (the sync removes it: `wg set ... remove`) */
  const STRANGER = 'M3fwNRy2GLdqAKkRWbMDdW2O1Lel6a8ZMjPAiQvRZkE=';
  const withStranger = `${LIVE_DUMP(20)}${STRANGER}\t(none)\t10.99.0.20:51820\t172.27.15.20/32\t0\t0\t0\toff\n`;

  /**
   * The peers-only revert of keepalive 20 (live as `live`) with the stand-ins failing as `failing` says: meshctl's
   * revert exits 1 naming the sync, prints no rollback=reverted and leaves the snapshot for its timer; its second try
   * (the stand-ins working again) goes back. Returns the first try's stderr and the stand-ins' log.
   */
  const failsOnce = (name: string, failing: Record<string, string>, live = LIVE_DUMP(20)) => {
    let stderr = '';
    const { log, addconf } = revertAfter(name, CONF(1420, 20), live, {
      before({ at, env, runDir }) {
        const result = spawnSync('sh', ['-c', at(revertNowScript(RUN.runId))], { env: { ...env, ...failing }, encoding: 'utf8' });
        assert.equal(result.status, 1, `${result.stdout}\n${result.stderr}`);
        assert.doesNotMatch(result.stdout, /rollback=reverted/);
        assert.ok(existsSync(join(runDir, 'state')) && !existsSync(join(runDir, 'reverted')), 'the timer tries again');
        stderr = result.stderr;
      },
    });
    return { stderr, log, addconf };
  };
  const NOT_REVERTED = /not reverted: could not restore, start or sync wg0 peers \(the sync failed\)/;

  it('a sync that failed, retried after the interface went away, restarts the unit on the restored file instead of syncing for ever (RV2 finding 12)', () => {
    const { restarts, addconf } = revertAfter('sync-then-gone', CONF(1420, 20), LIVE_DUMP(20), {
      before({ at, env, runDir }) {
        const first = spawnSync('sh', ['-c', at(revertNowScript(RUN.runId))], { env: { ...env, FAIL_ADDCONF: '1' }, encoding: 'utf8' });
        assert.equal(first.status, 1, first.stderr);
        assert.equal(readFileSync(join(runDir, 'act'), 'utf8').trim(), 'sync');
        rmSync(at('/sys/class/net/wg0'), { recursive: true, force: true });
      },
    });
    assert.equal(restarts, 1, 'the retry restarted wg-quick@wg0');
    assert.equal(
      addconf.split('\n').filter((l) => l === 'PersistentKeepalive = off').length,
      KEYS.length,
      'only the failed first try synced',
    );
  });

  it('`wg addconf` fails', () => {
    const { stderr, addconf } = failsOnce('addconf-fails', { FAIL_ADDCONF: '1' });
    assert.match(stderr, NOT_REVERTED);
    // the second try sent the peers again, and that one counted
    assert.equal(addconf.split('\n').filter((l) => l === 'PersistentKeepalive = off').length, 2 * KEYS.length, addconf);
  });

  it('`wg set ... remove` fails (a peer the restored file lacks)', () => {
    const { stderr, log } = failsOnce('remove-fails', { FAIL_REMOVE: '1' }, withStranger);
    assert.match(stderr, NOT_REVERTED);
    assert.equal(log.split('\n').filter((l) => l === `wg set wg0 peer ${STRANGER} remove`).length, 2, log);
  });

  it('`wg-quick strip` fails: nothing is sent', () => {
    const { stderr, log } = failsOnce('strip-fails', { FAIL_STRIP: '1' });
    assert.match(stderr, NOT_REVERTED);
    assert.equal(log.split('\n').filter((l) => l === 'wg addconf').length, 1, 'only the second try sent the peers');
  });
});
