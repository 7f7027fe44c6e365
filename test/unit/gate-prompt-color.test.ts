/**
 * Finding 31: the STOP/GO gate's question was coloured by inquirer's own theme even with --no-color (or NO_COLOR:
 * meshctl's colour decision never reached it). The gate's question (src/ui/engine-view.ts gateQuestion) is asked here
 * through inquirer's real confirm prompt on in-memory streams, with colours forced on in the environment (as a
 * terminal that supports them would have): with colour it has escapes (the test can see them), without it none.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';

// inquirer's colours (yoctocolors) are decided when it is loaded, from the environment: forced on, as on a colour terminal
process.env.FORCE_COLOR = '1';
delete process.env.NO_COLOR;

/** What the gate's question prints, answered with Enter. */
async function asked(color: boolean): Promise<string> {
  const { default: inquirer } = await import('inquirer');
  const { gateQuestion } = await import('../../src/ui/engine-view.js');
  const input = new PassThrough();
  const output = new PassThrough();
  let text = '';
  output.on('data', (chunk: Buffer) => (text += chunk.toString()));
  const prompt = inquirer.createPromptModule({ input, output });
  const answer = prompt<{ go: boolean }>([gateQuestion('Baseline (wipe-verify)', color)]);
  setImmediate(() => input.write('\n'));
  const { go } = await answer;
  assert.equal(go, true);
  return text;
}

/** an SGR escape (colour, bold): what a plain prompt must not print (cursor movements are fine) */
const SGR = /\u001b\[[0-9;]*m/;

describe('finding 31: the gate question and --no-color', () => {
  it('coloured on a colour terminal (the test sees escapes when there are some)', async () => {
    assert.match(await asked(true), SGR);
  });

  it('plain without colour: the same question, no escape sequence', async () => {
    const text = await asked(false);
    assert.match(text, /GO: continue after "Baseline \(wipe-verify\)"\?/);
    assert.doesNotMatch(text, SGR, JSON.stringify(text));
  });
});
