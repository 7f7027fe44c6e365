/**
 * The warm cache every lab shares: a Debian 12 base root filesystem (debootstrap minbase) and a local apt repository
 * holding wireguard-tools, wireguard-go and exactly the dependencies the base lacks.
 * Both are built together in a temporary directory, stamped, then renamed into place, under a lock, so two labs
 * never build at once and a half-built cache is never used.
 */
import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import { MeshctlError } from '../errors.js';
import { cachePaths } from './paths.js';
import { hostMirror } from './mirror.js';
import { LAB_SUDO_USER, NODE_APT_DIR } from './plan.js';
import * as sys from './sys.js';

/** What every node has installed (lab.md's list, plus netcat for datagram tests and nftables for firewall tests). */
export const BASE_PACKAGES = [
  'systemd',
  'systemd-sysv',
  'dbus',
  'openssh-server',
  'iproute2',
  'iputils-ping',
  'tcpdump',
  'iptables',
  'nftables',
  'procps',
  'sudo',
  'netcat-openbsd',
];
/** Served by the local repository, never preinstalled: meshctl's install phase must run a real apt-get install. */
export const REPO_PACKAGES = ['wireguard-tools', 'wireguard-go'];

/** Timers and gettys a lab node does not need; apt-daily would also take the dpkg lock under meshctl's install. */
const MASKED_UNITS = [
  'apt-daily.timer',
  'apt-daily-upgrade.timer',
  'apt-daily.service',
  'apt-daily-upgrade.service',
  'e2scrub_all.timer',
  'e2scrub_reap.service',
  'fstrim.timer',
  'dpkg-db-backup.timer',
  'getty@tty1.service',
  'console-getty.service',
  'systemd-pstore.service',
];

export type Progress = (message: string) => void;

export interface Caches {
  base: string;
  repo: string;
  /** true when this call built them (a cold cache) */
  built: boolean;
}

const isReady = (dir: string) => existsSync(join(dir, cachePaths().stamp));

export async function ensureCaches(progress: Progress): Promise<Caches> {
  const paths = cachePaths();
  if (isReady(paths.base) && isReady(paths.repo)) return { base: paths.base, repo: paths.repo, built: false };
  mkdirSync(paths.root, { recursive: true });
  const release = await acquireLock(paths.lock, progress);
  try {
    if (isReady(paths.base) && isReady(paths.repo)) return { base: paths.base, repo: paths.repo, built: false };
    await buildCaches(progress);
    return { base: paths.base, repo: paths.repo, built: true };
  } finally {
    release();
  }
}

async function buildCaches(progress: Progress): Promise<void> {
  const paths = cachePaths();
  const mirror = hostMirror();
  if (!mirror)
    throw new MeshctlError(
      'cannot find the Debian mirror: no bookworm source in /etc/apt/sources.list.d/debian.sources or /etc/apt/sources.list',
    );
  // Leftovers of an interrupted build (their builder is gone: we hold the lock).
  for (const entry of readdirSync(paths.root))
    if (entry.startsWith('.build-')) rmSync(join(paths.root, entry), { recursive: true, force: true });
  const tmp = join(paths.root, `.build-${process.pid}`);
  const base = join(tmp, 'base');
  const repo = join(tmp, 'repo');
  const log = join(paths.root, 'build.log');
  mkdirSync(repo, { recursive: true });
  writeFileSync(log, `meshctl lab: building ${paths.base} from ${mirror}\n`);
  try {
    progress(`lab: building the base (debootstrap bookworm from ${mirror}; log ${log}) ...`);
    await sys.debootstrap(base, mirror, BASE_PACKAGES, log);

    progress('lab: fetching wireguard-tools and wireguard-go for the local apt repository ...');
    // Inside the base, so apt resolves exactly the dependencies the base lacks.
    writeFileSync(join(base, 'etc/resolv.conf'), readFileSync('/etc/resolv.conf'));
    const debsDir = join(base, await sys.downloadDebsInChroot(base, REPO_PACKAGES, log));
    const debs = readdirSync(debsDir).filter((f) => f.endsWith('.deb'));
    for (const pkg of REPO_PACKAGES) {
      if (!debs.some((f) => f.startsWith(`${pkg}_`))) throw new MeshctlError(`the local apt repository lacks ${pkg} (see ${log})`);
    }
    for (const deb of debs) renameSync(join(debsDir, deb), join(repo, deb));
    writeFileSync(join(repo, 'Packages'), await sys.dpkgScanPackages(repo));

    progress('lab: finishing the base ...');
    await sys.finalizeBaseInChroot(base, { aptDir: NODE_APT_DIR, sudoUser: LAB_SUDO_USER, maskedUnits: MASKED_UNITS }, log);
    writeFileSync(join(base, cachePaths().stamp), `${new Date().toISOString()} ${mirror}\n`);
    writeFileSync(join(repo, cachePaths().stamp), `${new Date().toISOString()} ${debs.join(' ')}\n`);
    for (const [from, to] of [
      [base, paths.base],
      [repo, paths.repo],
    ] as const) {
      rmSync(to, { recursive: true, force: true });
      renameSync(from, to);
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

/** An exclusive lock file holding the owner's pid; a lock whose owner died is taken over. */
async function acquireLock(path: string, progress: Progress): Promise<() => void> {
  let told = false;
  for (;;) {
    try {
      const fd = openSync(path, 'wx');
      writeSync(fd, String(process.pid));
      closeSync(fd);
      return () => rmSync(path, { force: true });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
    const owner = Number(readFileSafe(path));
    if (!owner || !pidAlive(owner)) {
      rmSync(path, { force: true });
      continue;
    }
    if (!told) progress(`lab: waiting for another meshctl (pid ${owner}) to finish building the cache ...`);
    told = true;
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}

const readFileSafe = (path: string) => {
  try {
    return readFileSync(path, 'utf8').trim();
  } catch {
    return '';
  }
};

/**
 * True while the process exists and is not a zombie. Nodes outlive the `lab up` that started them, so their
 * parent becomes the host's PID 1, which may reap late: a zombie nspawn must count as gone.
 */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !/^[ZX]$/.test(stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3));
  } catch {
    return false;
  }
}
