/**
 * Kind 1 of issue 8, "a secret reaches the operator", end to end on the homelab lab: after `up`, a corpus of
 * secret-bearing variants is planted in the nodes' wg0.conf (commented keys, spellings wg accepts, PostUp/PreUp/
 * PostDown carrying keys, PresharedKey, a key in a comment after a value, the own key as a PublicKey) and two nodes get
 * `cp wg0.key wg0.pub`. Then `up --dry-run` (text, --json), `verify` (text, --verbose, --json) and `debug --tcpdump`
 * (text, --json, and one interrupted by SIGINT) run; everything they printed and every file they wrote (the debug
 * bundles in the cwd) is scanned for the nodes' real private keys and the planted secrets. The captures on the nodes
 * must be private (mode 0700 directory, no file readable by others) and stale ones removed by the next run. A real
 * `up` then repairs the swapped .pub (mode 644, the public key) and keeps each node's key.
 */
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { meshctlInOperator } from '../../src/lab/index.js';
import { describeLab, labArgs } from './harness.js';

const INVENTORY = 'inventories/homelab.yaml';
const NODES = ['ms-1', 'wk-1', 'wk-2', 'ctb-edge-1'];
const SWAPPED = ['wk-2', 'ctb-edge-1'];
const CONF = '/etc/wireguard/wg0.conf';

/** The debug bundles meshctl wrote into the cwd. */
const bundles = () => readdirSync('.').filter((f) => /^meshctl-debug-\d{8}T\d{6}Z$/.test(f));

/** Every file below `dir`, with its content (as latin1, so a key in a pcap's bytes is found too). */
function filesBelow(dir: string): Array<{ path: string; text: string }> {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' })
    .map((f) => join(dir, f))
    .filter((p) => statSync(p).isFile())
    .map((path) => ({ path, text: readFileSync(path).toString('latin1') }));
}

describeLab('no secret reaches the operator (issue 8, kind 1)', INVENTORY, (lab) => {
  /** everything meshctl printed or wrote, by where it came from */
  const seen: Array<{ where: string; text: string }> = [];
  const secrets = new Map<string, string>();
  const keys = new Map<string, string>();
  const preshared = randomBytes(32).toString('base64');

  const run = async (args: string[]) => {
    const r = await lab().meshctl(args);
    seen.push({ where: `meshctl ${args.join(' ')}`, text: `${r.stdout}\n${r.stderr}` });
    return r;
  };
  const sh = async (node: string, script: string) => (await lab().sh(node, script)).trim();
  /** Moves the debug bundles into `seen` and deletes them (never left in the worktree). */
  const collectBundles = () => {
    for (const dir of bundles()) {
      const mode = statSync(dir).mode & 0o777;
      seen.push({ where: `${dir} mode`, text: mode === 0o700 ? '' : `bundle mode ${mode.toString(8)}` });
      for (const f of filesBelow(dir)) seen.push({ where: f.path, text: f.text });
      rmSync(dir, { recursive: true, force: true });
    }
  };
  const assertNoSecret = () => {
    for (const { where, text } of seen) {
      for (const [name, secret] of secrets) {
        // the full key and its 43 significant characters (a key shown without its padding is the key too)
        assert.ok(!text.includes(secret.slice(0, 43)), `${name} appears in ${where}`);
      }
      assert.doesNotMatch(text, /bundle mode/, where);
    }
  };

  it('brings the mesh up and reads the real keys from the nodes', async () => {
    const r = await run(['up', INVENTORY, '--yes', '--no-color']);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    for (const node of NODES) {
      const key = await sh(node, 'cat /etc/wireguard/wg0.key');
      assert.match(key, /^[A-Za-z0-9+/]{43}=$/);
      keys.set(node, key);
      secrets.set(`${node}'s private key`, key);
    }
    secrets.set('the planted preshared key', preshared);
  });

  it('plants the corpus: secret-bearing wg0.conf variants on every node, a private key as wg0.pub on two', async () => {
    const k = (node: string) => keys.get(node)!;
    const corpus: Record<string, string[]> = {
      'ms-1': [
        `#PrivateKey = ${k('ms-1')}`,
        `Private Key = ${k('ms-1')}`,
        `PostUp = wg set %i private-key <(echo ${k('ms-1')})`,
        `PostUp = echo ${k('ms-1')} | wg set %i private-key /dev/stdin`,
      ],
      'wk-1': [
        `PresharedKey = ${preshared}`,
        `PreUp = printf '%s' ${k('wk-1')} > /run/wg0-key`,
        `Address = 172.27.15.11/32 # old key ${k('wk-1')}`,
      ],
      'wk-2': [`PostDown = wg set %i peer ${k('wk-2')} preshared-key <(echo ${preshared})`, `Pre Shared Key=${preshared}`],
      'ctb-edge-1': [`PRIVATEKEY\t=\t${k('ctb-edge-1')}`, `# backup ${k('ctb-edge-1').slice(0, 43)}`, `; PrivateKey=${k('ctb-edge-1')}`],
    };
    for (const [node, lines] of Object.entries(corpus)) {
      // after the [Interface] line, so the lines are in the file's first section as a person would write them
      const script = lines.map((l) => `/^\\[Interface\\]/a ${l}`.replaceAll("'", "'\\''")).join('\n');
      await sh(node, `printf '%s\\n' '${script}' > /tmp/plant.sed && sed -i -f /tmp/plant.sed ${CONF} && rm /tmp/plant.sed`);
      for (const l of lines) assert.ok((await sh(node, `cat ${CONF}`)).includes(l), `${node}: ${l} not planted`);
    }
    // the own key pasted as a peer's PublicKey (a new peer section at the end)
    await sh('wk-1', `printf '\\n[Peer]\\nPublicKey = %s\\nAllowedIPs = 172.27.15.99/32\\n' "$(cat /etc/wireguard/wg0.key)" >> ${CONF}`);
    for (const node of SWAPPED) await sh(node, 'cp /etc/wireguard/wg0.key /etc/wireguard/wg0.pub');
  });

  it('up --dry-run, text and JSON: the plan shows diffs and the .pub repair, no secret', async () => {
    const text = await run(['up', INVENTORY, '--dry-run', '--no-color']);
    assert.equal(text.code, 0, text.stdout + text.stderr);
    assert.match(text.stdout + text.stderr, /\[redacted\]/, 'the planted values are shown redacted');
    assert.match(text.stdout + text.stderr, /rewrite \/etc\/wireguard\/wg0\.pub/);
    const json = await run(['up', INVENTORY, '--dry-run', '--json']);
    assert.equal(json.code, 0, json.stderr);
    JSON.parse(json.stdout);
    assertNoSecret();
  });

  it('verify, text, --verbose and JSON: no secret (the swapped .pub is not shown)', async () => {
    await run(['verify', INVENTORY]);
    await run(['verify', INVENTORY, '--verbose']);
    const json = await run(['verify', INVENTORY, '--json']);
    const report = JSON.parse(json.stdout) as { checks: Array<{ node: string; id: string; status: string; evidence?: string[] }> };
    for (const node of SWAPPED) {
      const check = report.checks.find((c) => c.node === node && c.id === 'public-key');
      assert.equal(check?.status, 'warn', `${node}: the swapped .pub is named: ${JSON.stringify(check)}`);
      assert.ok(
        check?.evidence?.some((e) => /wg0\.pub: \(not the public key/.test(e)),
        JSON.stringify(check),
      );
    }
    assertNoSecret();
  });

  it('debug --tcpdump, text and JSON: no secret in its output or its bundle, the bundle is private', async () => {
    // a stale capture of an older, interrupted run in each layout, world-readable: the next capture removes them
    for (const node of ['ms-1', 'wk-2'])
      await sh(
        node,
        'mkdir -p /tmp/meshctl-debug-stale1 && echo x > /tmp/meshctl-debug-stale1/capture.pcap && echo x > /tmp/meshctl-debug-stale2.pcap && chmod 644 /tmp/meshctl-debug-stale2.pcap',
      );
    await run(['debug', INVENTORY, '--pair', 'ms-1,wk-2', '--tcpdump', '--seconds', '2']);
    await run(['debug', INVENTORY, '--pair', 'wk-1,ctb-edge-1', '--tcpdump', '--seconds', '2', '--json']);
    assert.ok(seen.some((s) => /\.pcap$/.test(s.where)) || bundles().length > 0, 'debug --tcpdump wrote a bundle');
    collectBundles();
    for (const node of ['ms-1', 'wk-2'])
      assert.equal(await sh(node, 'ls -d /tmp/meshctl-debug-* 2>/dev/null; true'), '', `${node}: stale captures left`);
    assertNoSecret();
  });

  it('debug --tcpdump interrupted by SIGINT: whatever capture is left on a node is private, and the next run removes it', async () => {
    const { argv, env } = meshctlInOperator(
      lab().name,
      labArgs(lab().name, ['debug', INVENTORY, '--pair', 'ms-1,wk-2', '--tcpdump', '--seconds', '20']),
    );
    const output = await new Promise<{ code: number | null; text: string }>((resolve) => {
      const child = spawn(argv[0]!, argv.slice(1), { env, stdio: ['ignore', 'pipe', 'pipe'] });
      let text = '';
      let sent = false;
      const onData = (chunk: Buffer) => {
        text += chunk.toString();
        if (!sent && /capturing on/.test(text)) {
          sent = true;
          setTimeout(() => child.kill('SIGINT'), 1500);
        }
      };
      child.stdout.on('data', onData);
      child.stderr.on('data', onData);
      const guard = setTimeout(() => child.kill('SIGKILL'), 120_000);
      child.on('close', (code) => {
        clearTimeout(guard);
        resolve({ code, text });
      });
    });
    seen.push({ where: 'interrupted debug', text: output.text });
    assert.match(output.text, /capturing on/, output.text);
    for (const node of ['ms-1', 'wk-2']) {
      // every capture left is a 0700 directory of root's, with no file anyone else may read
      const listing = await sh(
        node,
        'for d in /tmp/meshctl-debug-*; do [ -e "$d" ] && stat -c "%a %U %F %n" "$d"; done; find /tmp -maxdepth 2 -path "/tmp/meshctl-debug-*" -type f -perm /077; true',
      );
      for (const line of listing.split('\n').filter(Boolean))
        assert.match(line, /^700 root directory \/tmp\/meshctl-debug-\w+$/, `${node}: ${listing}`);
    }
    // kill any tcpdump the interrupted run left (its own `timeout` would end it within seconds anyway)
    for (const node of ['ms-1', 'wk-2'])
      await sh(
        node,
        'for p in $(pgrep -x timeout; pgrep -x tcpdump); do grep -q meshctl-debug /proc/$p/cmdline 2>/dev/null && kill $p; done; sleep 0.5; true',
      );
    await run(['debug', INVENTORY, '--pair', 'ms-1,wk-2', '--tcpdump', '--seconds', '1']);
    collectBundles();
    for (const node of ['ms-1', 'wk-2'])
      assert.equal(await sh(node, 'ls -d /tmp/meshctl-debug-* 2>/dev/null; true'), '', `${node}: captures left`);
    assertNoSecret();
  });

  it('up repairs the swapped .pub (mode 644, the public key) and keeps every node key; no secret printed', async () => {
    const r = await run(['up', INVENTORY, '--yes', '--no-color']);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    for (const node of NODES) {
      assert.equal(await sh(node, 'cat /etc/wireguard/wg0.key'), keys.get(node), `${node} lost its key`);
      const pub = await sh(node, 'stat -c %a /etc/wireguard/wg0.pub; cat /etc/wireguard/wg0.pub; wg pubkey < /etc/wireguard/wg0.key');
      const [mode, file, derived] = pub.split('\n');
      assert.equal(mode, '644', `${node}: .pub mode`);
      assert.equal(file, derived, `${node}: .pub is not the public key`);
    }
    const v = await run(['verify', INVENTORY, '--json']);
    assert.equal(v.code, 0, v.stdout);
    assertNoSecret();
  });

  it('cleans up: no bundle left in the cwd, the planted backups removed from the nodes', async () => {
    collectBundles();
    assert.deepEqual(bundles(), []);
    // up kept the planted file as wg0.conf.bak (mode 600, on the node only): the lab goes, but leave nothing planted
    for (const node of NODES) await sh(node, 'rm -f /etc/wireguard/wg0.conf.bak /tmp/plant.sed');
    assert.ok(!existsSync('meshctl-debug-stale1'));
  });
});
