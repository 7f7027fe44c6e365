/**
 * verify's per-peer parts as loops over one list (issue 10 at 1,000 nodes: test/unit/verify-script-bytes.test.ts)
 * print what the per-peer sections printed, byte for byte: the route sections (src/checks/checklist-lean.ts
 * routeLoop, against routeSection's own section per peer, the text checklistScript wrote before) and the burst
 * sections (src/checks/cold-start.ts burstSections, against a copy of its text before, OLD_BURST_SECTIONS). Both run
 * in the real sh (dash here) and bash, with `ip`, `command` and `nc` shell functions standing in for the tools; the
 * bursts through bash's /dev/udp run in an empty network namespace (nothing leaves it).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { checklistScript, checklistSectionNames, parseChecklist, type ChecklistParams } from '../../src/checks/probes.js';
import { routeSection } from '../../src/checks/checklist-lean.js';
import { burstSections, COLD_START_BURST, COLD_START_PAYLOAD, scriptBursts, type Direction } from '../../src/checks/cold-start.js';
import { PATH_PRELUDE, sectionScript, splitSections } from '../../src/facts/sections.js';
import { sh, shellQuote } from '../../src/remote/shell.js';
import { inEmptyNetns, netnsSkip } from '../support/fake-cold-start.js';

const SHELLS = ['sh', 'bash'];
const ADDR_LINE = '[{"ifindex":5,"ifname":"wg0","flags":["POINTOPOINT","NOARP","UP","LOWER_UP"],"mtu":1420,"addr_info":[]}]';

/**
 * `ip` as a shell function: with -batch it answers each line of its input with a JSON line, except the addresses in
 * `missing` (a failed command prints nothing there); alone, `route get` answers with JSON, or for the addresses in
 * `unreachable` with iproute2's error on stderr and status 2.
 */
const fakeIp = (missing: readonly string[], unreachable: readonly string[]) =>
  [
    'ip() {',
    '  case "$*" in',
    '    *-batch*) while read -r c a b d; do case "$c $a" in',
    `      "addr show") echo '${ADDR_LINE}' ;;`,
    `      "route get") case " ${missing.join(' ')} " in *" $b "*) ;; *) printf '[{"dst":"%s","dev":"wg0","prefsrc":"10.255.0.1"}]\\n' "$b" ;; esac ;;`,
    '      esac; done ;;',
    `    *"route get"*) case " ${unreachable.join(' ')} " in *" $4 "*) echo 'RTNETLINK answers: Network is unreachable' >&2; return 2 ;; esac`,
    `      printf '[{"dst":"%s","dev":"eth0","gateway":"192.0.2.1","prefsrc":"192.0.2.7"}]\\n' "$4" ;;`,
    `    *) echo '${ADDR_LINE}' ;;`,
    '  esac',
    '}',
  ].join('\n');

/** The checklist's facts other than addr and the routes: left out here (they read this machine). */
const others = (params: ChecklistParams) =>
  checklistSectionNames(params).filter((name) => name !== 'addr' && name !== 'done' && !name.startsWith('route:'));

/**
 * The addr and route sections as checklistScript writes them now (one list, one loop) and as it wrote them before (a
 * section per peer: routeSection), the addr section alike in both (or left out in both: `withoutAddr`).
 */
function scripts(peerIps: string[], withoutAddr = false) {
  const params = { interface: 'wg0', listenPort: 51820, peerIps };
  const without = [...others(params), ...(withoutAddr ? ['addr'] : [])];
  const now = checklistScript({ ...params, without });
  const parts = now.split('\n');
  const loopAt = parts.findIndex((l) => l.startsWith('mc_rg() {'));
  const before = [...parts.slice(0, loopAt), ...peerIps.map((ip) => routeSection(ip, true)), sectionScript('done', 'true')].join('\n');
  return { params: { ...params, without }, now, before };
}

const run = (shell: string, script: string, input = '') => {
  const r = spawnSync(shell, ['-c', `${input}\n${script}`], { encoding: 'utf8', maxBuffer: 64 << 20 });
  assert.equal(r.status, 0, r.stderr);
  return r.stdout;
};

describe('route sections: one loop over the peers prints what a section per peer printed', () => {
  const peers = ['10.0.1.10', '10.0.1.1', '10.0.1.100', '172.27.20.13', 'fd00::1', 'fd00::1:0', 'FD00::A'];
  const cases: Array<[string, { missing?: string[]; unreachable?: string[]; withoutAddr?: boolean }]> = [
    ['every line from the batch', {}],
    [
      'lines the batch did not print: those lookups alone, one unreachable',
      { missing: ['10.0.1.1', 'fd00::1:0'], unreachable: ['fd00::1:0'] },
    ],
    ['no addr section (no batch): every lookup alone', { withoutAddr: true, unreachable: ['10.0.1.100'] }],
  ];
  for (const shell of SHELLS)
    for (const [what, c] of cases)
      it(`${shell}: ${what}`, () => {
        const { params, now, before } = scripts(peers, c.withoutAddr);
        assert.ok(!now.includes('route get 10.0.1.100'), 'the loop writes no section per peer');
        const stand = fakeIp(c.missing ?? [], c.unreachable ?? []);
        const out = run(shell, now, stand);
        assert.equal(out, run(shell, before, stand));
        // and read alike: each peer's route, the unreachable one with its error
        const read = parseChecklist(out, params);
        assert.deepEqual(read.problems, []);
        assert.deepEqual(
          read.routes.map((r) => r.dev ?? r.error),
          peers.map((ip) =>
            c.unreachable?.includes(ip)
              ? 'RTNETLINK answers: Network is unreachable'
              : c.withoutAddr || c.missing?.includes(ip)
                ? 'eth0'
                : 'wg0',
          ),
        );
      });

  it('the peers are written once (their list), whatever their number', () => {
    const { now } = scripts(peers);
    const lines = now.split('\n').filter((l) => /10\.0\.1|172\.27|fd00|FD00/.test(l));
    assert.deepEqual(lines, [`mc_ips='${peers.join(' ')}'`]);
  });
});

/** burstSections as it was before its loop (commit ee8a624): a section per direction, in bash and again without. */
function OLD_BURST_SECTIONS(sends: Direction[]): string[] {
  if (sends.length === 0) return [];
  const n = COLD_START_BURST;
  const payload = shellQuote(COLD_START_PAYLOAD);
  const call = (fn: string, d: Direction) => `${fn} ${shellQuote(d.endpoint.host)} ${Number(d.endpoint.port)}`;
  const inBash = [
    `mc_b() { { i=0; while [ $i -lt ${n} ]; do printf '%s\n' ${payload} >&3 2>/dev/null; i=$((i+1)); done; echo sent=${n}; } 3>"/dev/udp/$1/$2" || (exit 3); }`,
    ...sends.map((d, i) => sectionScript(`burst${i}`, call('mc_b', d))),
  ];
  const alone = [
    `mc_nc() { if command -v nc >/dev/null 2>&1; then i=0; while [ $i -lt ${n} ]; do echo ${payload} | nc -u -w 0 "$1" "$2" 2>/dev/null; i=$((i+1)); done; echo sent=${n}; else echo 'sent=0 (neither bash nor nc)'; fi; }`,
    ...sends.map((d, i) => sectionScript(`burst${i}`, call('mc_nc', d))),
  ];
  return [`if command -v bash >/dev/null 2>&1; then ${sh`bash -c ${inBash.join('\n')}`.text}\nelse`, ...alone, 'fi'];
}

const script = (parts: string[]) => [PATH_PRELUDE, ...parts, sectionScript('done', 'true')].join('\n');
const to = (host: string, port: number): Direction => ({ from: 'a', to: 'b', endpoint: { host, port } });
// 192.0.2.9: no route in an empty namespace, so bash cannot connect that socket (status 3, its error)
const SENDS = [to('127.0.0.1', 7001), to('192.0.2.9', 9), to('::1', 7002), to('localhost', 7003), to('127.0.0.1', 7004)];

describe('burst sections: one loop over the directions prints what a section per direction printed', () => {
  it('lists each direction once, as HOST/PORT, read back by scriptBursts', () => {
    const text = burstSections(SENDS).join('\n');
    for (const d of SENDS) assert.equal(text.split(`${d.endpoint.host}/${d.endpoint.port}`).length - 1, 1);
    assert.deepEqual(
      scriptBursts(text).map((b) => `${b.section} ${b.host} ${b.port}`),
      SENDS.map((d, i) => `burst${i} ${d.endpoint.host} ${d.endpoint.port}`),
    );
    assert.throws(() => burstSections([to('a b', 1)]), /not a plain host/);
  });

  for (const shell of SHELLS)
    it(`${shell}, without bash: netcat's loop, one nc per datagram, the same sections`, () => {
      // `command -v bash` says no; nc a function that logs its arguments to $NCLOG (its stdin, the payload, is read)
      const stand = [
        'command() { case $2 in bash) return 1 ;; nc) return 0 ;; esac; return 1; }',
        'nc() { cat >/dev/null; echo "nc $*" >> "$NCLOG"; }',
      ].join('\n');
      const dir = mkdtempSync(join(tmpdir(), 'meshctl-nc-'));
      try {
        const ran = (parts: string[], log: string) => {
          const r = spawnSync(shell, ['-c', `${stand}\n${script(parts)}`], {
            encoding: 'utf8',
            env: { ...process.env, NCLOG: join(dir, log) },
          });
          assert.equal(r.status, 0, r.stderr);
          return { stdout: r.stdout, nc: readFileSync(join(dir, log), 'utf8') };
        };
        const now = ran(burstSections(SENDS), 'now');
        const before = ran(OLD_BURST_SECTIONS(SENDS), 'before');
        assert.equal(now.stdout, before.stdout);
        assert.equal(now.nc, before.nc);
        const s = splitSections(now.stdout);
        for (let i = 0; i < SENDS.length; i++) assert.equal(s.get(`burst${i}`)?.body, `sent=${COLD_START_BURST}`);
        assert.equal(now.nc.split('\n').filter((l) => l === 'nc -u -w 0 ::1 7002').length, COLD_START_BURST);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });

  it('with bash (its /dev/udp, in an empty network namespace): the same sections, a socket that cannot open its error', {
    skip: netnsSkip ?? false,
  }, () => {
    const now = inEmptyNetns(script(burstSections(SENDS)));
    const before = inEmptyNetns(script(OLD_BURST_SECTIONS(SENDS)));
    assert.equal(now.status, 0, now.stderr);
    assert.equal(now.stdout, before.stdout);
    const s = splitSections(now.stdout);
    assert.deepEqual(
      SENDS.map((_, i) => s.get(`burst${i}`)?.rc),
      [0, 3, 0, 0, 0],
    );
    assert.match(s.get('burst1')?.body ?? '', /192\.0\.2\.9/);
    assert.equal(s.get('burst3')?.body, `sent=${COLD_START_BURST}`);
  });
});
