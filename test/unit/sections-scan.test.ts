/**
 * SectionStream's scan (src/facts/sections.ts) jumps from one `@@meshctl ` at a line's start to the next and reads the
 * usual end marker (`NAME rc=DIGITS`, nothing around it) in place: the edges of that, each cut at every byte and fed
 * a character at a time, must give splitSections' sections of the whole text (unchanged, the reference): a marker
 * split across pieces anywhere (in its head, its word, its name, its rc), `@@meshctl ` inside a line, lines that
 * start like a marker and are none, end markers of other sections, end markers the quick way must not read (a name
 * with a blank, an empty name, blanks around, a carriage return, an rc past 15 digits, rc=x), CRLF endings.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SectionStream, splitSections, type Section } from '../../src/facts/sections.js';
import { seededRandom } from '../support/seeded-random.js';

function streamed(pieces: string[]): Section[] {
  const out: Section[] = [];
  const stream = new SectionStream((s) => out.push(s));
  for (const p of pieces) stream.write(p);
  stream.end();
  return out;
}

const asMap = (sections: Section[]) => [...new Map(sections.map((s) => [s.name, s]))];

function same(text: string, pieces: string[]): void {
  assert.deepEqual(asMap(streamed(pieces)), [...splitSections(text)], `${JSON.stringify(text)} in ${JSON.stringify(pieces)}`);
}

function everyCut(text: string): void {
  same(text, [text]);
  for (let i = 0; i <= text.length; i++) same(text, [text.slice(0, i), text.slice(i)]);
  same(text, [...text]);
}

const LINES = [
  '@@meshctl begin a',
  '@@meshctl end a rc=0',
  '@@meshctl end a rc=17',
  '@@meshctl begin ping:100.80.0.2',
  '@@meshctl end ping:100.80.0.2 rc=0',
  '@@meshctl end ping:100.80.0.20 rc=0',
  '@@meshctl end ping:100.80.0.2 rc=0x',
  '@@meshctl end ping:100.80.0.2rc=0',
  '@@meshctl end ping:100.80.0.2 rc=',
  '@@meshctl begin a b',
  '@@meshctl end a b rc=0',
  '@@meshctl begin ',
  '@@meshctl end  rc=0',
  '@@meshctl end rc=0',
  '@@meshctl end a rc=1234567890123456789',
  '@@meshctl end a rc=123456789012345',
  '@@meshctl end a rc=0 ',
  '@@meshctl end a rc=0\r',
  '@@meshctl end \ta rc=2',
  '@@meshctl begin\ta',
  '@@meshctl beginning a',
  '@@meshctl ender a rc=0',
  '@@meshctl',
  '@@meshctl ',
  '@@meshctl x',
  '@@meshct',
  '@@meshctl begin a\r',
  'data @@meshctl begin b',
  'data @@meshctl end a rc=0',
  ' @@meshctl end a rc=0',
  '@@@meshctl end a rc=0',
  '@',
  'x',
  '',
];

describe("SectionStream's scan: markers found by their head, the usual end marker read in place", () => {
  it('fixed edges, each cut at every byte and a character at a time', () => {
    const cases = [
      // a marker split anywhere, inside a body of several lines
      '@@meshctl begin ping:100.80.0.2\nPING 100.80.0.2\n3 packets transmitted, 3 received\n@@meshctl end ping:100.80.0.2 rc=0\n@@meshctl begin b\nx\n@@meshctl end b rc=12\n',
      // `@@meshctl ` inside lines is data
      '@@meshctl begin a\nsays @@meshctl end a rc=0\nand @@meshctl begin b\n@@meshctl end a rc=3\n',
      // lines that start like a marker and are none
      '@@meshctl begin a\n@@meshctl beginning\n@@meshctl ender a rc=1\n@@meshctl\n@@meshctl x\n@@meshct\n@@meshctl end a rc=4\n',
      // the end marker of another section, of a longer name, of a name with a blank, rc not a number
      '@@meshctl begin ping:1\n@@meshctl end ping:10 rc=0\n@@meshctl end ping:1 rc=0x\n@@meshctl end ping:1rc=0\n@@meshctl end ping:1 rc=5\n',
      '@@meshctl begin a b\n@@meshctl end a b rc=0\nbody\n',
      '@@meshctl begin \n@@meshctl end  rc=0\n@@meshctl end rc=0\n',
      // end markers with blanks or a carriage return around: read by the regular expression, the same sections
      '@@meshctl begin a\n@@meshctl end  a rc=1 \n@@meshctl begin b\n@@meshctl end \tb rc=2\r\n@@meshctl begin c\n@@meshctl end c rc=3\r\n',
      // an rc of more digits than a Number holds exactly, and of 15
      '@@meshctl begin a\n@@meshctl end a rc=1234567890123456789\n@@meshctl begin b\n@@meshctl end b rc=123456789012345\n',
      // CRLF endings throughout
      '@@meshctl begin a\r\nline\r\n@@meshctl end a rc=0\r\n@@meshctl begin b\r\n\r\n@@meshctl end b rc=1\r\n',
      // no final newline, a marker as the last line
      '@@meshctl begin a\nx\n@@meshctl end a rc=9',
      '@@meshctl begin a\nx\n@@meshctl begin b',
      // a body of long lines without any marker, then one
      `@@meshctl begin conf\n${'PublicKey = AAAA@@meshctl end conf rc=0\n'.repeat(40)}@@meshctl end conf rc=0\n`,
    ];
    for (const text of cases) everyCut(text);
    assert.deepEqual(streamed(['@@meshctl begin ping:1\n3 recei', 'ved\n@@mesh', 'ctl end ping:1 r', 'c=0\n@@meshctl end ping:1 rc=1\n']), [
      { name: 'ping:1', body: '3 received', rc: 0 },
    ]);
    assert.deepEqual(streamed(['@@meshctl begin a\n@@meshctl end a rc=1234567890123456789\n']), [
      { name: 'a', body: '', rc: Number('1234567890123456789') },
    ]);
    assert.deepEqual(streamed(['@@meshctl begin a b\n@@meshctl end a b rc=0\n']), [{ name: 'a b', body: '@@meshctl end a b rc=0' }]);
  });

  it('10,000 generated outputs of these lines, cut at every byte (the first 1,000) or in random pieces, and a character at a time', () => {
    const next = seededRandom(5);
    for (let t = 0; t < 10_000; t++) {
      const lines = Array.from({ length: 1 + Math.floor(next() * 9) }, () => LINES[Math.floor(next() * LINES.length)]!);
      const text = `${lines.join(next() < 0.2 ? '\r\n' : '\n')}${next() < 0.7 ? '\n' : ''}`;
      if (t < 1_000) everyCut(text);
      else {
        const pieces: string[] = [];
        for (let at = 0; at < text.length; ) {
          const n = Math.floor(next() * 12);
          pieces.push(text.slice(at, at + n));
          at += n;
        }
        same(text, pieces);
        same(text, [...text]);
      }
    }
  });
});
