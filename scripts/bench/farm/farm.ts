/**
 * The simulated farm: N nodes that answer SSH on 127.0.0.1 (ssh2's server side, one port and one host key per node),
 * each command run by a real `sh` inside a per-node bubblewrap sandbox whose system tools are simulated
 * (./sim/farmsim, one perl program run as wg, wg-quick, ip, systemctl, systemd-run, sysctl, apt-get, dpkg-query, ss,
 * ping, fping, modinfo).
 *
 *   node --import tsx scripts/bench/farm/farm.ts --nodes N --dir DIR
 *
 * writes DIR/inventory.yaml, DIR/known_hosts, DIR/id_client (the client key meshctl logs in with), DIR/env (the
 * MESHCTL_* variables to run meshctl with), prints "farm ready N" on stdout once every node listens, and serves
 * until SIGTERM/SIGINT. Every node's state lives in DIR/nodes/NAME (see docs/farm.md for the model and its limits).
 *
 * Safety (the sandbox makes these impossible, not just unlikely): the host's / is mounted read-only, /etc is the
 * node's own directory of symlinks into a read-only copy of the host's /etc (only wireguard/, sysctl.d/ and
 * systemd/system/ are real, writable, per-node directories), /run, /sys/class/net, /proc/sys/net/ipv4/conf and
 * /usr/local/sbin (the simulated tools, first in meshctl's PATH) are the node's own directories, and every command
 * runs in an empty network namespace (--unshare-net): no packet can leave it. The servers listen on 127.0.0.1 only.
 */
import ssh2 from 'ssh2';
import { spawn, spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, symlinkSync, writeFileSync, existsSync, chmodSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { farmInventory, type FarmNode } from './inventory.js';

const { Server, utils } = ssh2;
const here = dirname(fileURLToPath(import.meta.url));
/** the simulated tools (MESHCTL_FARM_SIM: another copy, e.g. to try a change beside a running farm) */
const SIM = process.env.MESHCTL_FARM_SIM ?? join(here, 'sim');
/** the tools a node has before anything is installed; wg and wg-quick come with the simulated wireguard-tools */
const BASE_TOOLS = ['ip', 'systemctl', 'systemd-run', 'sysctl', 'apt-get', 'dpkg-query', 'ss', 'ping', 'fping', 'modinfo'];
export const PACKAGE_TOOLS = ['wg', 'wg-quick'];

function arg(name: string, fallback?: string): string {
  const i = process.argv.indexOf(`--${name}`);
  if (i >= 0 && process.argv[i + 1]) return process.argv[i + 1]!;
  if (fallback === undefined) throw new Error(`--${name} is required`);
  return fallback;
}

/**
 * Copies the simulated tools into ROOT/sim (editing sim/ while a farm runs must not change that farm's nodes) and
 * makes each tool a link to the one program `farmsim` (which acts by the name it runs as: sim/farmsim), unless the
 * copy has a file of that name (MESHCTL_FARM_SIM: an older copy of separate tools, for comparison).
 */
export function simCopy(root: string, from = SIM): void {
  cpSync(from, join(root, 'sim'), { recursive: true, verbatimSymlinks: true });
  for (const t of [...BASE_TOOLS, ...PACKAGE_TOOLS]) {
    const file = join(root, 'sim', t);
    if (!existsSync(file)) symlinkSync('farmsim', file);
    chmodSync(file, 0o755);
  }
}

/** A template /etc: symlinks into the read-only host /etc (mounted at /run/farm-hostetc), three real directories. */
export function etcTemplate(dir: string): void {
  const writable = new Map([
    ['wireguard', [] as string[]],
    ['sysctl.d', readdirSync('/etc/sysctl.d')],
    ['systemd', readdirSync('/etc/systemd')],
  ]);
  mkdirSync(dir, { recursive: true });
  for (const entry of readdirSync('/etc')) {
    if (writable.has(entry)) continue;
    symlinkSync(`/run/farm-hostetc/${entry}`, join(dir, entry));
  }
  for (const [name, entries] of writable) {
    mkdirSync(join(dir, name));
    for (const e of entries) if (e !== 'system') symlinkSync(`/run/farm-hostetc/${name}/${e}`, join(dir, name, e));
  }
  mkdirSync(join(dir, 'systemd', 'system'));
  for (const e of readdirSync('/etc/systemd/system')) symlinkSync(`/run/farm-hostetc/systemd/system/${e}`, join(dir, 'systemd', 'system', e));
}

/** One node's directories: etc (from the template), run (with systemd's marker), sysnet, procconf, bin, locallib, state. */
export function nodeDirs(root: string, template: string, node: FarmNode): string {
  const d = join(root, 'nodes', node.name);
  cpSync(template, join(d, 'etc'), { recursive: true, verbatimSymlinks: true });
  mkdirSync(join(d, 'run', 'systemd', 'system'), { recursive: true });
  mkdirSync(join(d, 'run', 'farm-node'), { recursive: true });
  for (const [iface, index] of [
    ['lo', 1],
    ['eth0', 2],
  ] as const) {
    mkdirSync(join(d, 'sysnet', iface), { recursive: true });
    writeFileSync(join(d, 'sysnet', iface, 'ifindex'), `${index}\n`);
  }
  for (const c of ['all', 'default', 'lo', 'eth0']) {
    mkdirSync(join(d, 'procconf', c), { recursive: true });
    writeFileSync(join(d, 'procconf', c, 'rp_filter'), c === 'lo' ? '0\n' : '2\n');
  }
  mkdirSync(join(d, 'bin'), { recursive: true });
  // /usr/local/lib of the node: meshctl's re-resolve script goes to /usr/local/lib/meshctl (src/remote/wireguard.ts)
  mkdirSync(join(d, 'locallib'), { recursive: true });
  for (const t of BASE_TOOLS) symlinkSync(`/run/farm-sim/${t}`, join(d, 'bin', t));
  writeFileSync(join(d, 'run', 'farm-node', 'self'), `name=${node.name}\noverlay=${node.overlayIp}\n`);
  return d;
}

/** What the farm counts, over all nodes: session channels, the most open at once, bytes meshctl sent (commands + stdin). */
export interface FarmStats {
  channels: number;
  open: number;
  peak: number;
  bytesIn: number;
  /** CPU seconds of the farm (its server and every finished sandbox), written with the counts */
  cpuS?: number;
  /** of it, the farm's own process (its ssh2 servers: key exchange, ciphers, channels), not the sandboxes */
  selfCpuS?: number;
}

/** CPU seconds (user + system) of this process and its waited-for children (every sandbox), from /proc/self/stat. */
function farmCpuS(self = false): number {
  const stat = readFileSync('/proc/self/stat', 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // fields[11..14] are utime, stime, cutime, cstime (proc(5) fields 14-17), in clock ticks of 1/100 s
  return fields.slice(11, self ? 13 : 15).reduce((sum, f) => sum + Number(f), 0) / 100;
}

/** The environment every command on a node starts with (sshd gives a root login much the same). */
export function commandEnv(node: FarmNode): Record<string, string> {
  return { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', HOME: '/root', FARM_NODE: node.name };
}

/**
 * The bwrap command line for one command on one node (MESHCTL_FARM_SANDBOX=command: a sandbox per command, as the
 * farm did before) or, with `command` undefined, for the node's one long-lived sandbox: a `sh` that prints its pid
 * and then waits on its stdin (the farm's pipe: it ends with the farm) while every command enters its namespaces.
 */
export function sandboxArgs(root: string, node: FarmNode, command?: string): string[] {
  const d = join(root, 'nodes', node.name);
  return [
    // only /usr (and merged-usr's links) from the host: binding all of / copied every mount under it, and another
    // session's mount that vanished meanwhile (a lab's /run/netns/NAME) failed the sandbox; / itself is made
    // read-only below, after the node's own mounts
    '--ro-bind', '/usr', '/usr',
    '--symlink', 'usr/bin', '/bin',
    '--symlink', 'usr/sbin', '/sbin',
    '--symlink', 'usr/lib', '/lib',
    '--symlink', 'usr/lib64', '/lib64',
    '--dir', '/root',
    '--dir', '/var/tmp',
    '--dev', '/dev',
    '--proc', '/proc',
    '--tmpfs', '/tmp',
    '--bind', join(d, 'run'), '/run',
    '--ro-bind', '/etc', '/run/farm-hostetc',
    '--bind', join(d, 'etc'), '/etc',
    '--ro-bind', join(root, 'sim'), '/run/farm-sim',
    '--ro-bind', join(root, 'nodes'), '/run/farm-all',
    '--ro-bind', join(root, 'index'), '/run/farm-index',
    '--bind', join(d, 'sysnet'), '/sys/class/net',
    '--bind', join(d, 'procconf'), '/proc/sys/net/ipv4/conf',
    '--bind', join(d, 'bin'), '/usr/local/sbin',
    '--bind', join(d, 'locallib'), '/usr/local/lib',
    '--unshare-net', '--unshare-ipc', '--unshare-uts', '--hostname', node.name,
    '--remount-ro', '/',
    '--die-with-parent',
    '--setenv', 'PATH', '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
    '--setenv', 'HOME', '/root',
    '--setenv', 'FARM_NODE', node.name,
    '--chdir', '/',
    ...(command === undefined ? ['/bin/sh', '-c', 'echo $$; exec cat >/dev/null'] : ['/bin/sh', '-c', command]),
  ];
}

/**
 * `nsenter` into a node's long-lived sandbox (its pid `holder`): its mount (root and cwd included), network, UTS
 * and IPC namespaces, then `/bin/sh -c COMMAND`. No new namespace per command: a bwrap per command (an empty
 * network namespace made and torn down, ~20 mounts) was most of the farm's cost per node. nsenter without a pid
 * namespace does not fork: the child is the command's shell, so killing it stops the command as before.
 */
export function enterArgs(holder: number, command: string): string[] {
  return ['-t', String(holder), '-m', '-n', '-u', '-i', '-r', '-w', '/bin/sh', '-c', command];
}

/** per-command sandboxes (the old way, for comparison) when MESHCTL_FARM_SANDBOX=command */
const perCommand = process.env.MESHCTL_FARM_SANDBOX === 'command';
/** each node's long-lived sandbox: the pid of its waiting shell (inside it, every command's namespaces) */
const holders = new Map<string, Promise<number>>();

/** The pid of the node's long-lived sandbox, started on first use (and again if it ever ended). */
function holderOf(root: string, node: FarmNode): Promise<number> {
  let pid = holders.get(node.name);
  if (pid) return pid;
  pid = new Promise<number>((res, rej) => {
    const child = spawn('bwrap', sandboxArgs(root, node), { stdio: ['pipe', 'pipe', 'inherit'] });
    running.add(child);
    let out = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('\n')) res(Number(out.trim()));
    });
    child.once('exit', (code) => {
      running.delete(child);
      holders.delete(node.name);
      rej(new Error(`the sandbox of ${node.name} ended (${code})`));
    });
  });
  pid.catch(() => undefined);
  holders.set(node.name, pid);
  return pid;
}

/** Starts one command on one node: in its long-lived sandbox (default) or in a new one (MESHCTL_FARM_SANDBOX=command). */
async function startCommand(root: string, node: FarmNode, command: string): Promise<ReturnType<typeof spawn>> {
  if (perCommand) return spawn('bwrap', sandboxArgs(root, node, command), { stdio: ['pipe', 'pipe', 'pipe'] });
  const holder = await holderOf(root, node);
  return spawn('nsenter', enterArgs(holder, command), { stdio: ['pipe', 'pipe', 'pipe'], env: commandEnv(node) });
}

/** An ED25519 pair that ssh2 can read back (now and then it writes one its own parser refuses: make another). */
function keyPair(): { private: string; public: string } {
  for (;;) {
    const pair = utils.generateKeyPairSync('ed25519');
    if (!(utils.parseKey(pair.private) instanceof Error) && !(utils.parseKey(pair.public) instanceof Error)) return pair;
  }
}

function listen(server: InstanceType<typeof Server>): Promise<number> {
  return new Promise((res, rej) => {
    server.once('error', rej);
    server.listen(0, '127.0.0.1', () => res((server.address() as AddressInfo).port));
  });
}

/** every sandbox still running (a stopped farm kills them: nothing of it outlives it) */
const running = new Set<ReturnType<typeof spawn>>();

/** Serves one node: public-key login with the farm's client key only; every exec runs in the node's sandbox. */
function nodeServer(root: string, node: FarmNode, hostKey: string, clientKey: ReturnType<typeof utils.parseKey>, stats: FarmStats) {
  const client = Array.isArray(clientKey) ? clientKey[0]! : clientKey;
  if (client instanceof Error) throw client;
  return new Server({ hostKeys: [hostKey] }, (conn) => {
    conn.on('authentication', (ctx) => {
      if (ctx.method !== 'publickey' || ctx.key.algo !== client.type || !ctx.key.data.equals(client.getPublicSSH())) return ctx.reject(['publickey']);
      if (!ctx.signature) return ctx.accept(); // the "would this key do" query
      if (client.verify(ctx.blob!, ctx.signature, ctx.hashAlgo) === true) return ctx.accept();
      return ctx.reject(['publickey']);
    });
    conn.on('ready', () => {
      conn.on('session', (acceptSession) => {
        const session = acceptSession();
        stats.channels++;
        stats.open++;
        stats.peak = Math.max(stats.peak, stats.open);
        let closed = false;
        const done = () => {
          if (!closed) {
            closed = true;
            stats.open--;
          }
        };
        session.on('close', done);
        session.on('env', (accept) => accept?.());
        session.on('signal', (accept) => accept?.()); // like sshd for root logins: accepted, nothing happens
        session.on('exec', async (accept, _reject, info) => {
          const stream = accept();
          stats.bytesIn += Buffer.byteLength(info.command);
          stream.on('data', (d: Buffer) => (stats.bytesIn += d.length));
          // (stdin meanwhile waits in the stream: it is piped below, paused until then)
          stream.pause();
          let child: ReturnType<typeof spawn> | undefined;
          let gone = false;
          stream.on('close', () => {
            gone = true;
            done();
            if (child && child.exitCode === null) child.kill('SIGKILL');
          });
          try {
            child = await startCommand(root, node, info.command);
          } catch (err) {
            stream.stderr.write(`farm: ${(err as Error).message}\n`);
            stream.exit(255);
            stream.end();
            return;
          }
          if (gone) return void child.kill('SIGKILL');
          running.add(child);
          child.once('exit', () => running.delete(child!));
          stream.pipe(child.stdin!).on('error', () => undefined);
          child.stdout!.pipe(stream, { end: false });
          child.stderr!.pipe(stream.stderr, { end: false });
          child.on('close', (code, signal) => {
            // the exit status only once the output went out: an exit request is sent at once, ahead of data still
            // queued behind a full channel window, and the client then read a big output cut short (a verify's
            // checklist lost its last sections)
            stream.stderr.write('', () =>
              stream.write('', () => {
                if (signal) stream.exit(signal.replace(/^SIG/, ''), false, '');
                else stream.exit(code ?? 255);
                stream.end();
              }),
            );
          });
        });
      });
    });
    conn.on('error', () => undefined);
  });
}

async function main(): Promise<void> {
  const n = Number(arg('nodes'));
  const root = resolve(arg('dir'));
  rmSync(root, { recursive: true, force: true });
  mkdirSync(join(root, 'nodes'), { recursive: true });
  mkdirSync(join(root, 'index'), { recursive: true });
  simCopy(root);
  const template = join(root, 'etc-template');
  etcTemplate(template);

  const clientPair = keyPair();
  writeFileSync(join(root, 'id_client'), clientPair.private, { mode: 0o600 });
  writeFileSync(join(root, 'id_client.pub'), `${clientPair.public}\n`);
  const clientKey = utils.parseKey(clientPair.public);

  const nodes = farmInventory(n);
  const stats: FarmStats = { channels: 0, open: 0, peak: 0, bytesIn: 0 };
  const servers: InstanceType<typeof Server>[] = [];
  const known: string[] = [];
  const ports = new Map<string, number>();
  const ips: string[] = [];
  for (const node of nodes.nodes) {
    nodeDirs(root, template, node);
    // the overlay IP -> node (name, position) index the simulated ping and wg read (one file per IP: an O(1) lookup)
    writeFileSync(join(root, 'index', node.overlayIp), `${node.name} ${ips.length}\n`);
    ips.push(node.overlayIp);
    const hostPair = keyPair();
    const server = nodeServer(root, node, hostPair.private, clientKey, stats);
    const port = await listen(server);
    servers.push(server);
    ports.set(node.name, port);
    known.push(`[127.0.0.1]:${port} ${hostPair.public.split(' ').slice(0, 2).join(' ')}`);
  }
  // every node's long-lived sandbox, started now (its cost is the farm's start, not a step's)
  if (!perCommand) await Promise.all(nodes.nodes.map((node) => holderOf(root, node)));
  // every node's peer index (sim/_mesh.pl) has one record per overlay IP, in this order
  writeFileSync(join(root, 'index', 'ips'), `${ips.join('\n')}\n`);
  writeFileSync(join(root, 'known_hosts'), `${known.join('\n')}\n`);
  // a loaded machine opens 1,000 sandboxed logins slowly: every meshctl command (verify too) gets a long connect deadline
  // One process serves every simulated node and spawns their sandboxes: under load its event loop stalls for
  // seconds, which a real sshd per machine would not; so meshctl's keepalive (ssh config, as a user would set it)
  // waits up to 5 minutes instead of 15 s before it calls a connection lost.
  writeFileSync(join(root, 'ssh_config'), 'Host *\n  ConnectTimeout 300\n  ServerAliveInterval 15\n  ServerAliveCountMax 20\n');
  writeFileSync(join(root, 'inventory.yaml'), nodes.yaml((name) => ({ port: ports.get(name)!, identityFile: join(root, 'id_client') })));
  writeFileSync(
    join(root, 'env'),
    `MESHCTL_KNOWN_HOSTS=${join(root, 'known_hosts')}\nMESHCTL_SSH_CONFIG=${join(root, 'ssh_config')}\n`,
  );
  if (!existsSync('/usr/bin/bwrap') || spawnSync('bwrap', ['--version']).status !== 0) throw new Error('bwrap (bubblewrap) is not installed');
  // the handlers first: the bench signals as soon as it reads "farm ready" (SIGUSR2's default action kills)
  const stop = () => {
    for (const s of servers) s.close();
    for (const child of running) child.kill('SIGKILL');
    writeFileSync(join(root, 'server-stats.json'), JSON.stringify(stats));
    process.exit(0);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  // the bench asks for the counts of the last run (then they start again from zero)
  process.on('SIGUSR2', () => {
    // written whole, then renamed: the bench read a half-written file once (and ended with a JSON error)
    writeFileSync(join(root, 'server-stats.json.new'), JSON.stringify({ ...stats, cpuS: farmCpuS(), selfCpuS: farmCpuS(true) }));
    renameSync(join(root, 'server-stats.json.new'), join(root, 'server-stats.json'));
    Object.assign(stats, { channels: 0, peak: stats.open, bytesIn: 0 });
  });
  // a bench that died (killed, not stopped) leaves no farm behind: this process follows its parent
  const parent = process.ppid;
  setInterval(() => process.ppid !== parent && stop(), 5000).unref();
  process.stdout.write(`farm ready ${n}\n`);
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((err) => {
    process.stderr.write(`farm: ${(err as Error).stack ?? err}\n`);
    process.exit(1);
  });
}
