/**
 * One changing run at a time: a lock file on every node for the length of an `up` that applies (plans and dry runs
 * take none). The lock is `/run/meshctl/lock` (tmpfs: a reboot clears it), created with O_EXCL (`set -C`), holding
 * who took it: `holder=USER@HOST pid=PID started=UNIX run=TOKEN`.
 *
 * Two runs started together must not each win half the nodes and both give up, so the lock is taken on the first
 * node (by name) alone, then on the others at once; whoever holds the first node's lock gets the rest unless a third
 * party holds one. A lock older than LOCK_STALE_S is taken over with a warning (its run died without releasing it;
 * `up` itself never takes that long), and `--break-lock` takes over any lock. Release removes only our own lock.
 */
import { hostname, userInfo } from 'node:os';
import { dirname } from 'node:path';
import { randomBytes } from 'node:crypto';
import { sh } from '../remote/shell.js';
import type { Connection } from '../transport/types.js';

export const LOCK_PATH = '/run/meshctl/lock';
/** seconds after which a lock is deemed left by a dead run (an `up` of 32 nodes takes well under a minute) */
export const LOCK_STALE_S = 3600;

export interface LockHolder {
  holder: string;
  pid: number;
  /** Unix seconds */
  started: number;
  run: string;
}

/** Our lock's content: this operator, this process, now, and a token no other run has. */
export function newLockHolder(): LockHolder {
  let user = 'unknown';
  try {
    user = userInfo().username;
  } catch {
    // a uid without a passwd entry (containers): the pid and host still say who
  }
  return { holder: `${user}@${hostname()}`, pid: process.pid, started: Math.floor(Date.now() / 1000), run: randomBytes(8).toString('hex') };
}

const format = (h: LockHolder) => `holder=${h.holder} pid=${h.pid} started=${h.started} run=${h.run}`;

/** Parses a lock file's line; undefined when it is not one of ours. */
export function parseLockHolder(text: string): LockHolder | undefined {
  const field = (name: string) => text.match(new RegExp(`(?:^|\\s)${name}=(\\S+)`))?.[1];
  const holder = field('holder');
  const pid = Number(field('pid'));
  const started = Number(field('started'));
  const run = field('run');
  if (!holder || !run || !Number.isInteger(pid) || !Number.isInteger(started)) return undefined;
  return { holder, pid, started, run };
}

/**
 * The script that takes the lock: prints `acquired`, or `held <line>` with the holder's line. With `breakAfter`
 * (seconds), a lock at least that old is replaced (`took-over <old line>`); 0 replaces any lock.
 */
export function acquireScript(holder: LockHolder, breakAfter: number, path = LOCK_PATH): string {
  return [
    sh`mkdir -p -m 700 ${dirname(path)}`.text,
    sh`line=${format(holder)}`.text,
    `take_lock() { ( set -C; printf '%s\\n' "$line" > ${sh`${path}`.text} ) 2>/dev/null; }`,
    'if take_lock; then echo acquired; exit 0; fi',
    `old=$(cat ${sh`${path}`.text} 2>/dev/null)`,
    `started=$(printf '%s' "$old" | sed -n 's/.*started=\\([0-9]*\\).*/\\1/p')`,
    `if [ -n "$started" ] && [ $(( $(date +%s) - started )) -ge ${breakAfter} ]; then`,
    `  rm -f ${sh`${path}`.text}; if take_lock; then echo "took-over $old"; exit 0; fi; old=$(cat ${sh`${path}`.text} 2>/dev/null)`,
    'fi',
    'echo "held $old"',
  ].join('\n');
}

/** The script that removes the lock only when it is still ours. */
export const releaseScript = (holder: LockHolder, path = LOCK_PATH): string =>
  `if grep -q ${sh`run=${holder.run}`.text} ${sh`${path}`.text} 2>/dev/null; then rm -f ${sh`${path}`.text}; fi`;

export type LockOutcome =
  | { ok: true; release: () => Promise<void>; warnings: string[] }
  | { ok: false; node: string; holder?: LockHolder; message: string };

/** "root@ops-1 (pid 4242) since 2026-11-29 22:10:03 UTC" */
export const describeHolder = (h: LockHolder): string =>
  `${h.holder} (pid ${h.pid}) since ${new Date(h.started * 1000)
    .toISOString()
    .replace('T', ' ')
    .replace(/\.\d+Z$/, ' UTC')}`;

/**
 * Takes the run lock on every node (first node alone, then the others at once); on any refusal releases what it
 * took and says who holds it. `breakLock` takes over any lock; a stale one (LOCK_STALE_S) is taken over anyway.
 */
export async function acquireLocks(
  connections: ReadonlyMap<string, Connection>,
  options: { breakLock: boolean; signal: AbortSignal },
): Promise<LockOutcome> {
  const holder = newLockHolder();
  const script = acquireScript(holder, options.breakLock ? 0 : LOCK_STALE_S);
  const names = [...connections.keys()].sort();
  const taken: string[] = [];
  const warnings: string[] = [];
  const release = async () => {
    await Promise.all(
      taken.map((n) =>
        connections
          .get(n)!
          .run(releaseScript(holder))
          .catch(() => undefined),
      ),
    );
  };
  const attempted: string[] = [];
  const take = async (node: string): Promise<LockOutcome | undefined> => {
    attempted.push(node);
    // the connection's own command deadline (60 s, or MESHCTL_COMMAND_TIMEOUT): a fixed 15 s refused every run on a
    // farm of 100 loaded nodes, where taking a lock waited behind the other nodes' work
    const result = await connections.get(node)!.run(script, { signal: options.signal });
    const out = result.stdout.trim();
    if (result.code === 0 && out === 'acquired') {
      taken.push(node);
      return undefined;
    }
    if (result.code === 0 && out.startsWith('took-over ')) {
      taken.push(node);
      const old = parseLockHolder(out);
      warnings.push(`${node}: took over the run lock of ${old ? describeHolder(old) : 'an unknown run'}`);
      return undefined;
    }
    const other = parseLockHolder(out);
    const message = other
      ? `${node} is locked by another meshctl run: ${describeHolder(other)}; wait for it, or run with --break-lock if it died`
      : `${node}: could not take the run lock at ${LOCK_PATH} (exit ${result.code}): ${(result.stderr || out).trim().split('\n').at(-1) ?? ''}`;
    return { ok: false, node, ...(other ? { holder: other } : {}), message };
  };
  const first = names[0] === undefined ? undefined : await take(names[0]);
  const refused = first ?? (await Promise.all(names.slice(1).map(take))).find((o) => o !== undefined);
  if (refused) {
    // also where the take's answer never came (a deadline, a broken channel): the script may still have created
    // our lock there, and the release script removes only a lock that holds this run's token
    for (const node of attempted) if (!taken.includes(node)) taken.push(node);
    await release();
    return refused;
  }
  return { ok: true, release, warnings };
}
