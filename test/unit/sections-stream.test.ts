/**
 * SectionStream (src/facts/sections.ts) cuts output that arrives in pieces into the sections splitSections cuts from
 * the whole (issue 10: no node's whole output held): the same sections in the same order, the same names, bodies and
 * rcs, with the output cut at every byte (one cut, and two), in random pieces, and fed one character at a time; on
 * the probes' captures (test/fixtures/probes/*.txt), on outputs made of marker lines, bodies and carriage returns in
 * every order (a seeded generator: the same every run), and on a 150-peer checklist and ping output.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { SectionStream, splitSections, splitSectionsOf, type Section } from '../../src/facts/sections.js';
import { checklistStdout, pingStdout } from '../fixtures/probes/homelab.js';
import { withConvergedFarm } from '../fixtures/probes/converged-farm.js';
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
  '@@meshctl begin a\r',
  '@@meshctl end a rc=0\r',
  'x',
  '',
  '  ',
  '\r',
  'a\rb',
  'hello world, a line longer than thirteen',
];

/** A small seeded generator: the same outputs every run. */
const random = seededRandom;

/** The sections in the order they were handed on (the stream's own order, not only the Map's). */
function streamed(pieces: string[]): Section[] {
  const out: Section[] = [];
  const stream = new SectionStream((s) => out.push(s));
  for (const p of pieces) stream.write(p);
  stream.end();
  return out;
}

const whole = (text: string) => [...splitSections(text)];
const asMap = (sections: Section[]) => [...new Map(sections.map((s) => [s.name, s]))];

function same(text: string, pieces: string[]): void {
  assert.deepEqual(asMap(streamed(pieces)), whole(text), `${JSON.stringify(text)} in ${JSON.stringify(pieces)}`);
}

/** Every cut at one byte, and (for short texts) every pair of cuts, and one character at a time. */
function everyCut(text: string, pairs = text.length <= 120): void {
  same(text, [text]);
  for (let i = 0; i <= text.length; i++) same(text, [text.slice(0, i), text.slice(i)]);
  if (pairs)
    for (let i = 0; i <= text.length; i++)
      for (let j = i; j <= text.length; j++) same(text, [text.slice(0, i), text.slice(i, j), text.slice(j)]);
  same(text, [...text]);
}

function randomPieces(text: string, next: () => number, mean: number): string[] {
  const pieces: string[] = [];
  for (let at = 0; at < text.length; ) {
    const n = Math.max(0, Math.floor(next() * 2 * mean));
    pieces.push(text.slice(at, at + n));
    at += n;
  }
  return pieces;
}

describe('SectionStream: the sections of splitSections, from pieces', () => {
  it('fixed cases cut at every byte and every pair of bytes: empty bodies, a missing end marker, an end marker of another section, no final newline, carriage returns', () => {
    const cases = [
      '',
      '\n',
      '@@meshctl begin a\n@@meshctl end a rc=0\n',
      '@@meshctl begin a\n\n@@meshctl end a rc=0',
      '@@meshctl begin a\nline 1\nline 2  \n\n@@meshctl end a rc=2\n@@meshctl begin b\nunfinished',
      '@@meshctl begin a\n@@meshctl end b rc=1\nstill a\n@@meshctl end a rc=0\n',
      'before\n@@meshctl begin a',
      '@@meshctl begin a\r\nwith crlf\r\n@@meshctl end a rc=0\r\n',
      '@@meshctl begin a\nno cr\n@@meshctl end a rc=0\n@@meshctl begin b\nx\r\r\ny\r\n\r\n@@meshctl end b rc=1\n',
      '@@meshctl begin a\n@@meshctl begin a\nagain\n@@meshctl end a rc=4\n',
      '@@meshctl begin a\nx\n@@meshctl end a rc=0',
    ];
    for (const text of cases) everyCut(text);
    assert.deepEqual(streamed(['@@meshctl begin a\nline 1\nli', 'ne 2  \n\n@@meshctl e', 'nd a rc=2\n']), [
      { name: 'a', body: 'line 1\nline 2', rc: 2 },
    ]);
  });

  it('20,000 generated outputs, each cut at every byte, in random pieces and a character at a time', () => {
    const next = random(11);
    for (let t = 0; t < 20_000; t++) {
      const lines = Array.from({ length: Math.floor(next() * 10) }, () => LINES[Math.floor(next() * LINES.length)]!);
      const text = `${next() < 0.1 ? '\n' : ''}${lines.join(next() < 0.2 ? '\r\n' : '\n')}${next() < 0.5 ? '\n' : ''}`;
      if (t < 2_000) everyCut(text, false);
      else {
        same(text, randomPieces(text, next, 6));
        same(text, [...text]);
      }
    }
  });

  it("the probes' captures, cut at every byte", () => {
    const dir = join(import.meta.dirname, '../fixtures/probes');
    const files = readdirSync(dir).filter((f) => /^(checklist|ping|pre)-.*\.txt$/.test(f));
    assert.ok(files.length >= 8, files.join(' '));
    for (const file of files) {
      const text = readFileSync(join(dir, file), 'utf8');
      assert.ok(splitSections(text).size > 0, file);
      everyCut(text, false);
    }
  });

  it("a 150-node farm's checklist and ping outputs, in pieces of ~32 KB (ssh2's) and random ones", () =>
    withConvergedFarm(150, async (_inventory, farm) => {
      const self = farm.inventory.nodes[0]!;
      const n = farm.state(self.name, 1_700_000_000);
      const peerIps = farm.inventory.nodes.filter((p) => p !== self).map((p) => p.overlayIp);
      const checklist = checklistStdout(n, peerIps);
      const ping = pingStdout(Object.fromEntries(peerIps.map((ip) => [ip, { received: 3, rtt: 0.1 }])), n.peers, 1_700_000_010);
      const next = random(12);
      for (const text of [checklist, ping]) {
        assert.ok(splitSections(text).size > 150);
        same(
          text,
          randomPieces(text, () => 1, 16_384),
        );
        for (let i = 0; i < 20; i++) same(text, randomPieces(text, next, 1 + Math.floor(next() * 2000)));
        assert.deepEqual([...splitSectionsOf(randomPieces(text, next, 700))], whole(text));
      }
    }));

  it('a write after end throws', () => {
    const stream = new SectionStream(() => undefined);
    stream.end();
    assert.throws(() => stream.write('x'), /after end/);
  });
});
