/** One node: its overlay root, identity (host keys, hostname, users, keys), boot with systemd-nspawn, readiness. */
import { chmodSync, chownSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { NODE_APT_DIR, type PlannedNode } from './plan.js';
import type { NodePaths } from './paths.js';
import { findContainerInit } from './procs.js';
import { pidAlive } from './base.js';
import * as sys from './sys.js';
import { MeshctlError } from '../errors.js';
import { interruptSignal } from '../interrupt.js';

export interface PreparedNode {
  /** `TYPE BASE64` host public keys */
  hostKeys: string[];
  fingerprints: string[];
}

/** Makes the node's copy-on-write root and writes everything that makes it this node, before its first boot. */
export async function prepareNode(
  node: PlannedNode,
  paths: NodePaths,
  base: string,
  operatorPub: string,
  mounted: (point: string) => void,
): Promise<PreparedNode> {
  for (const dir of [paths.upper, paths.work, paths.root]) mkdirSync(dir, { recursive: true });
  await sys.mountOverlay(base, paths.upper, paths.work, paths.root);
  mounted(paths.root);
  const root = paths.root;
  await sys.sshKeygenHostKeys(root);
  writeFileSync(join(root, 'etc/hostname'), `${node.name}\n`);
  // sudo resolves the host name; without this it warns "unable to resolve host" on every call
  writeFileSync(join(root, 'etc/hosts'), `127.0.0.1\tlocalhost\n127.0.1.1\t${node.name}\n::1\t\tlocalhost ip6-localhost ip6-loopback\n`);
  writeFileSync(join(root, 'etc/machine-id'), `${randomBytes(16).toString('hex')}\n`);
  if (node.sshPort !== 22) writeFileSync(join(root, 'etc/ssh/sshd_config.d/20-meshctl-lab-port.conf'), `Port ${node.sshPort}\n`);

  installAuthorizedKey(root, '/root', 0, 0, operatorPub);
  for (const user of node.sudoUsers) {
    if (!passwdEntry(root, user)) await sys.addUser(root, user);
    const entry = passwdEntry(root, user)!;
    installAuthorizedKey(root, entry.home, entry.uid, entry.gid, operatorPub);
    writeFileSync(join(root, 'etc/sudoers.d', `meshctl-lab-${user}`), `${user} ALL=(ALL:ALL) NOPASSWD: ALL\n`, { mode: 0o440 });
  }

  const sshDir = join(root, 'etc/ssh');
  const pubFiles = readdirSync(sshDir)
    .filter((f) => /^ssh_host_.*_key\.pub$/.test(f))
    .sort();
  const hostKeys = pubFiles.map((f) => readFileSync(join(sshDir, f), 'utf8').trim().split(/\s+/).slice(0, 2).join(' '));
  const fingerprints = await Promise.all(pubFiles.map(async (f) => (await sys.sshKeygenFingerprint(join(sshDir, f))).trim()));
  return { hostKeys, fingerprints };
}

function installAuthorizedKey(root: string, home: string, uid: number, gid: number, pub: string): void {
  const dir = join(root, home, '.ssh');
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
  const file = join(dir, 'authorized_keys');
  writeFileSync(file, pub.trim() + '\n', { mode: 0o600 });
  chownSync(dir, uid, gid);
  chownSync(file, uid, gid);
}

function passwdEntry(root: string, user: string): { uid: number; gid: number; home: string } | undefined {
  const line = readFileSync(join(root, 'etc/passwd'), 'utf8')
    .split('\n')
    .find((l) => l.startsWith(`${user}:`));
  if (!line) return undefined;
  const fields = line.split(':');
  return { uid: Number(fields[2]), gid: Number(fields[3]), home: fields[5]! };
}

export interface StartedNode {
  nspawnPid: number;
  leaderPid: number;
}

/** Boots the node detached; returns once its systemd (PID 1 inside) exists. */
export async function startNode(lab: string, node: PlannedNode, paths: NodePaths, repo: string): Promise<StartedNode> {
  const argv = sys.nspawnArgv({
    root: paths.root,
    machine: `ml-${lab}-${node.name}`.slice(0, 64),
    hostname: node.name,
    netnsPath: `/run/netns/${node.namespace}`,
    binds: ['/dev/net/tun'],
    bindsReadOnly: [`${repo}:${NODE_APT_DIR}`],
  });
  // makes /proc/sys/net writable for the node's own network namespace (rp_filter, forwarding), see lab.md
  const nspawnPid = sys.spawnDetached(argv, paths.log, { ...process.env, SYSTEMD_NSPAWN_API_VFS_WRITABLE: 'network' });
  const deadline = Date.now() + 60_000;
  for (;;) {
    stopIfInterrupted();
    const leaderPid = findContainerInit(nspawnPid);
    if (leaderPid) return { nspawnPid, leaderPid };
    if (!pidAlive(nspawnPid) || Date.now() > deadline)
      throw new Error(`node ${node.name}: systemd-nspawn did not start: ${logTail(paths.log)}`);
    await sleep(100);
  }
}

/**
 * Waits until the node's systemd finished booting (running or degraded, logins allowed) and its sshd serves the
 * expected key. A node that finished booting but still refuses logins after a grace period will not get better by
 * waiting: it fails at once, naming its failed units.
 */
export async function waitReady(
  node: PlannedNode,
  started: StartedNode,
  operatorNs: string,
  ed25519: string,
  paths: NodePaths,
  timeoutMs = 90_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let systemState = '';
  let sshState = 'sshd not checked yet';
  let bootedWithNologinSince = 0;
  for (;;) {
    stopIfInterrupted();
    if (!pidAlive(started.nspawnPid)) throw new Error(`node ${node.name} stopped while booting: ${logTail(paths.log)}`);
    if (!/^(running|degraded)$/.test(systemState)) {
      systemState = await sys.nodeBootState(started.leaderPid);
    }
    if (/^(running|degraded)$/.test(systemState)) {
      const scan = await sys.sshKeyscan(operatorNs, node.sshHost, node.sshPort);
      const served = scan.stdout
        .split('\n')
        .find((l) => l && !l.startsWith('#'))
        ?.split(/\s+/)
        .slice(1, 3)
        .join(' ');
      if (served === ed25519) return;
      sshState = served
        ? `sshd serves an unexpected host key ${served}`
        : `sshd not answering (${scan.stderr.trim().split('\n').pop() ?? ''})`;
    }
    const stuck = /^(running|degraded) nologin$/.test(systemState);
    bootedWithNologinSince = stuck ? bootedWithNologinSince || Date.now() : 0;
    if (Date.now() > deadline || (stuck && Date.now() - bootedWithNologinSince > NOLOGIN_GRACE_MS)) {
      throw new Error(
        `node ${node.name} not ready after ${Math.round((timeoutMs - (deadline - Date.now())) / 1000)} s: systemd ${systemState || 'unknown'}, ${sshState}${await bootProblems(started)}`,
      );
    }
    await sleep(300);
  }
}

/** systemd-user-sessions removes /run/nologin right after boot; this is ample for a late one. */
const NOLOGIN_GRACE_MS = 10_000;

/** The node's failed units and the last warnings of its journal, for the error (a failed `up` removes the node's log). */
async function bootProblems(started: StartedNode): Promise<string> {
  try {
    const { failedUnits, journal } = await sys.nodeBootProblems(started.leaderPid);
    const lastWarnings = journal
      .split('\n')
      .filter(Boolean)
      .slice(-8)
      .map((line) => `\n    ${line}`)
      .join('');
    return `; failed units: ${failedUnits.join(', ') || 'none'}${lastWarnings ? `; its journal ends:${lastWarnings}` : ''}`;
  } catch {
    return '';
  }
}

function logTail(path: string): string {
  try {
    return readFileSync(path, 'utf8').trim().split('\n').slice(-3).join(' | ') || '(empty log)';
  } catch {
    return '(no log)';
  }
}

/** Ctrl-C during `up`: stop waiting, so `up` removes what it made and exits 130. */
function stopIfInterrupted(): void {
  if (interruptSignal.aborted) throw new MeshctlError('interrupted', 'interrupted');
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
