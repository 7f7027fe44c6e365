import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { handshakeAgeSeconds, parseLiveInterface, parseWgDumpPeers } from '../../src/render/wgdump.js';

const EDGE = 'D+pWAECDwZ0b40LE5byhrcJ6AQNKV0wFY+0ylHuw1pw=';
const WK1 = 'G6fS1qkjq9LvU9W9vsGD9oBsybqLnsT4IMiY5KgR8Nw=';
const WK2 = 'yptYjWy8yXwlLdY4RB6AUOsVYlTyx0xyavHQaC+RRts=';
const PRIVATE = 'aGVsbG8gdGhpcyBpcyBhIHNlY3JldCBrZXkgZm9yIHQ='; // stands in for the interface's private key
const PSK = 'cHJlc2hhcmVkIHNlY3JldCBmb3IgdGhlIHRlc3RzIXg=';

const row = (...fields: Array<string | number>) => fields.join('\t');

describe('parseWgDumpPeers', () => {
  it('parses peer lines, mapping (none), off and a 0 handshake', () => {
    const dump = [
      row(EDGE, '(none)', '198.51.100.25:51820', '172.27.15.31/32', 1700000000, 1234, 5678, 25),
      row(WK1, PSK, '(none)', '(none)', 0, 0, 0, 'off'),
      row(WK2, '(none)', '[2001:db8::4]:51820', '172.27.15.13/32,172.27.16.0/24', 1700000100, 1, 2, 'off'),
      '',
    ].join('\n');
    const { peers, problems } = parseWgDumpPeers(dump);
    assert.deepEqual(problems, []);
    assert.deepEqual(peers, [
      {
        publicKey: EDGE,
        hasPresharedKey: false,
        endpoint: '198.51.100.25:51820',
        allowedIps: ['172.27.15.31/32'],
        latestHandshake: 1700000000,
        rxBytes: 1234,
        txBytes: 5678,
        persistentKeepalive: 25,
      },
      { publicKey: WK1, hasPresharedKey: true, allowedIps: [], rxBytes: 0, txBytes: 0 },
      {
        publicKey: WK2,
        hasPresharedKey: false,
        endpoint: '[2001:db8::4]:51820',
        allowedIps: ['172.27.15.13/32', '172.27.16.0/24'],
        latestHandshake: 1700000100,
        rxBytes: 1,
        txBytes: 2,
      },
    ]);
    assert.ok(!JSON.stringify(peers).includes(PSK), 'the preshared key value must not be kept');
  });

  it('refuses the interface line and keeps nothing of it', () => {
    const dump = [row(PRIVATE, EDGE, 51820, 'off'), row(WK1, '(none)', '(none)', '172.27.15.11/32', 0, 0, 0, 'off')].join('\n');
    const parsed = parseWgDumpPeers(dump);
    assert.equal(parsed.peers.length, 1);
    assert.deepEqual(
      parsed.problems.map((p) => p.line),
      [1],
    );
    assert.match(parsed.problems[0]!.reason, /interface line/);
    assert.ok(!JSON.stringify(parsed).includes(PRIVATE), 'the private key must not survive parsing');
  });

  it('accepts `wg show all dump` peer lines and refuses its interface line', () => {
    const dump = [row('wg0', PRIVATE, EDGE, 51820, 'off'), row('wg0', WK1, '(none)', '10.1.2.3:4', '172.27.15.11/32', 5, 6, 7, 'off')].join(
      '\n',
    );
    const parsed = parseWgDumpPeers(dump);
    assert.deepEqual(
      parsed.peers.map((p) => p.publicKey),
      [WK1],
    );
    assert.match(parsed.problems[0]!.reason, /interface line/);
    assert.ok(!JSON.stringify(parsed).includes(PRIVATE));
  });

  it('reports malformed lines without echoing them', () => {
    const parsed = parseWgDumpPeers(
      [
        'garbage',
        row('nokey', '(none)', '(none)', '(none)', 0, 0, 0, 'off'),
        row(WK1, '(none)', '(none)', '(none)', 'x', 0, 0, 'off'),
      ].join('\n'),
    );
    assert.deepEqual(parsed.peers, []);
    assert.deepEqual(parsed.problems, [
      { line: 1, reason: 'expected 8 tab-separated fields, found 1' },
      { line: 2, reason: 'first field is not a public key' },
      { line: 3, reason: 'handshake, transfer or keepalive field is not a number' },
    ]);
  });

  it('gives no peers for empty output (an interface without peers)', () => {
    assert.deepEqual(parseWgDumpPeers(''), { peers: [], problems: [] });
  });
});

describe('parseLiveInterface', () => {
  it('reads the public key and listen port outputs', () => {
    assert.deepEqual(parseLiveInterface(`${EDGE}\n`, '51820\n'), { publicKey: EDGE, listenPort: 51820 });
  });
  it('leaves out (none) and junk', () => {
    assert.deepEqual(parseLiveInterface('(none)\n', 'Unable to access interface: No such device\n'), {});
  });
});

describe('handshakeAgeSeconds', () => {
  it('is undefined without a handshake and never negative', () => {
    const peer = { publicKey: WK1, hasPresharedKey: false, allowedIps: [], rxBytes: 0, txBytes: 0 };
    assert.equal(handshakeAgeSeconds(peer, 1700000000), undefined);
    assert.equal(handshakeAgeSeconds({ ...peer, latestHandshake: 1699999990 }, 1700000000), 10);
    assert.equal(handshakeAgeSeconds({ ...peer, latestHandshake: 1700000005 }, 1700000000), 0);
  });
});
