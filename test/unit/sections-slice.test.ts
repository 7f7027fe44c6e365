/**
 * splitSections cuts each body as one slice of the output (issue 10: verify reads N outputs of O(N) sections each)
 * instead of splitting every line and joining them again. It must cut exactly as the line-by-line way did
 * (splitSectionsByLine, which output with carriage returns still takes): checked on fixed cases and on 50,000
 * outputs made of marker lines, body lines and blanks in every order (a seeded generator: the same every run).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { splitSections, splitSectionsByLine } from '../../src/facts/sections.js';
import { seededRandom } from '../support/seeded-random.js';

const LINES = [
  '@@meshctl begin a',
  '@@meshctl begin b',
  '@@meshctl end a rc=0',
  '@@meshctl end b rc=3',
  '@@meshctl end a rc=x',
  '@@meshctl end  a rc=1 ',
  '@@meshctl begin  c ',
  '@@meshctl end c rc=12',
  'x',
  '',
  '  ',
  'hello world',
];

/** A small seeded generator: the same outputs every run. */
const random = seededRandom;

const same = (text: string) => assert.deepEqual([...splitSections(text)], [...splitSectionsByLine(text)], JSON.stringify(text));

describe('splitSections by slices cuts as line by line did', () => {
  it('fixed cases: empty bodies, a missing end marker, an end marker of another section, no final newline', () => {
    const cases = [
      '',
      '@@meshctl begin a\n@@meshctl end a rc=0\n',
      '@@meshctl begin a\n\n@@meshctl end a rc=0',
      '@@meshctl begin a\nline 1\nline 2  \n\n@@meshctl end a rc=2\n@@meshctl begin b\nunfinished',
      '@@meshctl begin a\n@@meshctl end b rc=1\nstill a\n@@meshctl end a rc=0\n',
      'before\n@@meshctl begin a',
      '@@meshctl begin a\r\nwith crlf\r\n@@meshctl end a rc=0\r\n',
    ];
    for (const text of cases) same(text);
    assert.deepEqual(splitSections('@@meshctl begin a\nline 1\nline 2  \n\n@@meshctl end a rc=2\n').get('a'), {
      name: 'a',
      body: 'line 1\nline 2',
      rc: 2,
    });
  });

  it('50,000 generated outputs', () => {
    const next = random(10);
    for (let t = 0; t < 50_000; t++) {
      const lines = Array.from({ length: Math.floor(next() * 12) }, () => LINES[Math.floor(next() * LINES.length)]!);
      same(`${next() < 0.1 ? '\n' : ''}${lines.join('\n')}${next() < 0.5 ? '\n' : ''}`);
    }
  });
});
