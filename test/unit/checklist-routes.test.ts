/**
 * Issue 10: the checklist's route sections take their lines from ONE `ip -j -force -batch -` (src/checks/
 * checklist-lean.ts), and the batch's text is read once, not searched once per peer: dash matches `${text#*"$1"}` in
 * time quadratic in the text's length, so the search made each node's checklist O(N^3) over N peers (0.3 s of CPU
 * per node at 32 nodes). The scripts run here in the real `sh`, with `ip` a shell function standing in for iproute2.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { factsScript, FACTS, routeLookupFact } from '../../src/facts/definitions.js';
import { leanChecklistFacts } from '../../src/checks/checklist-lean.js';
import { splitSections } from '../../src/facts/sections.js';

const ctx = { interface: 'wg0', listenPort: 51820 };
const peersOf = (n: number) => Array.from({ length: n }, (_, i) => `10.${Math.floor(i / 250)}.${i % 250}.${(i % 7) + 1}`);
const routeLine = (ip: string) => `[{"dst":"${ip}","dev":"wg0","prefsrc":"10.255.0.1","flags":[],"uid":0,"cache":[]}]`;
const ADDR_LINE = '[{"ifindex":5,"ifname":"wg0","flags":["POINTOPOINT","NOARP","UP","LOWER_UP"],"mtu":1420,"addr_info":[]}]';

/**
 * `ip` as a shell function: with -batch it answers each line of its input (`addr show dev wg0`, `route get IP`) with
 * a JSON line, except the addresses in `failing` (as a failed command prints nothing there); alone, it answers its
 * one command. Every call appends a line to the file in $IPCALLS.
 */
const fakeIp = (failing: string[]) =>
  [
    'ip() {',
    '  echo "$*" >> "$IPCALLS"',
    '  case "$*" in',
    '    *-batch*) while read -r c a b d; do case "$c $a" in',
    `      "addr show") echo '${ADDR_LINE}' ;;`,
    `      "route get") case " ${failing.join(' ')} " in *" $b "*) ;; *) printf '[{"dst":"%s","dev":"wg0","prefsrc":"10.255.0.1","flags":[],"uid":0,"cache":[]}]\\n' "$b" ;; esac ;;`,
    '      esac; done ;;',
    `    *"route get"*) printf '[{"dst":"%s","dev":"wg0","prefsrc":"10.255.0.1","flags":[],"uid":0,"cache":[]}]\\n' "$4" ;;`,
    `    *) echo '${ADDR_LINE}' ;;`,
    '  esac',
    '}',
  ].join('\n');

/** The addr section and every route section of the lean checklist, run in sh; `xtrace`: with `set -x`. */
function run(peers: string[], options: { failing?: string[]; xtrace?: boolean } = {}) {
  const lean = leanChecklistFacts(peers);
  const defs = [FACTS.interfaceAddr, ...peers.map(routeLookupFact)].map((d) => lean.get(d.name) ?? d);
  const calls = `/tmp/meshctl-test-ipcalls-${process.pid}-${Math.random().toString(36).slice(2)}`;
  const script = `${fakeIp(options.failing ?? [])}\n${options.xtrace ? 'set -x\n' : ''}${factsScript(defs, ctx, 'done')}\nset +x\ncat "$IPCALLS"; rm -f "$IPCALLS"`;
  const r = spawnSync('sh', ['-c', script], { encoding: 'utf8', env: { ...process.env, IPCALLS: calls }, maxBuffer: 64 << 20 });
  assert.equal(r.status, 0, r.stderr);
  // each section's stderr, the trace included, is in its stdout (`{ ...; } 2>&1`)
  return { sections: splitSections(r.stdout), ipCalls: r.stdout.split('\n').filter((l) => /^-j /.test(l)), output: r.stdout + r.stderr };
}

describe('checklist route sections from one ip batch, read once', () => {
  it('every peer gets its own route line, and the interface its addr line, from ONE ip', () => {
    const peers = peersOf(31);
    const { sections, ipCalls } = run(peers);
    assert.deepEqual(ipCalls, ['-j -force -batch -']);
    assert.equal(sections.get('addr')?.body, ADDR_LINE);
    for (const ip of peers) assert.equal(sections.get(`route:${ip}`)?.body, routeLine(ip), ip);
  });

  it('a lookup the batch did not answer runs alone, and only that one', () => {
    const peers = peersOf(8);
    const { sections, ipCalls } = run(peers, { failing: [peers[3]!] });
    assert.deepEqual(ipCalls, ['-j -force -batch -', `-j route get ${peers[3]}`]);
    for (const ip of peers) assert.equal(sections.get(`route:${ip}`)?.body, routeLine(ip), ip);
  });

  it("an address that is a prefix of another's (10.0.1.1, 10.0.1.10) gets its own line", () => {
    const peers = ['10.0.1.10', '10.0.1.1', '10.0.1.100', 'fd00::1', 'fd00::1:0'];
    const { sections, ipCalls } = run(peers);
    assert.equal(ipCalls.length, 1);
    for (const ip of peers) assert.equal(sections.get(`route:${ip}`)?.body, routeLine(ip), ip);
  });

  it('the shell copies the batch text a number of times linear in the peers (the search copied it once per peer)', () => {
    // the trace shows every value the shell assigned: the bytes grow as N with one read of the batch, as N^2 with a
    // search of the whole text per peer (each cut prefix is a copy of up to the whole text)
    const bytes = (n: number) => run(peersOf(n), { xtrace: true }).output.length;
    const small = bytes(30);
    const large = bytes(120);
    assert.ok(large < small * 6, `trace bytes ${small} at 30 peers, ${large} at 120: more than linear`);
  });
});
