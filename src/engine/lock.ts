/**
 * One changing run at a time: a lock file on every node for the length of an `up` that applies (plans and dry runs
 * take none). The lock is `/run/meshctl/lock` (tmpfs: a reboot clears it), created with O_EXCL (`set -C`), holding
 * who took it: `holder=USER@HOST pid=PID started=UNIX run=TOKEN`.
 *
 * Two runs started together must not each win half the nodes and both give up, so the lock is taken on the first
 * node (by name) alone, then on the others at once; whoever holds the first node's lock gets the rest unless a third
 * party holds one. A lock older than LOCK_STALE_S is taken over with a warning (its run died without releasing it;
 * `up` itself never takes that long), and `--break-lock` takes over any lock. Release removes only our own lock.
 *
 * A lock left by a dead run of this same machine (finding 11: a SIGKILLed `up`) is taken over without
 * `--break-lock` when that is provable: the lock also records `boot=` (a hash of this boot's
 * /proc/sys/kernel/random/boot_id and this pid namespace, so another machine, another boot or another container
 * never matches) and `pstart=` (the holder's start time, clock ticks since boot, /proc/PID/stat field 22). A run
 * sends along the pids alive on this machine when it began (DeadRunProof); the node's script takes the lock over
 * only when its `boot=` is ours, its process started before ours and its pid is not among the live ones (a live
 * process, or a pid reused by another process: refused as before), and only when the file still holds that same
 * line (compare, then remove and create with O_EXCL, as the stale take-over).
 */
import { hostname, userInfo } from 'node:os';
import { dirname } from 'node:path';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { sh } from '../remote/shell.js';
import { withRun, type Connection, type RunOptions } from '../transport/types.js';
import { endMarker, sectionScript, splitSections, type Section } from '../facts/sections.js';

export const LOCK_PATH = '/run/meshctl/lock';
/** seconds after which a lock is deemed left by a dead run (an `up` of 32 nodes takes well under a minute) */
export const LOCK_STALE_S = 3600;

export interface LockHolder {
  holder: string;
  pid: number;
  /** Unix seconds */
  started: number;
  run: string;
  /**
   * This machine, boot and pid namespace: 16 hex digits of the SHA-256 of /proc/sys/kernel/random/boot_id and
   * /proc/self/ns/pid's link; absent where /proc has neither (then no dead run of ours is ever taken over)
   */
  boot?: string;
  /** the holder process's start time in clock ticks since boot (/proc/PID/stat field 22); with `boot` */
  pstart?: number;
}

/** This machine's boot and pid namespace as LockHolder.boot, or undefined where /proc does not tell. */
export function machineBoot(): string | undefined {
  try {
    const bootId = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
    const pidNs = readlinkSync('/proc/self/ns/pid');
    if (!bootId || !pidNs) return undefined;
    return createHash('sha256').update(`${bootId}\n${pidNs}`).digest('hex').slice(0, 16);
  } catch {
    return undefined;
  }
}

/**
 * A process's start time in clock ticks since boot: field 22 of /proc/PID/stat (proc(5)), read after the last `)`
 * (the command name may hold spaces and parentheses); undefined when there is no such process or no /proc.
 */
export function processStart(pid: number | 'self'): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // after "pid (comm) ": field 3 (state) is the first; field 22 is the 20th
    const start = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]);
    return Number.isSafeInteger(start) ? start : undefined;
  } catch {
    return undefined;
  }
}

/**
 * What lets a node's lock script prove a lock's holder dead (finding 11): this machine's `boot`, this process's
 * start time (`before`, clock ticks: a holder that started at or after it may have started after `live` was read),
 * and the pids alive on this machine when the run began (`live`). A holder of this boot that started before us and
 * whose pid is not in `live` was gone when `live` was read, and a pid never comes back to the same process.
 */
export interface DeadRunProof {
  boot: string;
  before: number;
  live: number[];
}

/** More live pids than this and no proof is sent: the list goes into every node's lock script (about 6 bytes a pid). */
export const DEAD_RUN_MAX_PIDS = 4096;

/** The proof for this process now (DeadRunProof), or undefined where /proc does not give one. */
export function deadRunProof(): DeadRunProof | undefined {
  const boot = machineBoot();
  const before = processStart('self');
  if (boot === undefined || before === undefined) return undefined;
  // /proc mounted with hidepid hides other users' processes: a live run of another user would read as dead (a
  // review's finding); init is everyone's to see without it
  if (!existsSync('/proc/1/stat')) return undefined;
  try {
    const live = readdirSync('/proc')
      .filter((name) => /^\d+$/.test(name))
      .map(Number);
    return live.length > 0 && live.length <= DEAD_RUN_MAX_PIDS ? { boot, before, live } : undefined;
  } catch {
    return undefined;
  }
}

/** Our lock's content: this operator, this process, now, and a token no other run has. */
export function newLockHolder(): LockHolder {
  let user = 'unknown';
  try {
    user = userInfo().username;
  } catch {
    // a uid without a passwd entry (containers): the pid and host still say who
  }
  const boot = machineBoot();
  const pstart = processStart('self');
  return {
    holder: `${user}@${hostname()}`,
    pid: process.pid,
    started: Math.floor(Date.now() / 1000),
    run: randomBytes(8).toString('hex'),
    ...(boot !== undefined && pstart !== undefined ? { boot, pstart } : {}),
  };
}

const format = (h: LockHolder) =>
  `holder=${h.holder} pid=${h.pid} started=${h.started} run=${h.run}${h.boot !== undefined && h.pstart !== undefined ? ` boot=${h.boot} pstart=${h.pstart}` : ''}`;

/** Parses a lock file's line; undefined when it is not one of ours. */
export function parseLockHolder(text: string): LockHolder | undefined {
  const field = (name: string) => text.match(new RegExp(`(?:^|\\s)${name}=(\\S+)`))?.[1];
  const holder = field('holder');
  const pid = Number(field('pid'));
  const started = Number(field('started'));
  const run = field('run');
  if (!holder || !run || !Number.isInteger(pid) || !Number.isInteger(started)) return undefined;
  const boot = field('boot');
  const pstart = Number(field('pstart'));
  return { holder, pid, started, run, ...(boot && /^[0-9a-f]+$/.test(boot) && Number.isInteger(pstart) ? { boot, pstart } : {}) };
}

/**
 * Seconds a run waits for a held lock to go before it says the node is locked: the run before it may have ended a
 * moment ago and its release (RunLocks.release, started without waiting for it to end; issue 10) not yet have run
 * on the node. A lock still there after that is held.
 */
export const RELEASE_WAIT_S = 1;

/**
 * The script that takes the lock: prints `acquired`, or `held <line>` with the holder's line (after RELEASE_WAIT_S
 * of waiting for it to go). With `breakAfter` (seconds, counted in whole minutes: find(1) -mmin), a lock whose
 * file is older than that by the node's clock is replaced (`took-over <old line>`); 0 replaces any lock at once. With `dead` (DeadRunProof), a lock of a dead run of this machine is
 * replaced (`took-over-dead <old line>`) whatever its age.
 * RV-13: on a node without find(1) the age is the file's mtime (`date -r`, GNU and busybox, else `stat -c %Y`)
 * against `date +%s`, both the node's clock; a node with none of them cannot judge it and answers
 * `held-unjudged <line>` (the refusal says so) rather than a plain `held`. A stale take-over takes the same mkdir
 * mutex as the dead-run one (LOCK_PATH.takeover) and replaces the file only while it still holds the line read, so
 * two runs taking the same stale lock cannot remove each other's new lock; a mutex older than TORN_S (a killed
 * taker's) is cleared first. `--break-lock` (breakAfter 0) replaces any lock file, even an empty or foreign one; without
 * it an empty file older than TORN_S (a take cut off) is replaced too (`took-over ` with no line) (RV2 S3-9).
 * Issue 10: a converged run pays one exec for it on a node where the lock directory exists (`mkdir` runs only when
 * it does not; `sleep`, `cat`, `sed` and `date` only when the lock is held).
 */
/**
 * Bytes of a lock file read (a holder's line is ~150): a huge lock file (Q10 F13: 26 MB) was read whole into the
 * answer, which then failed the run on the transport's output cap without naming the lock, --break-lock too.
 */
const LOCK_READ_BYTES = 4096;

export function acquireScript(holder: LockHolder, breakAfter: number, path = LOCK_PATH, dead?: DeadRunProof): string {
  return [
    sh`[ -d ${dirname(path)} ] || mkdir -p -m 700 ${dirname(path)}`.text,
    sh`line=${format(holder)}`.text,
    // noclobber (`set -C`) refuses only an existing regular file: a symlink to /dev/null or a FIFO at the lock's path
    // was "taken" by every run (Q10 F3: two changing runs at once) or hung it; such a path is refused by name
    sh`if [ -L ${path} ] || { [ -e ${path} ] && [ ! -f ${path} ]; }; then echo ${`${path} is not a regular file (a symlink, FIFO or device): meshctl neither takes nor removes it; remove it by hand if no meshctl run is under way`} >&2; exit 3; fi`
      .text,
    `take_lock() { ( set -C; printf '%s\\n' "$line" > ${sh`${path}`.text} ) 2>/dev/null; }`,
    'if take_lock; then echo acquired; exit 0; fi',
    ...AGE_FUNCTION,
    `old=$(head -c ${LOCK_READ_BYTES} ${sh`${path}`.text} 2>/dev/null)`,
    // RV2 S3-3/S3-4: a take-over mutex older than TORN_S is a killed taker's (a live one holds it for a cat, an rm
    // and a printf): cleared, so it neither ends the stale take-over for good nor lets --break-lock remove a live
    // taker's mutex (which let both "take" the lock)
    ...mutexAgeOut(`${path}.takeover`),
    // a dead run's lock is taken over before any wait for a release: its run ended, so no release of it is coming
    // that would be worth waiting for (one still on its way removes only its own lock). Q5 4d: the up that took a
    // dead run's lock over waited RELEASE_WAIT_S on the first node, then again on the others, 2.6-5.0 s of facts
    // against 0.4 s
    ...(dead ? deadRunTakeOver(dead, holder, path) : []),
    // a run that has just ended may still be removing its lock (RunLocks.release does not wait for it): up to
    // RELEASE_WAIT_S for that, unless any lock is to be taken over (--break-lock)
    ...(breakAfter > 0
      ? [
          `mc_w=0; while [ $mc_w -lt ${RELEASE_WAIT_S * 10} ] && [ -e ${sh`${path}`.text} ]; do sleep 0.1 2>/dev/null || break; mc_w=$((mc_w + 1)); done`,
          'if take_lock; then echo acquired; exit 0; fi',
          `old=$(head -c ${LOCK_READ_BYTES} ${sh`${path}`.text} 2>/dev/null)`,
        ]
      : []),
    `started=$(printf '%s' "$old" | sed -n 's/.*started=\\([0-9]*\\).*/\\1/p')`,
    ...staleTakeOver(breakAfter, path),
    'echo "held $old"',
  ].join('\n');
}

/**
 * The lines of the acquire script that take over a stale lock (see acquireScript): `mc_stale` is yes, no or unknown
 * by the file's age; a stale one is replaced under the take-over mutex, only while the file still holds `$old`.
 */
function staleTakeOver(breakAfter: number, path: string): string[] {
  const file = sh`${path}`.text;
  const mutex = sh`${`${path}.takeover`}`.text;
  const minutes = String(Math.ceil(breakAfter / 60));
  return [
    // a lock's age is the age of its file by the node's own clock (its mtime, set when the node created it), not its
    // `started=` (the holder's clock: a new user's finding, 2026-12-02: a node 2 h ahead of the operator took over a
    // live run's lock as stale; an operator's clock behind by more than LOCK_STALE_S could take every lock)
    'mc_stale=no',
    ...(breakAfter > 0
      ? [
          `if [ -n "$started" ]; then mc_stale=$(mc_older ${file} ${String(breakAfter)} ${minutes})`,
          // RV2 S3-9: an empty file is a take cut off between O_EXCL's create and its printf (a kill, a full /run);
          // a live take fills it within microseconds, so one older than TORN_S is replaced
          `elif [ -z "$old" ] && [ -e ${file} ] && [ "$(mc_older ${file} ${String(TORN_S)})" = yes ]; then mc_stale=yes`,
          'fi',
        ]
      : // --break-lock breaks any lock file there is: empty, foreign or a run's (RV2 S3-9)
        [`[ -e ${file} ] && mc_stale=yes`]),
    'if [ "$mc_stale" = yes ] && mkdir ' + mutex + ' 2>/dev/null; then',
    `  if [ "$(head -c ${LOCK_READ_BYTES} ${file} 2>/dev/null)" = "$old" ]; then rm -f ${file}; if take_lock; then rmdir ${mutex}; echo "took-over $old"; exit 0; fi; fi`,
    `  rmdir ${mutex}; old=$(head -c ${LOCK_READ_BYTES} ${file} 2>/dev/null)`,
    'fi',
    // the holder released it meanwhile (RV2 S3-5: also when its age was unknown because it had just gone)
    'if { [ -z "$old" ] || [ "$mc_stale" = unknown ]; } && take_lock; then echo acquired; exit 0; fi',
    'if [ "$mc_stale" = unknown ]; then echo "held-unjudged $old"; exit 0; fi',
  ];
}

/**
 * The acquire script's age-out of a killed taker's take-over mutex `mutex` (older than TORN_S). RV3 F5: a test of its
 * age and then `rmdir` are two steps, so two takers that both found the old one could each clear it, the second
 * removing the fresh mutex the first had just made and entering beside it. So the old one is first renamed to a name
 * of this shell's own (rename(2) is atomic: of two takers, one renames a given directory, the other's `mv` fails),
 * and only that renamed directory is judged again and removed. A fresh one renamed by mistake (a live taker's, made
 * between the other's test and its rename) is put back while its name is free, so its taker stays alone; only a
 * third taker making its own in that instant still meets it (then the renamed one is dropped: a directory moved onto
 * an existing one would land inside it).
 */
function mutexAgeOut(mutex: string): string[] {
  const m = sh`${mutex}`.text;
  const aged = `${sh`${`${mutex}.aged.`}`.text}$$`;
  return [
    `if [ -d ${m} ] && [ "$(mc_older ${m} ${String(TORN_S)})" = yes ]; then`,
    `  rm -rf ${aged}`,
    `  if mv ${m} ${aged} 2>/dev/null; then`,
    `    if [ "$(mc_older ${aged} ${String(TORN_S)})" != yes ] && [ ! -e ${m} ]; then mv ${aged} ${m} 2>/dev/null || rm -rf ${aged}; else rm -rf ${aged}; fi`,
    '  fi',
    'fi',
  ];
}

/**
 * Seconds after which an empty lock file (a take cut off) or a take-over mutex (a taker killed inside it) counts as
 * left behind: both are held for microseconds by a live run (RV2 findings S3-3, S3-4, S3-9).
 */
export const TORN_S = 10;

/**
 * The acquire script's age test, `mc_older FILE SECONDS [MINUTES]`: prints yes, no or unknown, whether FILE's mtime
 * is more than SECONDS before the node's clock. With MINUTES, find(1) -mmin +MINUTES answers when it can (no exec
 * of date); a find that exists but fails (a busybox without -mmin or -prune, RV2 S3-5) falls through to `date -r`
 * (GNU, busybox), else `stat -c %Y`, against `date +%s`; none of them, or FILE gone, is unknown (RV-13).
 */
const AGE_FUNCTION = [
  'mc_older() {',
  '  if [ -n "$3" ] && command -v find >/dev/null 2>&1 && mc_f=$(find "$1" -prune -mmin "+$3" 2>/dev/null); then',
  '    if [ -n "$mc_f" ]; then echo yes; else echo no; fi; return 0',
  '  fi',
  '  mc_m=$(date -r "$1" +%s 2>/dev/null || stat -c %Y "$1" 2>/dev/null); mc_n=$(date +%s 2>/dev/null)',
  '  case "$mc_m:$mc_n" in :*|*:|*[!0-9:]*) echo unknown ;; *) if [ $((mc_n - mc_m)) -gt "$2" ]; then echo yes; else echo no; fi ;; esac',
  '}',
];

/**
 * The lines of the acquire script that take over a lock of a dead run of this machine (see DeadRunProof): its
 * `boot=` is ours, its `pstart=` is before ours, its pid is not among the live ones, and the file still holds the
 * line read (`$old`) when it is removed; then created with O_EXCL as any take.
 */
function deadRunTakeOver(dead: DeadRunProof, holder: LockHolder, path: string): string[] {
  const field = (name: string, chars: string) => `$(printf '%s' "$old" | sed -n 's/.* ${name}=\\([${chars}]*\\).*/\\1/p')`;
  const file = sh`${path}`.text;
  // one taker at a time (mkdir is atomic): two runs that read the same dead line could otherwise each remove the
  // other's new lock (a review's finding); a taker killed inside leaves the directory and later ones are refused
  // as before (held), which --break-lock still overrides
  const mutex = sh`${`${path}.takeover`}`.text;
  return [
    `mc_ob=${field('boot', '0-9a-f')}; mc_op=${field('pid', '0-9')}; mc_os=${field('pstart', '0-9')}`,
    // the same operator only (user@host): another user's run is never taken over without --break-lock
    sh`case "$old" in ${`holder=${holder.holder} `}*) mc_oh=1 ;; *) mc_oh=0 ;; esac`.text,
    sh`if [ $mc_oh = 1 ] && [ "$mc_ob" = ${dead.boot} ] && [ -n "$mc_op" ] && [ -n "$mc_os" ] && [ "$mc_os" -lt ${String(dead.before)} ]; then`
      .text,
    `  case ' ${dead.live.join(' ')} ' in *" $mc_op "*) ;; *)`,
    `    if mkdir ${mutex} 2>/dev/null; then`,
    `      if [ "$(head -c ${LOCK_READ_BYTES} ${file} 2>/dev/null)" = "$old" ]; then rm -f ${file}; if take_lock; then rmdir ${mutex}; echo "took-over-dead $old"; exit 0; fi; fi`,
    `      rmdir ${mutex}; old=$(head -c ${LOCK_READ_BYTES} ${file} 2>/dev/null)`,
    '    fi;;',
    '  esac',
    'fi',
  ];
}

/**
 * The script that removes the lock only when it is still ours (a line of it holds this run's token). The shell reads
 * the file itself (it was `grep -q`, one exec more; issue 10); `rm` runs only when the lock is ours.
 */
export const releaseScript = (holder: LockHolder, path = LOCK_PATH): string =>
  sh`mc_ours=; [ -f ${path} ] && while IFS= read -r mc_l || [ -n "$mc_l" ]; do case $mc_l in *${`run=${holder.run}`}*) mc_ours=1;; esac; done < ${path}; if [ -n "$mc_ours" ]; then rm -f ${path}; fi; true`
    .text;

/** The section of a combined probe script (../facts/sections.ts) that takes the lock (see RunLocks.sectionFor). */
export const LOCK_SECTION = 'lock';

export type LockOutcome =
  | { ok: true; release: () => Promise<void>; warnings: string[] }
  | { ok: false; node: string; holder?: LockHolder; message: string };

/** A refusal: which node, who holds its lock (when it is one of ours), and the message for the operator. */
export type LockRefusal = Extract<LockOutcome, { ok: false }>;

/**
 * "root@ops-1 (pid 4242) since 2026-11-29 22:10:03 UTC"; a `started=` no date can hold (a corrupt or hostile lock
 * file, Q9 F-lock-date: "Invalid time value" was all the run said) is shown as the number it is.
 */
export const describeHolder = (h: LockHolder): string => {
  const at = new Date(h.started * 1000);
  const since = Number.isNaN(at.getTime())
    ? `started=${h.started} (no valid time)`
    : at
        .toISOString()
        .replace('T', ' ')
        .replace(/\.\d+Z$/, ' UTC');
  return `${h.holder} (pid ${h.pid}) since ${since}`;
};

const ANSWER = /^(acquired|took-over |took-over-dead |held |held-unjudged )/;

/** "pid 5642, started 2026-12-01 17:30:02 UTC (root@vm)": a dead run's lock, as the take-over says it */
const describeDead = (h: LockHolder): string => describeHolder(h).replace(/^(\S+) \(pid (\d+)\) since (.*)$/, 'pid $2, started $3 ($1)');

/**
 * The run lock of one run on a set of nodes: the first node (by name) is taken alone, then the others, either in
 * their own round trip (`takeRest`) or folded into their facts probe (`sectionFor` + `settle`: issue 10, one round
 * trip and one SSH channel fewer per node). Either way no other node is touched before the first node's lock is
 * ours, and a node whose answer never came counts as taken for the release (the release script removes only a lock
 * that holds this run's token).
 */
export class RunLocks {
  readonly holder = newLockHolder();
  readonly warnings: string[] = [];
  /** nodes in name order; the first is locked alone */
  readonly names: string[];
  private readonly script: string;
  private readonly taken = new Set<string>();
  private readonly attempted = new Set<string>();
  /** nodes whose lock section went into their probe and has not been read yet */
  private readonly pending = new Set<string>();
  private readonly refusals: LockRefusal[] = [];

  constructor(
    private readonly connections: ReadonlyMap<string, Connection>,
    private readonly options: { breakLock: boolean; signal: AbortSignal },
  ) {
    this.names = [...connections.keys()].sort();
    this.script = acquireScript(
      this.holder,
      options.breakLock ? 0 : LOCK_STALE_S,
      LOCK_PATH,
      options.breakLock ? undefined : deadRunProof(),
    );
  }

  /** Takes the first node's lock alone (its own round trip); the refusal, or undefined when it is ours. */
  async takeFirst(): Promise<LockRefusal | undefined> {
    const first = this.names[0];
    return first === undefined ? undefined : this.take(first);
  }

  /** Takes every other node's lock at once (a round trip each); the first refusal, or undefined. */
  async takeRest(): Promise<LockRefusal | undefined> {
    const outcomes = await Promise.all(this.names.filter((n) => !this.attempted.has(n)).map((n) => this.take(n)));
    return outcomes.find((o) => o !== undefined);
  }

  /**
   * The lock's section for `node`'s facts probe, to run before its facts are read (a subshell: the script's `exit`
   * must not end the probe); undefined when the node was already asked (the first node, or a second pass).
   */
  sectionFor(node: string): string | undefined {
    if (this.attempted.has(node) || !this.connections.has(node)) return undefined;
    this.attempted.add(node);
    this.pending.add(node);
    return sectionScript(LOCK_SECTION, `( ${this.script}\n)`);
  }

  /**
   * Reads the lock section of `node`'s probe output; the refusal (also recorded), or undefined when taken or when
   * no section of ours went into this probe (the first node when taken alone, a second pass). Read twice, the same
   * answer.
   */
  settle(node: string, sections: Map<string, Section>): LockRefusal | undefined {
    // read already (the first node's answer is read from its stream: FirstLockGate): the same answer again
    if (!this.pending.delete(node)) return this.refusals.find((r) => r.node === node);
    const section = sections.get(LOCK_SECTION);
    const lines = (section?.body ?? '').split('\n');
    const answer = lines.filter((l) => ANSWER.test(l)).at(-1) ?? '';
    const other = lines.filter((l) => !ANSWER.test(l)).join('\n');
    return this.judge(node, section?.rc ?? 255, answer, other);
  }

  /**
   * The first refusal so far, or undefined. A node asked in its probe whose answer never came (its facts step failed:
   * a deadline, a broken channel) is no refusal: its failed facts stop the run at the facts gate anyway, and the
   * release covers it.
   */
  refusal(): LockRefusal | undefined {
    return this.refusals[0];
  }

  /** The probe that carried `node`'s lock section was never sent (FirstLockGate): nothing to read or release there. */
  notSent(node: string): void {
    this.attempted.delete(node);
    this.pending.delete(node);
  }

  /** Whether `node`'s lock is this run's (acquired, or a stale one taken over). */
  holds(node: string): boolean {
    return this.taken.has(node);
  }

  /**
   * Removes our lock from every node it was asked on (taken or not answered), at once; never throws. Issue 10: where
   * the connection can start a command without waiting for its end (Connection.start), this resolves once every
   * node's sshd has started the release, not when it has run (the last round trip of a converged run, and the
   * operator waited for it); a run started right after waits RELEASE_WAIT_S for a lock still there. A release that
   * could not be started is run as before.
   */
  async release(): Promise<void> {
    const script = releaseScript(this.holder);
    await Promise.all(
      [...this.attempted].map((n) => {
        const connection = this.connections.get(n)!;
        // no remote deadline (timeoutMs 0: no `timeout` process, and the login's shell runs the script itself, two
        // execs fewer per node; issue 10): the script reads one small file in /run and removes it, nothing to hang on
        const started = connection.start ? connection.start(script, { timeoutMs: 0 }) : Promise.reject(new Error('no start'));
        return started.catch(() => connection.run(script)).catch(() => undefined);
      }),
    );
  }

  private async take(node: string): Promise<LockRefusal | undefined> {
    this.attempted.add(node);
    // the connection's own command deadline (60 s, or MESHCTL_COMMAND_TIMEOUT): a fixed 15 s refused every run on a
    // farm of 100 loaded nodes, where taking a lock waited behind the other nodes' work
    const result = await this.connections.get(node)!.run(this.script, { signal: this.options.signal });
    return this.judge(node, result.code, result.stdout.trim(), result.stderr);
  }

  private judge(node: string, code: number, out: string, stderr: string): LockRefusal | undefined {
    if (code === 0 && out === 'acquired') {
      this.taken.add(node);
      return undefined;
    }
    if (code === 0 && out.trim() === 'took-over') {
      this.taken.add(node);
      this.warnings.push(`${node}: replaced an empty run lock (a take cut off) at ${LOCK_PATH}`);
      return undefined;
    }
    if (code === 0 && out.startsWith('took-over-dead ')) {
      this.taken.add(node);
      const old = parseLockHolder(out);
      this.warnings.push(`${node}: took over the lock of a dead run: ${old ? describeDead(old) : 'an unknown run'}`);
      return undefined;
    }
    if (code === 0 && out.startsWith('took-over ')) {
      this.taken.add(node);
      const old = parseLockHolder(out);
      this.warnings.push(`${node}: took over the run lock of ${old ? describeHolder(old) : 'an unknown run'}`);
      return undefined;
    }
    const other = parseLockHolder(out);
    // RV-13: a node that cannot tell the lock's age never takes it over as stale: say so
    const unjudged = out.startsWith('held-unjudged ')
      ? `; its age could not be judged on this node (no find, date -r or stat), so it is never taken over as stale after ${LOCK_STALE_S / 3600} h`
      : '';
    const message = other
      ? `${node} is locked by another meshctl run: ${describeHolder(other)}${unjudged}; wait for it, or run with --break-lock if it died`
      : code === 0 && out.trim() === 'held'
        ? `${node}: an empty run lock at ${LOCK_PATH} (a take cut off, or one under way): run again, or with --break-lock`
        : `${node}: could not take the run lock at ${LOCK_PATH} (exit ${code}): ${(stderr || out).trim().split('\n').at(-1) ?? ''}`;
    const refusal: LockRefusal = { ok: false, node, ...(other ? { holder: other } : {}), message };
    this.refusals.push(refusal);
    return refusal;
  }
}

/**
 * Takes the run lock on every node (first node alone, then the others at once); on any refusal releases what it
 * took and says who holds it. `breakLock` takes over any lock; a stale one (LOCK_STALE_S) is taken over anyway.
 */
export async function acquireLocks(
  connections: ReadonlyMap<string, Connection>,
  options: { breakLock: boolean; signal: AbortSignal },
): Promise<LockOutcome> {
  const locks = new RunLocks(connections, options);
  const refused = (await locks.takeFirst()) ?? (await locks.takeRest());
  if (refused) {
    // also where the take's answer never came (a deadline, a broken channel): the script may still have created
    // our lock there, and the release script removes only a lock that holds this run's token
    await locks.release();
    return refused;
  }
  return { ok: true, release: () => locks.release(), warnings: locks.warnings };
}

/** The line that ends a probe's lock section (a section's end marker with its exit status, ../facts/sections.ts). */
const LOCK_SECTION_END = new RegExp(`(^|\\n)${endMarker(LOCK_SECTION)} rc=\\d+\\r?\\n`);

/**
 * Issue 10: the first node's lock taken in its own facts probe (one round trip and one SSH channel fewer on it) with
 * the guarantee of RunLocks.takeFirst kept: no command reaches any other node before the first node's lock is ours.
 * `connections` are the run's connections with a gate in front: the first node's first command (its facts probe,
 * which begins with the lock section: RunLocks.sectionFor) is watched while it runs, and its lock section is judged
 * (RunLocks.settle) as soon as that section's end arrives on stdout (or when the command ends, if the transport
 * streams nothing); every other node's first command waits for that answer and is never sent when the lock is not
 * ours (refused, no answer, the command failed, Ctrl-C). Issue 10: those first commands are started at once all the
 * same (channel, login shell, guard: RunOptions.sendWhen) and their scripts sent only when the lock is ours, so their
 * start-up runs beside the first node's instead of after its answer; when it is not ours, no script is sent and their
 * shells end having run nothing. Needs every node's first command to start at once (forks >= nodes): a node waiting
 * in front of the first node's probe would wait forever.
 */
export class FirstLockGate {
  readonly connections: Map<string, Connection>;
  readonly first: string | undefined;
  /** the first node's command failed before its lock section was read (TransportError, sudo, abort reason) */
  firstError: unknown;
  private answer: boolean | undefined;
  private readonly opened: Promise<boolean>;
  private decide: (ours: boolean) => void = () => undefined;

  constructor(
    connections: ReadonlyMap<string, Connection>,
    private readonly locks: RunLocks,
    private readonly signal: AbortSignal,
  ) {
    this.first = locks.names[0];
    this.opened = new Promise<boolean>((resolve) => {
      this.decide = (ours) => {
        if (this.answer !== undefined) return;
        this.answer = ours;
        resolve(ours);
      };
    });
    this.connections = new Map(
      [...connections].map(([node, c]) => [node, node === this.first ? this.watchFirst(c) : this.waitForFirst(c)]),
    );
    // no node: nothing to wait for
    if (this.first === undefined) this.decide(true);
  }

  /** true once the first node's lock is ours; false once it is known not to be; undefined while not known. */
  get ours(): boolean | undefined {
    return this.answer;
  }

  /** Resolves true when the first node's lock is ours, false when it is not (refused, no answer, failed). */
  whenDecided(): Promise<boolean> {
    return this.opened;
  }

  private judge(stdout: string): void {
    if (this.answer !== undefined || this.first === undefined) return;
    this.locks.settle(this.first, splitSections(stdout));
    this.decide(this.locks.holds(this.first));
  }

  private watchFirst(connection: Connection): Connection {
    let firstCommand = true;
    return withRun(connection, async (script, options) => {
      if (!firstCommand) return connection.run(script, options);
      firstCommand = false;
      let seen = '';
      const onStdout: RunOptions['onStdout'] = (chunk, end) => {
        options?.onStdout?.(chunk, end);
        if (this.answer !== undefined) return;
        seen += chunk;
        if (LOCK_SECTION_END.test(seen)) this.judge(seen);
      };
      try {
        const result = await connection.run(script, { ...options, onStdout });
        this.judge(result.stdout);
        this.decide(false);
        return result;
      } catch (error) {
        if (this.answer === undefined) this.firstError = error;
        this.decide(false);
        throw error;
      }
    });
  }

  private waitForFirst(connection: Connection): Connection {
    return withRun(connection, async (script, options) => {
      // issue 10: the command's channel, login shell and guard start now, beside the first node's; its script is sent
      // only once the first node's lock is ours (RunOptions.sendWhen), else none is and the shell ends having run nothing
      const early = this.answer === undefined ? connection.run(script, { ...options, sendWhen: this.opened }) : undefined;
      if (this.answer === undefined)
        await this.decidedOrAborted().catch(async (reason: unknown) => {
          // Ctrl-C at the instant the first node's lock became ours: the script is sent all the same (`early`'s
          // sendWhen said yes), so its lock may be taken and the release must reach this node
          if (this.answer !== true) this.locks.notSent(connection.node);
          await early?.catch(() => undefined);
          throw reason;
        });
      if (!this.answer) {
        this.locks.notSent(connection.node);
        await early?.catch(() => undefined);
        throw new Error(`not probed: the run lock of ${this.first} is not this run's`);
      }
      return early ?? connection.run(script, options);
    });
  }

  /** Waits for the first node's answer; rejects with the signal's reason on Ctrl-C (no listener left behind). */
  private decidedOrAborted(): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const onAbort = () => reject(this.signal.reason);
      if (this.signal.aborted) return onAbort();
      this.signal.addEventListener('abort', onAbort, { once: true });
      void this.opened.then(() => {
        this.signal.removeEventListener('abort', onAbort);
        resolve();
      });
    });
  }
}
