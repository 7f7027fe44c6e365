/** The run lock (src/engine/lock.ts): its scripts through a real sh on a temporary path, and the taking order. */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { acquireLocks, acquireScript, newLockHolder, parseLockHolder, releaseScript, RunLocks, TORN_S } from '../../src/engine/lock.js';
import { splitSections } from '../../src/facts/sections.js';
import { FakeConnection } from '../support/fake-connection.js';
import { tempDir } from '../support/temp-dir.js';

const sh = (script: string) => execFileSync('sh', ['-c', script], { encoding: 'utf8' }).trim();

describe('run lock scripts (real sh)', () => {
  it('takes a free lock, refuses a held one naming the holder, and releases only its own', () => {
    const path = join(tempDir('meshctl-lock-'), 'run', 'lock');
    const a = newLockHolder();
    const b = { ...newLockHolder(), holder: 'ops@other-laptop', pid: 77 };
    assert.equal(sh(acquireScript(a, 3600, path)), 'acquired');
    const held = sh(acquireScript(b, 3600, path));
    assert.match(held, /^held /);
    assert.deepEqual(parseLockHolder(held), a);
    sh(releaseScript(b, path));
    assert.ok(existsSync(path), 'another run must not remove our lock');
    sh(releaseScript(a, path));
    assert.equal(existsSync(path), false);
    assert.equal(sh(acquireScript(b, 3600, path)), 'acquired');
  });

  it('takes over a lock older than the stale limit (a dead run), and any lock with break-after 0', () => {
    const path = join(tempDir('meshctl-lock-'), 'lock');
    const dead = { ...newLockHolder(), started: Math.floor(Date.now() / 1000) - 7200 };
    writeFileSync(path, `holder=${dead.holder} pid=${dead.pid} started=${dead.started} run=${dead.run}\n`);
    // its file made 2 h ago by the node's clock
    const twoHoursAgo = new Date(Date.now() - 7200_000);
    utimesSync(path, twoHoursAgo, twoHoursAgo);
    const me = newLockHolder();
    assert.match(sh(acquireScript(me, 3600, path)), /^took-over holder=/);
    assert.equal(parseLockHolder(readFileSync(path, 'utf8'))?.run, me.run);
    const breaker = newLockHolder();
    assert.match(sh(acquireScript(breaker, 0, path)), /^took-over /);
    assert.equal(parseLockHolder(readFileSync(path, 'utf8'))?.run, breaker.run);
  });

  it('reads at most 4 KiB of a huge lock file: held with a short answer, and --break-lock takes it over (Q10 F13: 26 MB failed the run on the output cap)', () => {
    const path = join(tempDir('meshctl-lock-'), 'lock');
    writeFileSync(path, Buffer.alloc(26 * 1024 * 1024, 'x'));
    const held = sh(acquireScript(newLockHolder(), 3600, path));
    assert.match(held, /^held x+$/);
    assert.ok(held.length <= 4096 + 5, `${held.length} characters`);
    const breaker = newLockHolder();
    assert.match(sh(acquireScript(breaker, 0, path)), /^took-over x+$/);
    assert.equal(parseLockHolder(readFileSync(path, 'utf8'))?.run, breaker.run);
  });

  it('refuses a lock path that is a symlink or not a regular file, naming it (Q10 F3: a link to /dev/null was "acquired" by every run)', () => {
    const dir = tempDir('meshctl-lock-');
    const path = join(dir, 'lock');
    symlinkSync('/dev/null', path);
    for (const breakAfter of [3600, 0]) {
      const r = spawnSync('sh', ['-c', acquireScript(newLockHolder(), breakAfter, path)], { encoding: 'utf8', timeout: 10_000 });
      assert.equal(r.status, 3, r.stdout);
      assert.doesNotMatch(r.stdout, /acquired|took-over/);
      assert.match(r.stderr, /lock is not a regular file \(a symlink, FIFO or device\): meshctl neither takes nor removes it/);
    }
    // a FIFO there: refused at once, not a take that blocks
    const fifo = join(dir, 'fifo-lock');
    execFileSync('mkfifo', [fifo]);
    const r = spawnSync('sh', ['-c', acquireScript(newLockHolder(), 3600, fifo)], { encoding: 'utf8', timeout: 10_000 });
    assert.equal(r.status, 3);
  });
});

describe("a lock's age by the node's clock (a new user's finding, 2026-12-02)", () => {
  it("a live run's lock whose started= reads 2 h old (the holder's clock behind the node's) is held, not taken over", () => {
    const path = join(tempDir('meshctl-lock-'), 'lock');
    const live = { ...newLockHolder(), holder: 'ops@laptop', started: Math.floor(Date.now() / 1000) - 7200 };
    writeFileSync(path, `holder=${live.holder} pid=${live.pid} started=${live.started} run=${live.run}\n`);
    assert.match(sh(acquireScript(newLockHolder(), 3600, path)), /^held holder=ops@laptop /);
    assert.equal(parseLockHolder(readFileSync(path, 'utf8'))?.run, live.run);
  });
});

/** A bin directory with the tools the acquire script may use, symlinked from this machine's, but `without`. */
function toolsWithout(without: readonly string[], extra: Record<string, string> = {}): string {
  const bin = join(tempDir('meshctl-lock-bin-'), 'bin');
  mkdirSync(bin);
  for (const tool of ['sh', 'cat', 'head', 'sed', 'date', 'mkdir', 'mv', 'rm', 'rmdir', 'sleep', 'stat', 'find'].filter(
    (t) => !without.includes(t),
  )) {
    const found = execFileSync('sh', ['-c', `command -v ${tool}`], { encoding: 'utf8' }).trim();
    symlinkSync(found, join(bin, tool));
  }
  for (const [name, script] of Object.entries(extra)) {
    writeFileSync(join(bin, name), script);
    chmodSync(join(bin, name), 0o755);
  }
  return bin;
}
const shWith = (bin: string, script: string) =>
  execFileSync(join(bin, 'sh'), ['-c', script], { encoding: 'utf8', env: { PATH: bin } }).trim();

/** A lock file of a run that died 2 h ago (by the node's clock: the file's mtime). */
function staleLock(dir: string): { path: string; line: string } {
  const path = join(dir, 'lock');
  const dead = newLockHolder();
  const line = `holder=${dead.holder} pid=${dead.pid} started=${dead.started} run=${dead.run}`;
  writeFileSync(path, `${line}\n`);
  const twoHoursAgo = new Date(Date.now() - 7200_000);
  utimesSync(path, twoHoursAgo, twoHoursAgo);
  return { path, line };
}

describe("a stale lock's age without find(1), and one taker at a time (RV-13, real sh)", () => {
  it('without find, the age is the mtime by date -r (or stat) against the node clock: a 2 h old lock is taken over', () => {
    for (const without of [['find'], ['find', 'stat']]) {
      const { path } = staleLock(tempDir('meshctl-lock-'));
      const me = newLockHolder();
      assert.match(shWith(toolsWithout(without), acquireScript(me, 3600, path)), /^took-over holder=/, without.join(' '));
      assert.equal(parseLockHolder(readFileSync(path, 'utf8'))?.run, me.run);
    }
    // a fresh lock is still held
    const fresh = join(tempDir('meshctl-lock-'), 'lock');
    writeFileSync(fresh, `holder=ops@laptop pid=1 started=${Math.floor(Date.now() / 1000)} run=abc\n`);
    assert.match(shWith(toolsWithout(['find']), acquireScript(newLockHolder(), 3600, fresh)), /^held holder=ops@laptop /);
  });

  it('a node that cannot tell the age answers held-unjudged, and the refusal says so', async () => {
    const { path, line } = staleLock(tempDir('meshctl-lock-'));
    // no find, no stat, and a date that knows no -r
    const bin = toolsWithout(['find', 'stat', 'date'], {
      date: '#!/bin/sh\ncase "$1" in -r) exit 1;; esac\nexec /usr/bin/date "$@"\n',
    });
    assert.equal(shWith(bin, acquireScript(newLockHolder(), 3600, path)), `held-unjudged ${line}`);
    const connection = new FakeConnection('n1', [{ match: /take_lock/, reply: { stdout: `held-unjudged ${line}\n` } }]);
    const outcome = await acquireLocks(new Map([['n1', connection]]), { breakLock: false, signal: new AbortController().signal });
    assert.ok(!outcome.ok);
    assert.match(
      outcome.message,
      /^n1 is locked by another meshctl run: .*; its age could not be judged on this node \(no find, date -r or stat\), so it is never taken over as stale/,
    );
  });

  it('a stale take-over waits its turn: while another taker holds a fresh lock.takeover, the lock is held, even with --break-lock (RV2 S3-4)', () => {
    const { path } = staleLock(tempDir('meshctl-lock-'));
    mkdirSync(`${path}.takeover`);
    assert.match(sh(acquireScript(newLockHolder(), 3600, path)), /^held /, 'another taker is at it');
    assert.match(sh(acquireScript(newLockHolder(), 0, path)), /^held /, "--break-lock leaves a live taker's mutex alone");
    assert.ok(existsSync(`${path}.takeover`));
    const again = staleLock(tempDir('meshctl-lock-'));
    assert.match(sh(acquireScript(newLockHolder(), 3600, again.path)), /^took-over /);
    assert.ok(!existsSync(`${again.path}.takeover`), 'the stale taker removes its directory');
  });

  it('a mutex left by a killed taker (older than TORN_S) is cleared: the stale take-over and --break-lock go ahead (RV2 S3-3)', () => {
    for (const breakAfter of [3600, 0]) {
      const { path } = staleLock(tempDir('meshctl-lock-'));
      mkdirSync(`${path}.takeover`);
      const past = new Date(Date.now() - (TORN_S + 50) * 1000);
      utimesSync(`${path}.takeover`, past, past);
      const me = newLockHolder();
      assert.match(sh(acquireScript(me, breakAfter, path)), /^took-over holder=/, `break-after ${breakAfter}`);
      assert.equal(parseLockHolder(readFileSync(path, 'utf8'))?.run, me.run);
      assert.ok(!existsSync(`${path}.takeover`), 'no mutex left behind');
    }
  });

  it('RV3 F5: a fresh mutex that another taker made after this one judged the old one is not removed: put back, and the lock is held', () => {
    // the race, in order: this taker read the killed taker's old mutex as old; meanwhile a live taker cleared it and
    // made its own (fresh) one. A `date` whose first -r of the mutex answers "1970" stands for the first read; the
    // live taker's mutex is the fresh directory on disk
    const { path, line } = staleLock(tempDir('meshctl-lock-'));
    mkdirSync(`${path}.takeover`);
    const realDate = execFileSync('sh', ['-c', 'command -v date'], { encoding: 'utf8' }).trim();
    const flag = join(tempDir('meshctl-lock-'), 'first-read-done');
    const bin = toolsWithout(['date'], {
      date: `#!/bin/sh\nif [ "$1" = -r ] && [ ! -e ${flag} ]; then case "$2" in *.takeover) : > ${flag}; echo 0; exit 0;; esac; fi\nexec ${realDate} "$@"\n`,
    });
    assert.equal(shWith(bin, acquireScript(newLockHolder(), 3600, path)), `held ${line}`, "the live taker's turn");
    assert.ok(existsSync(flag), 'the mutex was judged old first (the race, not a plain fresh mutex)');
    assert.ok(existsSync(`${path}.takeover`), "the live taker's mutex is still there");
    assert.equal(readFileSync(path, 'utf8'), `${line}\n`, 'the lock untouched');
  });

  it('a find(1) that exists but fails (no -mmin) falls through to date -r: a 2 h old lock is taken over (RV2 S3-5)', () => {
    const { path } = staleLock(tempDir('meshctl-lock-'));
    const bin = toolsWithout(['find'], { find: '#!/bin/sh\necho "find: unrecognized: -mmin" >&2\nexit 1\n' });
    const me = newLockHolder();
    assert.match(shWith(bin, acquireScript(me, 3600, path)), /^took-over holder=/);
    assert.equal(parseLockHolder(readFileSync(path, 'utf8'))?.run, me.run);
  });
});

describe('an empty lock file, a take cut off between create and write (RV2 S3-9, real sh)', () => {
  const emptyLock = (ageS: number): string => {
    const path = join(tempDir('meshctl-lock-'), 'lock');
    writeFileSync(path, '');
    const past = new Date(Date.now() - ageS * 1000);
    utimesSync(path, past, past);
    return path;
  };
  it('--break-lock breaks it at once, whatever its age, and so any foreign file', () => {
    for (const content of ['', 'not a lock line\n']) {
      const path = emptyLock(0);
      writeFileSync(path, content);
      const me = newLockHolder();
      assert.match(sh(acquireScript(me, 0, path)), /^took-over/, JSON.stringify(content));
      assert.equal(parseLockHolder(readFileSync(path, 'utf8'))?.run, me.run);
      assert.ok(!existsSync(`${path}.takeover`));
    }
  });
  it('without --break-lock, one older than TORN_S is replaced (by date -r, and without find/stat); a fresh one is held', () => {
    for (const without of [[], ['find', 'stat']]) {
      const path = emptyLock(TORN_S + 50);
      const me = newLockHolder();
      assert.equal(shWith(toolsWithout(without), acquireScript(me, 3600, path)), 'took-over', without.join(' '));
      assert.equal(parseLockHolder(readFileSync(path, 'utf8'))?.run, me.run);
    }
    const fresh = emptyLock(0);
    assert.equal(sh(acquireScript(newLockHolder(), 3600, fresh)), 'held');
    assert.equal(readFileSync(fresh, 'utf8'), '', 'a take that may be under way is left alone');
  });
  it('says it: the take warns of the empty lock; a refusal says run again or with --break-lock', async () => {
    const taken = await acquireLocks(
      new Map([['n1', new FakeConnection('n1', [{ match: /take_lock/, reply: { stdout: 'took-over \n' } }])]]),
      {
        breakLock: false,
        signal: new AbortController().signal,
      },
    );
    assert.ok(taken.ok);
    assert.deepEqual(taken.warnings, ['n1: replaced an empty run lock (a take cut off) at /run/meshctl/lock']);
    await taken.release();
    const refused = await acquireLocks(
      new Map([['n1', new FakeConnection('n1', [{ match: /take_lock/, reply: { stdout: 'held \n' } }])]]),
      {
        breakLock: false,
        signal: new AbortController().signal,
      },
    );
    assert.ok(!refused.ok);
    assert.match(
      refused.message,
      /^n1: an empty run lock at \/run\/meshctl\/lock \(a take cut off, or one under way\): run again, or with --break-lock$/,
    );
  });
});

describe('run lock scripts, issue 10 (real sh)', () => {
  it('the release reads the lock with the shell: a lock of another run, or none, is left alone and exits 0', () => {
    const path = join(tempDir('meshctl-lock-'), 'lock');
    const a = newLockHolder();
    assert.equal(execFileSync('sh', ['-c', releaseScript(a, path)]).length, 0, 'no lock: nothing to do');
    writeFileSync(path, 'holder=x@y pid=1 started=1 run=0123456789abcdef\n');
    sh(releaseScript(a, path));
    assert.ok(existsSync(path));
    // a file without its final newline is read too (grep read it before)
    writeFileSync(path, `holder=x@y pid=1 started=1 run=${a.run}`);
    sh(releaseScript(a, path));
    assert.equal(existsSync(path), false);
  });

  it("as a section of a probe, the lock's answer is read and the rest of the probe still runs (its exit is a subshell's)", () => {
    const connections = new Map([
      ['a', {} as never],
      ['b', {} as never],
    ]);
    const locks = new RunLocks(connections, { breakLock: false, signal: new AbortController().signal });
    const section = locks.sectionFor('b')!;
    assert.equal(locks.sectionFor('b'), undefined, 'asked once');
    const out = execFileSync('sh', ['-c', `${section.replaceAll('/run/meshctl', tempDir('meshctl-lock-'))}\necho after`], {
      encoding: 'utf8',
    });
    assert.match(out, /after\n$/);
    assert.equal(locks.settle('b', splitSections(out)), undefined);
    assert.equal(locks.settle('a', splitSections('')), undefined, 'a node whose probe carried no lock section is not judged');
  });
});

describe('acquireLocks', () => {
  const signal = new AbortController().signal;

  it('takes the first node alone, then the others; a refusal anywhere releases what was taken and names the holder', async () => {
    const order: string[] = [];
    const node = (name: string, reply: string) =>
      new FakeConnection(name, [
        {
          match: /take_lock/,
          reply: () => {
            order.push(name);
            return { stdout: `${reply}\n` };
          },
        },
        {
          match: /rm -f/,
          reply: () => {
            order.push(`release ${name}`);
            return {};
          },
        },
      ]);
    const other = 'holder=ops@laptop pid=4242 started=1796000000 run=abcd';
    const connections = new Map([
      ['wk-2', node('wk-2', `held ${other}`)],
      ['ms-1', node('ms-1', 'acquired')],
      ['wk-1', node('wk-1', 'acquired')],
    ]);
    const outcome = await acquireLocks(connections, { breakLock: false, signal });
    assert.equal(outcome.ok, false);
    assert.ok(!outcome.ok);
    assert.equal(outcome.node, 'wk-2');
    assert.match(
      outcome.message,
      /wk-2 is locked by another meshctl run: ops@laptop \(pid 4242\) since 2026-\d\d-\d\d .* UTC; wait for it, or run with --break-lock/,
    );
    assert.equal(order[0], 'ms-1', 'the first node by name is locked alone, first');
    // every node it tried, the refusing one too: the release script removes only a lock holding this run's token
    assert.deepEqual(order.filter((o) => o.startsWith('release')).sort(), ['release ms-1', 'release wk-1', 'release wk-2']);
  });

  it('a lock whose started= no date can hold still names the lock and --break-lock (Q9 F-lock-date: "Invalid time value")', async () => {
    const bogus = 'holder=ops@x pid=1 started=99999999999999999 run=abc';
    const connections = new Map([
      [
        'ms-1',
        new FakeConnection('ms-1', [
          { match: /take_lock/, reply: { stdout: `held ${bogus}\n` } },
          { match: /rm -f/, reply: {} },
        ]),
      ],
    ]);
    const outcome = await acquireLocks(connections, { breakLock: false, signal });
    assert.ok(!outcome.ok);
    assert.match(
      outcome.message,
      /^ms-1 is locked by another meshctl run: ops@x \(pid 1\) since started=\d+ \(no valid time\); wait for it, or run with --break-lock/,
    );
  });

  it('a take whose answer never came (a deadline) is released too: the lock may have been made there', async () => {
    const released: string[] = [];
    const node = (name: string, reply: { code?: number; stdout?: string }) =>
      new FakeConnection(name, [
        { match: /take_lock/, reply },
        {
          match: /rm -f/,
          reply: () => {
            released.push(name);
            return {};
          },
        },
      ]);
    const connections = new Map([
      ['a', node('a', { stdout: 'acquired\n' })],
      ['b', node('b', { code: 124 })],
      ['c', node('c', { stdout: 'held holder=x@y pid=1 started=1 run=r\n' })],
    ]);
    const outcome = await acquireLocks(connections, { breakLock: false, signal });
    assert.equal(outcome.ok, false);
    assert.deepEqual(released.sort(), ['a', 'b', 'c']);
  });

  it('a run refused at the first node touches no other node', async () => {
    const seen: string[] = [];
    const connections = new Map(
      ['a', 'b', 'c'].map((name) => [
        name,
        new FakeConnection(name, [
          {
            match: /take_lock/,
            reply: () => {
              seen.push(name);
              return { stdout: 'held holder=x@y pid=1 started=1 run=r\n' };
            },
          },
        ]),
      ]),
    );
    const outcome = await acquireLocks(connections, { breakLock: false, signal });
    assert.equal(outcome.ok, false);
    assert.deepEqual(seen, ['a']);
    assert.ok(!connections.get('b')!.scripts.length && !connections.get('c')!.scripts.length, 'nothing sent to b or c');
  });
});
