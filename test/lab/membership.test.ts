/**
 * Issue 9, membership: adding a node with `up` (only it is set up, every other node gains one peer by syncconf,
 * no session drops, a ping loop between two old nodes loses nothing), `--limit` (the limited node is rendered from
 * the whole inventory, no other node is touched), `down --purge` (the peer leaves the others; nothing of the mesh is
 * left on the node, and a later `up` passes its baseline there), and removing a node from the inventory (its peer
 * and route disappear everywhere). One lab built from a 5-node inventory; the first `up` uses the 4 first nodes.
 */
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describeLab, uniqueLabName } from './harness.js';
import { parseWgDumpPeers, type LivePeer } from '../../src/render/wgdump.js';
import { statePathFor } from '../../src/state/state.js';
import { keyShapedTokens } from '../../src/remote/redact.js';

const FIRST_FOUR = ['ms-1', 'wk-1', 'wk-2', 'ctb-edge-1'];
const NEW = 'ctb-edge-2';
const NEW_OVERLAY = '172.27.15.32';
const dir = mkdtempSync(join(tmpdir(), 'meshctl-membership-'));
const FOUR_TEXT = readFileSync('inventories/homelab.yaml', 'utf8');
const FIVE_TEXT = `${FOUR_TEXT.trimEnd()}\n  ${NEW}:\n    site: edge\n    address: 198.51.100.26\n    overlayIp: ${NEW_OVERLAY}\n`;
/** the lab is built from the 5-node inventory; the fifth node exists but the mesh starts without it */
const LAB_INVENTORY = join(dir, 'lab5.yaml');
writeFileSync(LAB_INVENTORY, FIVE_TEXT);
/** the operator's inventory, edited as a person would: 4 nodes, then 5, then 4 again */
const MESH = join(dir, 'mesh.yaml');

interface UpJson {
  result: string;
  changes: number;
  limit?: string[];
  phases: { id: string; verdict: string; nodes: { node: string; changes: string[] }[] }[];
}

describeLab(
  'membership: add, --limit, down --purge, remove (issue 9)',
  LAB_INVENTORY,
  (lab) => {
    const keys = new Map<string, string>();
    const sh = (node: string, script: string) => lab().sh(node, script);
    const meshctl = async (args: string[], code = 0) => {
      const result = await lab().meshctl(args);
      assert.equal(result.code, code, `meshctl ${args.join(' ')}\nstdout:\n${result.stdout}\nstderr:\n${result.stderr}`);
      return result;
    };
    const up = async (inventory: string, ...extra: string[]) =>
      JSON.parse((await meshctl(['up', inventory, '--yes', '--json', ...extra])).stdout) as UpJson;
    const livePeers = async (node: string): Promise<LivePeer[]> => parseWgDumpPeers(await sh(node, 'wg show wg0 dump | tail -n +2')).peers;
    /** what identifies a session: the interface (ifindex) and, per peer key, handshake time and received bytes */
    const sessions = async (node: string) => ({
      ifindex: (await sh(node, 'cat /sys/class/net/wg0/ifindex')).trim(),
      // wireguard-go's UDP sockets (inode numbers): a plain `wg syncconf` re-opens them even for the same port
      sockets: [...(await sh(node, "ss -uanpe 'sport = :51820'")).matchAll(/\bino:(\d+)/g)].map((m) => m[1]).sort(),
      peers: new Map((await livePeers(node)).map((p) => [p.publicKey, { handshake: p.latestHandshake ?? 0, rx: p.rxBytes }])),
    });
    type Sessions = Awaited<ReturnType<typeof sessions>>;
    const assertSessionsKept = (node: string, before: Sessions, after: Sessions, peers: string[]) => {
      assert.equal(after.ifindex, before.ifindex, `${node}: wg0 was re-created`);
      assert.ok(before.sockets.length > 0, `${node}: no UDP socket on port 51820`);
      assert.deepEqual(after.sockets, before.sockets, `${node}: the UDP socket of wg0 was re-opened (packets in flight lost)`);
      for (const name of peers) {
        const then = before.peers.get(keys.get(name)!);
        const now = after.peers.get(keys.get(name)!);
        assert.ok(then && now, `${node}: peer ${name} missing`);
        assert.ok(then.handshake > 0 && now.handshake >= then.handshake, `${node}: the handshake with ${name} was reset`);
        assert.ok(now.rx >= then.rx, `${node}: the peer ${name} was re-created (received ${then.rx} -> ${now.rx} bytes)`);
      }
    };
    const changesOf = (report: UpJson, node: string) => report.phases.flatMap((p) => p.nodes.find((n) => n.node === node)?.changes ?? []);
    const wg0Routes = async (node: string) =>
      (await sh(node, 'ip -4 route show dev wg0'))
        .trim()
        .split('\n')
        .map((l) => l.split(' ')[0]!)
        .sort();
    /** the fifth node's peer leaves no trace on `node`: live peers, wg0.conf, routes */
    const assertNoTraceOf = async (node: string, key: string) => {
      assert.ok(!(await livePeers(node)).some((p) => p.publicKey === key), `${node}: live peer ${NEW} still there`);
      const conf = await sh(node, 'cat /etc/wireguard/wg0.conf');
      assert.ok(!conf.includes(key) && !conf.includes(NEW_OVERLAY), `${node}: wg0.conf still names ${NEW}`);
      assert.ok(!(await wg0Routes(node)).includes(NEW_OVERLAY), `${node}: route to ${NEW_OVERLAY} still there`);
    };

    it('builds the mesh of the first four nodes, and records their public keys in the local state', async () => {
      writeFileSync(MESH, FOUR_TEXT);
      const report = await up(MESH);
      assert.equal(report.result, 'converged');
      for (const node of FIRST_FOUR) keys.set(node, (await sh(node, 'cat /etc/wireguard/wg0.pub')).trim());
      assert.equal((await lab().exec(NEW, ['test', '-e', '/sys/class/net/wg0'])).code, 1, `${NEW} must not be in the mesh yet`);
      const state = JSON.parse(readFileSync(statePathFor(MESH), 'utf8')) as { nodes: Record<string, { publicKey: string }> };
      assert.deepEqual(Object.keys(state.nodes).sort(), [...FIRST_FOUR].sort());
      for (const node of FIRST_FOUR) assert.equal(state.nodes[node]!.publicKey, keys.get(node));
      // no secret: every key-shaped value in it is a node's public key (the plan's scripts name key files, not keys)
      const publicKeys = new Set(keys.values());
      const strangers = keyShapedTokens(readFileSync(statePathFor(MESH), 'utf8')).filter((t) => !publicKeys.has(t));
      assert.deepEqual(strangers, [], 'the state holds only public keys');
    });

    it('adds a fifth node: only it is set up, the others gain one peer by syncconf, a ping loop loses nothing', async () => {
      const before = new Map(await Promise.all(FIRST_FOUR.map(async (n) => [n, await sessions(n)] as const)));
      writeFileSync(MESH, FIVE_TEXT);
      // ms-1 (home, behind the NAT) -> ctb-edge-1 (edge) through the whole `up`, 10 echo requests a second
      await sh('ms-1', 'rm -f /tmp/mb-stop');
      const loop = lab().exec(
        'ms-1',
        ['sh', '-c', 'ping -n -i 0.1 172.27.15.31 & p=$!; while [ ! -e /tmp/mb-stop ]; do sleep 0.1; done; kill -INT $p; wait $p'],
        { timeoutMs: 300_000 },
      );
      await new Promise((r) => setTimeout(r, 1000));
      let report: UpJson;
      try {
        report = await up(MESH);
      } finally {
        await sh('ms-1', 'sleep 1; touch /tmp/mb-stop');
      }
      const ping = await loop;
      const stats = ping.stdout.match(/(\d+) packets transmitted, (\d+) received/);
      assert.ok(stats, `no ping summary: ${ping.stdout.slice(-300)} ${ping.stderr}`);
      const [sent, received] = [Number(stats[1]), Number(stats[2])];
      // lost = echo requests with no reply BEFORE the last reply: the request in flight when the loop is stopped
      // (SIGINT within one round trip of a send) counts as "transmitted" without being lost, so the summary's
      // sent - received can be 1 on a mesh that dropped nothing
      const replied = new Set([...ping.stdout.matchAll(/icmp_seq=(\d+)/g)].map((m) => Number(m[1])));
      const last = Math.max(0, ...replied);
      const lost = Array.from({ length: last }, (_, i) => i + 1).filter((seq) => !replied.has(seq));
      process.stderr.write(
        `membership: ping loop during the add: ${sent} sent, ${received} received, ${lost.length} lost before the last reply (seq ${last})\n`,
      );
      assert.ok(sent > 20, `the ping loop ran (${sent} sent)`);
      assert.ok(sent - last <= 1, `the loop ran to its end: ${sent} sent, last reply to ${last}`);
      assert.deepEqual(lost, [], `echo requests lost while adding a node (of ${last})`);
      assert.equal(report.result, 'converged');
      keys.set(NEW, (await sh(NEW, 'cat /etc/wireguard/wg0.pub')).trim());
      for (const node of FIRST_FOUR) {
        const changes = changesOf(report, node);
        // one config write and one syncconf; no install, no key, no restart
        assert.ok(
          changes.some((c) => /wg syncconf wg0/.test(c)),
          `${node}: ${changes.join('; ')}`,
        );
        // (the rollback armed around the change names its units meshctl-revert-RUN-config/-enable: not an enable)
        assert.ok(!changes.some((c) => /\b(restart|install|generate|enable) /.test(c)), `${node}: ${changes.join('; ')}`);
        const after = await sessions(node);
        assertSessionsKept(
          node,
          before.get(node)!,
          after,
          FIRST_FOUR.filter((n) => n !== node),
        );
        assert.equal(after.peers.size, 4, `${node}: four peers now`);
        assert.ok(after.peers.has(keys.get(NEW)!), `${node}: gained ${NEW}`);
      }
      assert.ok(
        changesOf(report, NEW).some((c) => /enable/.test(c)),
        changesOf(report, NEW).join('; '),
      );
      // converged: the plan of the five has nothing left to do (exit 0)
      await meshctl(['plan', MESH]);
    });

    it('--limit on one node: rendered from the whole inventory, no other node touched; unknown names exit 2', async () => {
      const unknown = await meshctl(['up', MESH, '--yes', '--limit', 'ms-1,nope,gone'], 2);
      assert.match(unknown.stderr, /nope, gone/);
      assert.equal((await meshctl(['plan', MESH, '--limit', 'zzz'], 2)).code, 2);
      // break the live interface of the limited node AND of another node by hand
      await sh(NEW, `wg set wg0 peer ${keys.get('ms-1')} remove`);
      await sh('wk-1', `wg set wg0 peer ${keys.get('wk-2')} remove`);
      const confs = new Map(await Promise.all(FIRST_FOUR.map(async (n) => [n, await sh(n, 'sha256sum /etc/wireguard/wg0.conf')] as const)));
      const plan = await meshctl(['plan', MESH, '--json', '--limit', NEW], 4);
      const planned = JSON.parse(plan.stdout) as { phases: { nodes: { node: string }[] }[] };
      assert.deepEqual(
        [...new Set(planned.phases.flatMap((p) => p.nodes.map((n) => n.node)))],
        [NEW],
        'the plan names only the limited node',
      );
      const report = await up(MESH, '--limit', NEW);
      assert.equal(report.result, 'converged');
      assert.deepEqual(report.limit, [NEW]);
      assert.deepEqual([...new Set(report.phases.flatMap((p) => p.nodes.map((n) => n.node)))], [NEW]);
      // the limited node has every peer of the whole inventory back: nothing of the others was dropped
      const peers = (await livePeers(NEW)).map((p) => p.publicKey).sort();
      assert.deepEqual(peers, FIRST_FOUR.map((n) => keys.get(n)!).sort());
      assert.deepEqual(await wg0Routes(NEW), ['172.27.15.11', '172.27.15.12', '172.27.15.13', '172.27.15.31']);
      // the others were not changed at all: wk-1 still lacks the peer removed by hand, every file is as it was
      assert.ok(!(await livePeers('wk-1')).some((p) => p.publicKey === keys.get('wk-2')), 'wk-1 was changed outside the limit');
      for (const node of FIRST_FOUR) assert.equal(await sh(node, 'sha256sum /etc/wireguard/wg0.conf'), confs.get(node), node);
      // put wk-1 back by hand (its file is right; the reload drop-in syncs the live peers from it)
      await sh('wk-1', 'systemctl reload wg-quick@wg0');
      assert.ok((await livePeers('wk-1')).some((p) => p.publicKey === keys.get('wk-2')));
      // and give the re-created peer a session again (the next test checks that sessions are kept)
      await sh('wk-1', 'ping -n -c 3 -i 0.3 -W 6 172.27.15.13 >/dev/null');
    });

    it('down --purge on the fifth node: its peer leaves the others, nothing of the mesh is left on it', async () => {
      const dry = await meshctl(['down', MESH, NEW, '--purge', '--dry-run']);
      assert.match(dry.stdout, /stop and disable wg-quick@wg0/);
      assert.match(dry.stdout, /remove \/etc\/wireguard\/wg0\.key/);
      assert.equal((await lab().exec(NEW, ['test', '-e', '/sys/class/net/wg0'])).code, 0, 'a dry run changes nothing');
      const before = new Map(await Promise.all(FIRST_FOUR.map(async (n) => [n, await sessions(n)] as const)));
      await meshctl(['down', MESH, NEW, '--purge', '--yes']);
      for (const node of FIRST_FOUR) {
        await assertNoTraceOf(node, keys.get(NEW)!);
        assertSessionsKept(
          node,
          before.get(node)!,
          await sessions(node),
          FIRST_FOUR.filter((n) => n !== node),
        );
      }
      const left = await sh(
        NEW,
        'test -e /sys/class/net/wg0 && echo interface; ls /etc/wireguard 2>/dev/null; ls /etc/sysctl.d/99-wireguard.conf /etc/systemd/system/wg-quick@wg0.service.d 2>/dev/null; systemctl is-enabled wg-quick@wg0 2>/dev/null; systemctl is-active wg-quick@wg0 2>/dev/null; true',
      );
      assert.deepEqual(
        left
          .trim()
          .split('\n')
          .filter((l) => l && l !== 'disabled' && l !== 'inactive'),
        [],
        `left on ${NEW}: ${left}`,
      );
      const state = JSON.parse(readFileSync(statePathFor(MESH), 'utf8')) as { nodes: Record<string, unknown> };
      assert.ok(!(NEW in state.nodes), 'the state forgot the purged key');
      // idempotent: a second down finds nothing to do
      const again = await meshctl(['down', MESH, NEW, '--purge', '--dry-run']);
      assert.match(again.stdout, new RegExp(`${NEW}\\n\\s+nothing to do`));
    });

    it('a later `up` passes the baseline on the purged node and sets it up again with a new key', async () => {
      const report = await up(MESH);
      assert.equal(report.result, 'converged');
      assert.equal(report.phases.find((p) => p.id === 'baseline')!.verdict, 'GO');
      const key = (await sh(NEW, 'cat /etc/wireguard/wg0.pub')).trim();
      assert.notEqual(key, keys.get(NEW), 'a new key pair');
      keys.set(NEW, key);
    });

    it('removes the fifth node from the inventory: its peer and its route disappear everywhere', async () => {
      const before = new Map(await Promise.all(FIRST_FOUR.map(async (n) => [n, await sessions(n)] as const)));
      writeFileSync(MESH, FOUR_TEXT);
      const run = await meshctl(['up', MESH, '--yes', '--json']);
      // the local state still knows the node, so the run names it, and says what takes its own interface down
      assert.match(run.stderr, new RegExp(`note: ${NEW} is no longer in the inventory: its peer \\(.{10}…\\) is removed from every node`));
      assert.match(run.stderr, new RegExp(`its own wg0 stays up until \`meshctl down \\S+ ${NEW}\` takes it down`));
      const report = JSON.parse(run.stdout) as UpJson;
      assert.equal(report.result, 'converged');
      for (const node of FIRST_FOUR) {
        await assertNoTraceOf(node, keys.get(NEW)!);
        assertSessionsKept(
          node,
          before.get(node)!,
          await sessions(node),
          FIRST_FOUR.filter((n) => n !== node),
        );
      }
      // Q3 finding 8: its own interface is still up (only its peers went), and the state keeps how to reach it
      assert.equal((await lab().exec(NEW, ['test', '-e', '/sys/class/net/wg0'])).code, 0, `${NEW}: wg0 is still there`);
      const state = JSON.parse(readFileSync(statePathFor(MESH), 'utf8')) as { nodes: Record<string, { departed?: string; ssh?: unknown }> };
      assert.deepEqual(Object.keys(state.nodes).sort(), [...FIRST_FOUR, NEW].sort());
      assert.ok(state.nodes[NEW]!.departed && state.nodes[NEW]!.ssh, `${NEW} departed, with its SSH target`);
    });

    it('plan names the removed node, and down with the inventory that dropped it takes it down (Q3 finding 8)', async () => {
      const plan = await meshctl(['plan', MESH]);
      assert.match(
        plan.stdout,
        new RegExp(`note: ${NEW} left the inventory .* but its own wg0 was not taken down: \`meshctl down \\S+ ${NEW}\` does it`),
      );
      assert.match(plan.stdout, /nothing to change/);
      const down = await meshctl(['down', MESH, NEW, '--yes']);
      assert.match(down.stdout, new RegExp(`${NEW} already no peer of the 4 other node\\(s\\): nothing changed there`));
      assert.match(down.stdout, new RegExp(`mesh down on ${NEW}: [1-9]\\d* changes?`));
      assert.notEqual((await lab().exec(NEW, ['test', '-e', '/sys/class/net/wg0'])).code, 0, `${NEW}: wg0 is gone`);
      assert.equal((await sh(NEW, 'systemctl is-enabled wg-quick@wg0 || true')).trim(), 'disabled');
      // its re-resolve timer stops with it, the files kept (Q8: it went on firing every 30 s on a node without wg0)
      assert.equal((await sh(NEW, 'systemctl is-active meshctl-reresolve@wg0.timer || true')).trim(), 'inactive');
      assert.equal((await sh(NEW, 'test -e /etc/systemd/system/meshctl-reresolve@.timer && echo kept')).trim(), 'kept');
      const state = JSON.parse(readFileSync(statePathFor(MESH), 'utf8')) as { nodes: Record<string, unknown> };
      assert.deepEqual(Object.keys(state.nodes).sort(), [...FIRST_FOUR].sort(), 'the state forgets the node it took down');
      assert.ok(existsSync(statePathFor(MESH)));
      // now it is unknown to both: bad input that speaks of down, not of --limit
      const again = await meshctl(['down', MESH, NEW, '--dry-run'], 2);
      assert.match(again.stderr, new RegExp(`down names a node neither in \\S+ nor in its local state: ${NEW}`));
      assert.doesNotMatch(again.stderr, /--limit/);
      assert.doesNotMatch((await meshctl(['plan', MESH])).stdout, /note:/);
    });
  },
  { name: process.env.MESHCTL_LAB ?? uniqueLabName('mb') },
);
