import { test } from 'node:test';
import assert from 'node:assert/strict';
import { lineDiff } from '../../src/render/line-diff.js';

const lines = (n: number, prefix = 'line') => Array.from({ length: n }, (_, i) => `${prefix} ${i + 1}`);

test('equal texts: no diff', () => {
  assert.deepEqual(lineDiff('a\nb\n', 'a\nb\n'), []);
});

test('a new file: every line added', () => {
  assert.deepEqual(lineDiff(undefined, 'a\nb\n'), ['+a', '+b']);
});

test('a replaced line: removal first, then addition, with context and folded runs', () => {
  const before = [...lines(10), 'PersistentKeepalive = 25', ...lines(10, 'tail')].join('\n') + '\n';
  const after = before.replace('PersistentKeepalive = 25', 'PersistentKeepalive = 20');
  assert.deepEqual(lineDiff(before, after), [
    '  ... 8 unchanged lines',
    ' line 9',
    ' line 10',
    '-PersistentKeepalive = 25',
    '+PersistentKeepalive = 20',
    ' tail 1',
    ' tail 2',
    '  ... 8 unchanged lines',
  ]);
});

test('added and removed blocks (a peer gone, another added) keep their order', () => {
  const before = '[Peer]\n# a\n\n[Peer]\n# b\n';
  const after = '[Peer]\n# b\n\n[Peer]\n# c\n';
  const diff = lineDiff(before, after, { context: 10 });
  // applying the diff to before gives after
  assert.equal(
    diff
      .filter((l) => !l.startsWith('-'))
      .map((l) => l.slice(1))
      .join('\n') + '\n',
    after,
  );
  assert.equal(
    diff
      .filter((l) => !l.startsWith('+'))
      .map((l) => l.slice(1))
      .join('\n') + '\n',
    before,
  );
});
