/** Finding the host's Debian mirror (never a hard-coded host). */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mirrorFromDeb822, mirrorFromSourcesList } from '../../src/lab/mirror.js';

describe('lab mirror', () => {
  it('reads the bookworm URI from debian.sources, skipping security and disabled stanzas', () => {
    const text = [
      'Types: deb',
      'URIs: http://mirror.example/debian-security',
      'Suites: bookworm-security',
      'Components: main',
      '',
      'Types: deb-src',
      'URIs: http://src.example/debian',
      'Suites: bookworm',
      '',
      'Enabled: no',
      'Types: deb',
      'URIs: http://disabled.example/debian',
      'Suites: bookworm',
      '',
      'Types: deb',
      '# a comment',
      'URIs: http://mirror.example/debian http://second.example/debian',
      'Suites: bookworm bookworm-updates',
      'Components: main',
    ].join('\n');
    assert.equal(mirrorFromDeb822(text), 'http://mirror.example/debian');
    assert.equal(mirrorFromDeb822('Types: deb\nURIs: http://x/debian\nSuites: trixie\n'), undefined);
  });

  it('reads the one-line format', () => {
    const text =
      '# deb http://old/debian bookworm main\ndeb [arch=amd64] http://m.example/debian bookworm main\ndeb http://m.example/debian-security bookworm-security main\n';
    assert.equal(mirrorFromSourcesList(text), 'http://m.example/debian');
    assert.equal(mirrorFromSourcesList('deb http://x/debian trixie main'), undefined);
  });
});
