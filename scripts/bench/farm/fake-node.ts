/**
 * An in-process fake of a fresh Debian 12 node behind the Connection seam (src/transport/types.ts), for measuring
 * meshctl's own CPU at farm scale without any SSH, sandbox or process (scripts/bench/farm/plan-cost.ts).
 * It answers each part of the scripts meshctl sends the way a cold node would: the facts of a bare node
 * (test/fixtures/facts/bare-debian12.txt) with its run lock acquired, the install done, a new key whose public half
 * is derived from the node's name, the files written (the wg-quick file kept, its sha256 printed back), wg-quick up,
 * every ping answered, and after the pings the routes and peers of the config it holds. A script part it does not
 * know is answered with exit 0 and counted in `unknown`, so a new script shows up in the bench's output instead of
 * failing the run. Its own CPU is counted (`FakeFarm.cpuMicros`) so the bench can report meshctl's alone.
 */
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Connector } from '../../../src/engine/up.js';
import { loadInventory } from '../../../src/inventory/load.js';
import type { Inventory } from '../../../src/inventory/types.js';
import type { Connection, ConnectionStats, ExecResult, RunOptions } from '../../../src/transport/types.js';
import { farmInventory } from './inventory.js';

const BARE_FACTS = readFileSync(new URL('../../../test/fixtures/facts/bare-debian12.txt', import.meta.url), 'utf8');
const section = (name: string, body: string, rc = 0) => `@@meshctl begin ${name}\n${body}\n@@meshctl end ${name} rc=${rc}\n`;

/** The public key a fake node derives for itself: 32 bytes from its name, base64 (a WireGuard key's shape). */
export const fakePublicKey = (node: string) => createHash('sha256').update(`fake-node ${node}`).digest('base64');

/** What the farm's nodes share: the fake's own CPU time and the script parts it did not recognise. */
export class FakeFarm {
  /** CPU time spent inside the fakes' answers (µs, user + system), to subtract from the process's */
  cpuMicros = 0;
  /** first line of each script part no rule knew, with how often it came */
  readonly unknown = new Map<string, number>();
  /**
   * `disk`: a directory where each node keeps the wg-quick file it was sent (as a real node keeps it on its disk),
   * so the fakes hold no config in this process's memory and its RSS is meshctl's own; without it, in memory
   */
  constructor(private readonly disk?: string) {}
  node(name: string): FakeNode {
    return new FakeNode(name, this);
  }
  /** Keeps node `name`'s wg-quick file (on `disk` when set). */
  store(name: string, config: string | undefined): { read(): string } {
    if (this.disk === undefined || config === undefined) {
      // a copy of its own: a slice would hold the whole script it came in
      const kept = config === undefined ? '' : Buffer.from(config).toString();
      return { read: () => kept };
    }
    const path = join(this.disk, `${name}.conf`);
    writeFileSync(path, config);
    return { read: () => readFileSync(path, 'utf8') };
  }
  /** up's Connector over this farm: every node connects at once, a reconnect is a fresh fake of the same node. */
  connector(): Connector {
    return {
      connectAll: async (inventory) => ({
        connections: new Map(inventory.nodes.map((node) => [node.name, this.node(node.name)])),
        failures: new Map(),
        close: async () => undefined,
      }),
      connectOne: async (node) => this.node(node.name),
    };
  }
}

/**
 * The farm's inventory of `n` nodes (./inventory.ts), written to DIR/farm.yaml and loaded as meshctl loads one. Each
 * node gets its own (unused) port on loopback, as on the farm: nothing connects to it.
 */
export function fakeFarmInventory(n: number, dir: string): Inventory {
  const path = join(dir, 'farm.yaml');
  const farm = farmInventory(n);
  const port = new Map(farm.nodes.map((node, i) => [node.name, 20000 + i]));
  writeFileSync(path, farm.yaml((name) => ({ port: port.get(name)!, identityFile: '/nonexistent/id_fake' })));
  return loadInventory(path);
}

/** The config text written by the config step's atomic write of the wg-quick file (between its here-document markers). */
function writtenConfig(script: string): string | undefined {
  const at = script.indexOf('.conf.meshctl-tmp <<');
  if (at < 0) return undefined;
  const open = script.indexOf("<<'", at) + 3;
  const delimiter = script.slice(open, script.indexOf("'", open));
  const start = script.indexOf('\n', open) + 1;
  const end = script.indexOf(`\n${delimiter}\n`, start - 1);
  return end < 0 ? undefined : script.slice(start, end + 1);
}

/**
 * A script's way to a fake node: thrown when `options.signal` was aborted, false when it is never sent
 * (RunOptions.sendWhen said no), else counted in `stats.commands` and true after a turn of the event loop, as a
 * reply from the network would come; the fake makes its output then, as a reply exists from then on (made at the
 * call, every node's ping output was held at once before meshctl read the first: ~250 MB of the plan bench's peak at
 * 1,000 nodes that no network delivers at one instant).
 */
export async function arrives(stats: ConnectionStats, options: RunOptions): Promise<boolean> {
  if (options.signal?.aborted) throw options.signal.reason;
  if (options.sendWhen && !(await options.sendWhen)) return false;
  stats.commands++;
  await new Promise((resolve) => setImmediate(resolve));
  return true;
}

/** One cold node. */
export class FakeNode implements Connection {
  readonly stats: ConnectionStats = { commands: 0, remoteMs: 0, connectMs: 0 };
  readonly target: string;
  private config: { read(): string } | undefined;

  constructor(
    readonly node: string,
    private readonly farm: FakeFarm,
  ) {
    this.target = `root@${node}:22`;
  }

  async run(script: string, options: RunOptions = {}): Promise<ExecResult> {
    if (!(await arrives(this.stats, options))) return { code: 0, stdout: '', stderr: '', durationMs: 0 };
    const before = process.cpuUsage();
    const stdout = this.answer(script);
    const used = process.cpuUsage(before);
    this.farm.cpuMicros += used.user + used.system;
    return { code: 0, stdout, stderr: '', durationMs: 0 };
  }

  private answer(script: string): string {
    const out: string[] = [];
    const has = (text: string) => script.includes(text);
    if (has('@@meshctl begin uid')) {
      if (has('take_lock')) out.push(section('lock', 'acquired'));
      out.push(BARE_FACTS.replace('\nwk-1\n', `\n${this.node}\n`));
    } else if (has('take_lock')) out.push('acquired\n');
    else if (has('apt-get install')) out.push('wireguard-tools v1.0.20210914\n');
    else if (has('wg genkey')) out.push(`created\n${fakePublicKey(this.node)}\n`);
    else if (has('.conf.meshctl-tmp')) {
      const config = writtenConfig(script);
      this.config = this.farm.store(this.node, config);
      out.push(`config=${createHash('sha256').update(config ?? '').digest('hex')}\n`, 'sysctl=x\ndropin=x\nrp_filter=2,2\n');
      if (has('echo rollback=armed')) out.push('rollback=armed\n');
    } else if (has('systemctl enable --now')) out.push('ifindex=7\nactive=active\nenabled=enabled\n');
    else if (has('@@meshctl begin ping:') || has("'@@meshctl begin ping:")) out.push(this.pings(script));
    else if (has('echo rollback=disarmed')) out.push('rollback=disarmed\n');
    else if (script !== 'true' && !has('rm -f')) {
      const head = script.split('\n').find((l) => l.trim() && !l.startsWith('export ')) ?? '';
      this.farm.unknown.set(head.slice(0, 80), (this.farm.unknown.get(head.slice(0, 80)) ?? 0) + 1);
    }
    return out.join('');
  }

  /** Every ping answered; then the routes and peers (handshake now) of the config this node holds. */
  private pings(script: string): string {
    const ips = new Set<string>();
    // the ping script lists its peers once, as positional parameters (`set -- IP...`, src/checks/probes.ts pingScript)
    for (const line of script.matchAll(/^set -- ((?:'?\d+\.\d+\.\d+\.\d+'? ?)+)$/gm))
      for (const m of line[1]!.matchAll(/\d+\.\d+\.\d+\.\d+/g)) ips.add(m[0]);
    const parts: string[] = [];
    for (const ip of ips)
      parts.push(section(`ping:${ip}`, '3 packets transmitted, 3 received, 0% packet loss, time 2ms\nrtt min/avg/max/mdev = 0.1/0.1/0.1/0.0 ms'));
    const now = Math.floor(Date.now() / 1000);
    const peers: string[] = [];
    const routes: string[] = [];
    let key = '';
    for (const line of (this.config?.read() ?? '').split('\n')) {
      if (line.startsWith('PublicKey = ')) key = line.slice(12);
      if (line.startsWith('AllowedIPs = ')) {
        const ips = line.slice(13).replaceAll(' ', '');
        peers.push(`wg0\t${key}\t(none)\t(none)\t${ips}\t${now}\t92\t92\toff`);
        for (const cidr of ips.split(',')) routes.push(`${cidr.replace(/\/32$/, '')} dev wg0 scope link`);
      }
    }
    parts.push(section('routes', routes.join('\n')), section('dump', peers.join('\n')), section('now', String(now)), section('done', ''));
    return parts.join('');
  }

  async close(): Promise<void> {}
}
