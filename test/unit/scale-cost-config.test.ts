/**
 * Issue 10, the config path at farm scale, by counting work (never time): the diff of a config of thousands of lines
 * is bounded work (no n*m table), a config is redacted once (not per line), and in a cold `up` each node's config is
 * decided (rendered, planned, diffed) once. The counters are exported by the code under test:
 * lineDiffWork (../../src/render/line-diff.ts), redactPasses (../../src/remote/redact.ts), configDecisions
 * (../../src/engine/registry.ts). The end-to-end part runs the real `up` against the bench's fake cold nodes
 * (scripts/bench/farm/fake-node.ts, what `npm run bench:plan` measures).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { lineDiff, lineDiffWork, MAX_EDITS } from '../../src/render/line-diff.js';
import { redactPasses } from '../../src/remote/redact.js';
import { planConfig } from '../../src/steps/config.js';
import { configDecisions } from '../../src/engine/registry.js';
import { runUp } from '../../src/engine/up.js';
import { parseFactsProbe } from '../../src/facts/node-facts.js';
import { FakeFarm, fakeFarmInventory, fakePublicKey } from '../../scripts/bench/farm/fake-node.js';

const text = (lines: string[]) => `${lines.join('\n')}\n`;
const numbered = (n: number, prefix = 'line') => Array.from({ length: n }, (_, i) => `${prefix} ${i}`);
/** The lines a diff keeps from `before` (side '-') or `after` (side '+'), with enough context to fold nothing. */
const side = (diff: string[], drop: '+' | '-') => text(diff.filter((l) => l[0] !== drop).map((l) => l.slice(1)));

/** A wg-quick file of `peers` peers, as meshctl renders it (six lines a peer), with real-shaped public keys. */
function bigConfig(peers: number, { privateKeyLine = false } = {}): string {
  const lines = ['# managed by meshctl', '[Interface]', 'Address = 100.80.0.1/32', 'ListenPort = 51820'];
  if (privateKeyLine) lines.push(`PrivateKey = ${fakePublicKey('secret')}`);
  for (let i = 0; i < peers; i++)
    lines.push('', `# peer-${i}`, '[Peer]', `PublicKey = ${fakePublicKey(`peer-${i}`)}`, `AllowedIPs = 100.80.${i >> 8}.${i & 255}/32`);
  return text(lines);
}

describe('lineDiff: bounded work on configs of thousands of lines (issue 10)', () => {
  it('a 2,000-line text with 20 lines changed through its middle: linear work, not a 4,000,000-cell table', () => {
    const before = numbered(2000);
    const after = before.map((l, i) => (i % 100 === 50 ? `${l} changed` : l));
    lineDiffWork.comparisons = 0;
    const diff = lineDiff(text(before), text(after), { context: 1e9 });
    // Myers: about (n + m) x edits / 2 at most; the old LCS table filled 2,001 x 2,001 cells. At least every kept
    // line once: the count is the search's own work, not a number the code could leave at 0.
    assert.ok(lineDiffWork.comparisons < 200_000, `comparisons ${lineDiffWork.comparisons}`);
    assert.ok(lineDiffWork.comparisons >= 1980, `comparisons ${lineDiffWork.comparisons}`);
    assert.equal(diff.filter((l) => l[0] === '-').length, 20);
    assert.equal(diff.filter((l) => l[0] === '+').length, 20);
    assert.equal(side(diff, '+'), text(before), 'the diff minus its additions is the old text');
    assert.equal(side(diff, '-'), text(after), 'the diff minus its removals is the new text');
  });

  it('a new 6,000-line file is all added with no comparison, and folding a 6,000-line diff is linear', () => {
    lineDiffWork.comparisons = 0;
    const diff = lineDiff(undefined, text(numbered(6000)));
    assert.equal(lineDiffWork.comparisons, 0);
    assert.equal(diff.length, 6000);
    assert.ok(diff.every((l) => l[0] === '+'));
    // one line changed in 6,000: every kept line looked for a change near it through all lines (~36,000,000 steps)
    const before = numbered(6000);
    const after = before.map((l, i) => (i === 3000 ? 'changed' : l));
    lineDiffWork.foldSteps = 0;
    assert.deepEqual(lineDiff(text(before), text(after), { context: 1 }), [
      '  ... 2999 unchanged lines',
      ' line 2999',
      '-line 3000',
      '+changed',
      ' line 3001',
      '  ... 2998 unchanged lines',
    ]);
    assert.ok(lineDiffWork.foldSteps <= 2 * 6001, `fold steps ${lineDiffWork.foldSteps}`);
  });

  it('two unrelated 3,000-line texts: the search stops at MAX_EDITS and shows the middle replaced, still a correct diff', () => {
    const before = numbered(3000, 'old');
    const after = numbered(3000, 'new');
    lineDiffWork.comparisons = 0;
    const diff = lineDiff(text(before), text(after), { context: 1e9 });
    assert.ok(lineDiffWork.comparisons <= (MAX_EDITS + 2) ** 2, `comparisons ${lineDiffWork.comparisons}`);
    assert.ok(lineDiffWork.comparisons >= MAX_EDITS, 'each round of the search compares at least one line');
    assert.equal(side(diff, '+'), text(before));
    assert.equal(side(diff, '-'), text(after));
  });

  it('a peer added in the middle of a 1,000-peer config: only its lines are new, the rest kept', () => {
    const before = bigConfig(1000);
    const lines = before.split('\n');
    const after = [...lines.slice(0, 3000), '', '# peer-new', '[Peer]', 'AllowedIPs = 100.81.0.1/32', ...lines.slice(3000)].join('\n');
    lineDiffWork.comparisons = 0;
    const diff = lineDiff(before, after, { context: 0 });
    assert.ok(lineDiffWork.comparisons < 20_000, `comparisons ${lineDiffWork.comparisons}`);
    assert.ok(lineDiffWork.comparisons >= lines.length - 1, 'every kept line compared at least once');
    const changed = diff.filter((l) => l[0] === '+' || l[0] === '-');
    assert.equal(changed.length, 4, changed.join('\n'));
    assert.ok(changed.every((l) => l[0] === '+'));
    assert.ok(changed.includes('+# peer-new') && changed.includes('+AllowedIPs = 100.81.0.1/32'));
  });
});

describe('config redaction: once per config, not per line (issue 10)', () => {
  const bare = parseFactsProbe(readFileSync('test/fixtures/facts/bare-debian12.txt', 'utf8'), { interface: 'wg0', listenPort: 51820 });
  const input = (configText: string) => ({
    iface: 'wg0',
    configText,
    sysctlText: 'x\n',
    rpFilter: 2 as const,
    reloadDropInText: 'y\n',
  });

  it('a cold node (no config): one redaction pass for a 1,000-peer config, every line added', () => {
    const configText = bigConfig(1000);
    redactPasses.count = 0;
    const plan = planConfig(bare, input(configText));
    assert.equal(redactPasses.count, 1);
    const change = plan.action?.changes.find((c) => c.kind === 'write-file' && c.role === 'config');
    assert.ok(change && change.kind === 'write-file');
    assert.equal(change.diff?.length, configText.split('\n').length - 1);
  });

  it('a node with a config: two passes (its file and the rendered one), and a secret on the node stays hidden', () => {
    const onNode = bigConfig(1000, { privateKeyLine: true });
    const facts = { ...bare, config: { ...bare.config, exists: true, text: onNode, sha256: 'f'.repeat(64) } };
    redactPasses.count = 0;
    const plan = planConfig(facts, input(bigConfig(1001)));
    assert.equal(redactPasses.count, 2);
    const change = plan.action?.changes.find((c) => c.kind === 'write-file' && c.role === 'config');
    assert.ok(change && change.kind === 'write-file');
    assert.ok(change.diff?.includes('-PrivateKey = [redacted]'), 'the private key line removed, its value hidden');
    assert.ok(!change.diff?.join('\n').includes(fakePublicKey('secret')));
    assert.ok(change.diff?.includes(`+PublicKey = ${fakePublicKey('peer-1000')}`), 'the new peer shown with its public key');
  });
});

describe('cold up: each node config decided once per run (issue 10)', () => {
  it('40 fake cold nodes: 40 config decisions (plan and outputs of write-config share one), and the run converges', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'meshctl-scale-config-'));
    try {
      const inventory = fakeFarmInventory(40, dir);
      const fakes = new FakeFarm();
      const connector = fakes.connector();
      configDecisions.count = 0;
      const report = await runUp(
        inventory,
        connector,
        { onEvent: () => undefined, gate: async () => true },
        {
          signal: new AbortController().signal,
          underlayProbes: false,
        },
      );
      assert.equal(report.result, 'converged', JSON.stringify(report.phases.flatMap((p) => p.nodes.filter((n) => n.error))).slice(0, 500));
      assert.deepEqual(Object.fromEntries(fakes.unknown), {}, 'every script the fake was sent is one it knows');
      assert.equal(configDecisions.count, 40);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
