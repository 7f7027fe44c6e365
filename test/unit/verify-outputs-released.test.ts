/**
 * verify's collection lets each node's outputs go once they are read (issue 10: at 1,000 nodes the peak RSS was the
 * outputs in flight and the outputs still held, 2.7 GB). A section's body, and every key or endpoint parsed from it,
 * is a V8 slice that keeps the whole output alive, so a parse that is kept keeps its output. Checked on 12 fake
 * converged nodes (scripts/bench/farm/fake-verify-node.ts) behind a Connection that pads one kind of output with
 * 4 MB of text outside any section (which every parser skips): while the last node's ping answer is held back (every
 * other output of the collection read by then), the heap in use after a full collection (V8's gc(), exposed through
 * --expose-gc set at run time) must not hold the padded outputs:
 *   - the other nodes' ping outputs: their after-ping clock and peer dump are read as each arrives (before, the round
 *     kept every node's `after` sections, slices of its output, until the last node answered: 11 x 4 MB);
 *   - every node's pre part (the first script's output up to `pre-done`): its facts are detached as soon as they are
 *     parsed (before, its live key and the dump's peers were slices of it, kept until the probes had ended: 12 x 4 MB).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { heldBytes } from '../support/held-heap.js';
import { collectVerify } from '../../src/checks/collect.js';
import type { Connection, ExecResult, RunOptions } from '../../src/transport/types.js';
import { withConvergedFarm } from '../fixtures/probes/converged-farm.js';

const PAD = 4 << 20;
/** Text before a script's first section, skipped by every parser (../facts/sections.ts splitSections). */
const filler = `${'#'.repeat(PAD)}\n`;
const turn = () => new Promise((resolve) => setImmediate(resolve));

/**
 * `inner` with the outputs of kind `pad` padded (each its own copy once read: the parser flattens it); the n-th ping
 * answer is held back until `check` ran.
 */
function padding(inner: Connection, pad: 'ping' | 'pre', n: number, seen: { pings: number }, check: () => void): Connection {
  return {
    target: inner.target,
    stats: inner.stats,
    close: () => inner.close(),
    async run(script: string, options: RunOptions = {}): Promise<ExecResult> {
      let first = true;
      let pre = '';
      // the first script's pre part only (the ping round reads its output as it arrives too)
      const onStdout =
        options.onStdout && pad === 'pre' && script.includes("begin pre-done'")
          ? (chunk: string, ack: () => void) => {
              const padded = first ? filler + chunk : chunk;
              if (first) pre = padded;
              first = false;
              options.onStdout!(padded, ack);
            }
          : options.onStdout;
      const result = await inner.run(script, { ...options, ...(onStdout ? { onStdout } : {}) });
      if (pre) {
        // the whole output begins with the padded pre part, as ssh would deliver it
        const whole = { ...result, stdout: filler + result.stdout };
        pre = '';
        return whole;
      }
      if (!/begin ping:/.test(script)) return result;
      const answer = pad === 'ping' ? { ...result, stdout: filler + result.stdout } : result;
      if (++seen.pings === n) {
        // every other node's ping answer has been read by now
        for (let i = 0; i < 5; i++) await turn();
        check();
      }
      return answer;
    },
  } as Connection;
}

/** The heap held (bytes, over what was held before the collection) while the last ping answer is held back. */
async function heldWhileLastPing(pad: 'ping' | 'pre'): Promise<number> {
  const n = 12;
  return withConvergedFarm(n, async (inventory, farm) => {
    const seen = { pings: 0 };
    let grown: number | undefined;
    const before = heldBytes();
    const connections = new Map(
      [...farm.connections()].map(([name, c]) => [name, padding(c, pad, n, seen, () => (grown = heldBytes() - before))]),
    );
    const collected = await collectVerify(inventory, connections, new Map(), { pathMtu: true });
    // what the outputs said was read: every node's peers before and after the pings
    assert.equal(collected.afterPing!.size, n);
    for (const after of collected.afterPing!.values()) assert.equal(after.peers.length, n - 1);
    for (const cl of collected.checklists.values()) assert.equal(cl.peers.length, n - 1);
    assert.equal(seen.pings, n);
    return grown!;
  });
}

describe("verify's collection lets each node's outputs go once read (12 fake converged nodes, outputs padded by 4 MB)", () => {
  it('the ping outputs of the nodes that answered, before the round ends', async () => {
    const grown = await heldWhileLastPing('ping');
    // the last answer itself is on the stack (4 MB); 11 outputs held were 44 MB
    assert.ok(grown < 2.5 * PAD, `${(grown / 2 ** 20).toFixed(1)} MB held`);
  });

  it('every pre part, before the probes end', async () => {
    const grown = await heldWhileLastPing('pre');
    // 12 pre parts held were 48 MB (one output may stay: V8 keeps the last string a RegExp matched, RegExp.input)
    assert.ok(grown < 2.5 * PAD, `${(grown / 2 ** 20).toFixed(1)} MB held`);
  });
});
