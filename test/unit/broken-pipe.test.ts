/**
 * A reader that goes away (`meshctl up --json | head -1`): meshctl must end its run as it would have (locks released,
 * state written), not die on EPIPE. Seen in the lab (helper T, 2026-12-01): `up --json | head -c 1` crashed with
 * "Unhandled 'error' event ... write EPIPE" (exit 1) and left /run/meshctl/lock on every node, so the next `up` was
 * refused ("locked by another meshctl run") for an hour.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { Writable } from 'node:stream';
import { describe, it } from 'node:test';
import { writeJson } from '../../src/ui/json-text.js';

describe('stdout closed by its reader', () => {
  it('the CLI: no crash on EPIPE, the command ends with its own exit code', async () => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli.ts', 'validate', 'inventories/homelab.yaml', '--json'], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, FORCE_COLOR: '0' },
    });
    child.stdout.destroy(); // the reader goes away before meshctl writes anything
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const code = await new Promise<number | null>((resolve) => child.on('close', (c) => resolve(c)));
    assert.doesNotMatch(stderr, /EPIPE|Unhandled 'error' event/);
    assert.equal(code, 0, stderr);
  });

  it('writeJson stops at a destroyed stream instead of waiting for a drain that never comes', async () => {
    let writes = 0;
    const sink = new Writable({
      highWaterMark: 16,
      write(_chunk, _encoding, callback) {
        writes++;
        // the reader went away: the stream breaks on its first write, as a pipe does on EPIPE
        callback(Object.assign(new Error('write EPIPE'), { code: 'EPIPE' }));
      },
    });
    sink.on('error', () => undefined);
    const big = { rows: Array.from({ length: 50_000 }, (_, i) => ({ i, text: 'x'.repeat(40) })) }; // > 1 chunk
    await writeJson(sink, big, 2);
    assert.equal(sink.destroyed, true);
    assert.equal(writes, 1);
  });
});
