/**
 * Starts real OpenSSH sshd instances for integration tests: 127.0.0.1 only, a free port, host keys and
 * authorized_keys in a temp directory. Every process started here is tracked and killed by stopAll().
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, connect } from 'node:net';
import { join } from 'node:path';
import type { Node } from '../../src/inventory/types.js';

export const SSHD = '/usr/sbin/sshd';

/** Why the suite cannot run here, or undefined when it can. */
export function sshdSkipReason(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root (sshd must run as root to log users in)';
  if (!existsSync(SSHD)) return `${SSHD} not installed (apt-get install openssh-server)`;
  for (const tool of ['ssh-keygen', 'ssh-agent', 'ssh-add', 'ssh']) {
    if (spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0) return `${tool} not installed (openssh-client)`;
  }
  return undefined;
}

export function keygen(
  file: string,
  type: 'ed25519' | 'rsa' | 'ecdsa' = 'ed25519',
  passphrase = '',
): { privateFile: string; publicLine: string } {
  const args = ['-q', '-t', type, '-N', passphrase, '-C', 'meshctl-test', '-f', file];
  if (type === 'rsa') args.push('-b', '2048');
  const r = spawnSync('ssh-keygen', args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`ssh-keygen failed: ${r.stderr}`);
  return { privateFile: file, publicLine: readFileSync(`${file}.pub`, 'utf8').trim() };
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}

const processes = new Set<ChildProcess>();

export interface Sshd {
  port: number;
  dir: string;
  /** host public key lines (type base64 comment), by type */
  hostKeys: Record<string, string>;
  log(): string;
  stop(): Promise<void>;
}

export interface SshdOptions {
  dir: string;
  authorizedKeys: string[];
  hostKeyTypes?: ('ed25519' | 'rsa' | 'ecdsa')[];
  extraConfig?: string[];
}

export async function startSshd(options: SshdOptions): Promise<Sshd> {
  const { dir } = options;
  mkdirSync(dir, { recursive: true });
  mkdirSync('/run/sshd', { recursive: true, mode: 0o755 }); // privilege separation directory
  const hostKeys: Record<string, string> = {};
  const keyLines: string[] = [];
  for (const type of options.hostKeyTypes ?? ['ed25519']) {
    const file = join(dir, `ssh_host_${type}_key`);
    if (!existsSync(file)) keygen(file, type);
    hostKeys[type] = readFileSync(`${file}.pub`, 'utf8').trim();
    keyLines.push(`HostKey ${file}`);
  }
  writeFileSync(join(dir, 'authorized_keys'), options.authorizedKeys.join('\n') + '\n', { mode: 0o600 });
  const port = await freePort();
  const config = [
    ...(options.extraConfig ?? []), // sshd keeps the first value of an option: these win
    `Port ${port}`,
    'ListenAddress 127.0.0.1',
    ...keyLines,
    `PidFile ${join(dir, 'sshd.pid')}`,
    `AuthorizedKeysFile ${join(dir, 'authorized_keys')}`,
    'PermitRootLogin prohibit-password',
    'PubkeyAuthentication yes',
    'PasswordAuthentication no',
    'KbdInteractiveAuthentication no',
    'UsePAM no',
    'StrictModes no',
    'AllowTcpForwarding yes',
    'PrintMotd no',
    'LogLevel VERBOSE',
  ];
  const configFile = join(dir, 'sshd_config');
  writeFileSync(configFile, config.join('\n') + '\n');
  const check = spawnSync(SSHD, ['-t', '-f', configFile], { encoding: 'utf8' });
  if (check.status !== 0) throw new Error(`sshd -t: ${check.stderr}`);

  let log = '';
  const child = spawn(SSHD, ['-D', '-e', '-f', configFile], { stdio: ['ignore', 'ignore', 'pipe'] });
  processes.add(child);
  child.stderr!.on('data', (d: Buffer) => (log += d.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.once('exit', () => processes.delete(child));

  // wait until it accepts TCP connections
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`sshd exited: ${log}`);
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect(port, '127.0.0.1');
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) break;
    if (Date.now() > deadline) throw new Error(`sshd did not listen on ${port}: ${log}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    port,
    dir,
    hostKeys,
    log: () => log,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 3000))]);
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    },
  };
}

/** Starts `ssh-agent -D -a SOCK` and loads the given key files (unencrypted). */
export async function startAgent(sock: string, keyFiles: string[]): Promise<{ sock: string; stop(): Promise<void> }> {
  const child = spawn('ssh-agent', ['-D', '-a', sock], { stdio: ['ignore', 'ignore', 'ignore'] });
  processes.add(child);
  child.once('exit', () => processes.delete(child));
  const deadline = Date.now() + 5000;
  while (!existsSync(sock)) {
    if (Date.now() > deadline || child.exitCode !== null) throw new Error('ssh-agent did not start');
    await new Promise((r) => setTimeout(r, 20));
  }
  for (const file of keyFiles) {
    const r = spawnSync('ssh-add', ['-q', file], { env: { ...process.env, SSH_AUTH_SOCK: sock }, encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`ssh-add failed: ${r.stderr}`);
  }
  return {
    sock,
    stop: async () => {
      const exited = new Promise<void>((resolve) => (child.exitCode !== null ? resolve() : child.once('exit', () => resolve())));
      child.kill('SIGTERM');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 3000))]);
    },
  };
}

/** Kills whatever is still running (safety net for after hooks). */
export function killAll(): void {
  for (const child of processes) {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
  processes.clear();
}

/** Polls `cond` every 50 ms for up to 60 s (slow is not wrong on a loaded machine); whether it came true. */
export async function eventually(cond: () => boolean): Promise<boolean> {
  for (let i = 0; i < 1200; i++) {
    if (cond()) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return cond();
}

/**
 * A node reached at `sshd` as root with `identityFile`, and the environment that finds it: known_hosts with the
 * sshd's Ed25519 key, an empty ssh config and HOME, all under `root` (which must exist).
 */
export function loopbackNode(root: string, sshd: Sshd, identityFile: string): { node: Node; env: NodeJS.ProcessEnv } {
  const home = join(root, 'home');
  mkdirSync(home, { recursive: true });
  const knownHosts = join(root, 'known_hosts');
  writeFileSync(knownHosts, `[127.0.0.1]:${sshd.port} ${sshd.hostKeys.ed25519!.split(' ').slice(0, 2).join(' ')}\n`);
  writeFileSync(join(root, 'ssh_config'), '');
  const env = { PATH: process.env.PATH, HOME: home, MESHCTL_KNOWN_HOSTS: knownHosts, MESHCTL_SSH_CONFIG: join(root, 'ssh_config') };
  const node = {
    name: 'n1',
    site: 'loop',
    address: '127.0.0.1',
    overlayIp: '10.99.0.1',
    listenPort: 51820,
    ssh: { host: '127.0.0.1', port: sshd.port, user: 'root', become: 'none', identityFile },
  } as Node;
  return { node, env };
}
