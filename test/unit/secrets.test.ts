/**
 * Kind 1 of issue 8, "a secret reaches the operator": a corpus of secret-bearing wg0.conf variants goes through the
 * real on-node filter (the shell command the facts probe runs, run here by /bin/sh on a temp file), the facts
 * parser, and the dry run's diff; no private or preshared key may survive, the mesh's public keys must.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FACTS, filteredConfigCommand } from '../../src/facts/definitions.js';
import type { NodeFacts } from '../../src/facts/node-facts.js';
import { planConfig } from '../../src/steps/config.js';
import { planKeys } from '../../src/steps/keys.js';
import { describeChange } from '../../src/engine/plan.js';
import { renderReloadDropIn } from '../../src/render/systemd.js';
import { REDACTED, redactDeep, redactSecrets } from '../../src/remote/redact.js';
import { fingerprintSha256 } from '../../src/transport/known-hosts.js';

const key = () => randomBytes(32).toString('base64');
/** a WireGuard key pair (X25519, raw keys in base64 as wg genkey / wg pubkey print them) */
function keyPair(): { privateKey: string; publicKey: string } {
  const pair = generateKeyPairSync('x25519');
  const raw = (jwk: JsonWebKey, part: 'd' | 'x') => Buffer.from(jwk[part]!, 'base64url').toString('base64');
  return { privateKey: raw(pair.privateKey.export({ format: 'jwk' }), 'd'), publicKey: raw(pair.publicKey.export({ format: 'jwk' }), 'x') };
}
/**
 * the node's private key and its own public key (a real pair: the diff tells a private key typed into a PublicKey
 * line by its public half), a preshared key, and a public key of the mesh
 */
const urlSafe = (k: string) => Buffer.from(k, 'base64').toString('base64url');
/** a key pair whose private key's base64url has a `-` or `_` (a key without one is plain base64 too, unpadded) */
const OWN = ((): ReturnType<typeof keyPair> => {
  for (;;) {
    const pair = keyPair();
    if (/[-_]/.test(urlSafe(pair.privateKey))) return pair;
  }
})();
const K = OWN.privateKey;
const S = key();
const MESH_PUB = key();
const OWN_PUB = OWN.publicKey;
/** the same secrets in hex and in base64url (a `-` or `_` in it for sure: a key without one is plain base64 too) */
const HEX_K = Buffer.from(K, 'base64').toString('hex');
const withUrlChar = (): string => {
  for (;;) {
    const k = key();
    if (/[-_]/.test(urlSafe(k))) return k;
  }
};
const URL_K = urlSafe(K);
const URL_S = urlSafe(withUrlChar());

const HEAD = `# wg0 of wk-1. Managed by meshctl: rewritten by \`meshctl up\` from the inventory;
# No PrivateKey here on purpose: the key was generated on this node and stays in /etc/wireguard/wg0.key.
[Interface]
Address = 172.27.15.11/32
ListenPort = 51820
PostUp = wg set %i private-key /etc/wireguard/%i.key
`;
const PEER = `
[Peer]
# ms-1
PublicKey = ${MESH_PUB}
AllowedIPs = 172.27.15.12/32
`;

/** Secret-bearing wg0.conf variants (lines added to a rendered file); each leaked through the old filter or diff. */
const CORPUS: Record<string, string> = {
  'commented key': `#PrivateKey = ${K}`,
  'spaced spelling wg accepts': `Private Key = ${K}`,
  'PostUp feeding the key after private-key': `PostUp = wg set %i private-key <(echo ${K})`,
  'PostUp piping the key before private-key': `PostUp = echo ${K} | wg set %i private-key /dev/stdin`,
  'PreUp writing the key without naming it': `PreUp = printf '%s\\n' ${K} > /run/wg0.key`,
  'PostDown with a preshared key': `PostDown = wg set %i peer ${MESH_PUB} preshared-key <(echo ${S})`,
  'PresharedKey in a peer': `PresharedKey = ${S}`,
  'spaced preshared spelling': `Pre Shared Key=${S}`,
  'tabs and upper case': `PRIVATEKEY\t=\t${K}`,
  'key in a comment after a value': `Address = 172.27.15.11/32 # old key ${K}`,
  'key without its padding': `# backup ${K.slice(0, 43)}`,
  'own private key pasted as a PublicKey': `[Peer]\nPublicKey = ${K}\nAllowedIPs = 172.27.15.99/32`,
  'semicolon comment': `; PrivateKey=${K}`,
  // RV2 finding 3: a PublicKey line's value is shown in a diff, but not a preshared key pasted there, nor a key in its comment
  'preshared key pasted as a PublicKey': `[Peer]\nPublicKey = ${S}\nPresharedKey = ${S}\nAllowedIPs = 172.27.15.98/32`,
  'key in a PublicKey line comment': `[Peer]\nPublicKey = ${OWN_PUB} # was ${S}\nAllowedIPs = 172.27.15.97/32`,
  // RV3 F10: the value of a commented-out preshared key, pasted as a PublicKey, is a secret too
  'commented-out preshared key pasted as a PublicKey': `#PresharedKey = ${S}\n[Peer]\nPublicKey = ${S}\nAllowedIPs = 172.27.15.96/32`,
  'semicolon-commented preshared key pasted as a PublicKey': `[Peer]\nPublicKey = ${S}\n ; Preshared Key=${S} # old\nAllowedIPs = 172.27.15.95/32`,
  // Q9 F-redact-encodings: the key in the other encodings a shell line can turn into base64 (xxd -r -p, tr '_-' '/+')
  'PostUp with the key in hex': `PostUp = wg set %i private-key <(echo ${HEX_K} | xxd -r -p | base64)`,
  'PostUp with the key in upper-case hex': `PostUp = echo ${HEX_K.toUpperCase()} > /dev/null`,
};
/**
 * Hidden by the on-node filter only (SECRET_FILTER_AWK: a wg-quick file needs no base64url, so every such run is
 * hidden there); meshctl's own pass keeps base64url runs (its one-pass regex splits runs at `-` and `_`).
 */
const NODE_CORPUS: Record<string, string> = {
  'PostUp with the key in base64url': `PostUp = echo ${URL_K} | tr '_-' '/+' > /run/k`,
  'preshared key in base64url, padded': `PostUp = echo ${URL_S}= > /dev/null`,
};

const secretsIn = (text: string) =>
  [K, K.slice(0, 43), S, S.slice(0, 43), HEX_K, HEX_K.toUpperCase(), URL_K, URL_S].filter((s) => text.includes(s));

/** Runs the facts probe's on-node filter on `conf` (with `keyfile` holding K) and parses it as the probe does. */
function throughNodeFilter(conf: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'meshctl-secrets-'));
  try {
    writeFileSync(join(dir, 'wg0.conf'), conf);
    writeFileSync(join(dir, 'wg0.key'), `${K}\n`, { mode: 0o600 });
    const stdout = execFileSync('/bin/sh', ['-c', filteredConfigCommand(join(dir, 'wg0.conf'), join(dir, 'wg0.key'))], {
      encoding: 'utf8',
    });
    return FACTS.configText.parse({ name: 'conf', body: stdout.trimEnd(), rc: 0 }, { interface: 'wg0', listenPort: 51820 }) ?? '';
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function facts(configText: string): NodeFacts {
  return {
    uid: 0,
    hostname: 'wk-1',
    os: { id: 'debian', versionId: '12', idLike: [], prettyName: 'Debian' },
    packageManager: 'apt',
    systemd: true,
    kernelModule: 'missing',
    tools: { wg: true, wgQuick: true, wireguardGo: true, tcpdump: true, ping: true },
    interfaces: ['lo', 'eth0', 'wg0'],
    wireguardInterfaces: ['wg0'],
    wireguardConfigs: ['wg0.conf'],
    config: { exists: true, sha256: '0'.repeat(64), text: configText, hasPrivateKeyLine: false, managedByMeshctl: true },
    interfaceRoutes: [],
    keys: { privateKeyExists: true, privateKeyMode: '600', publicKey: OWN_PUB },
    sysctl: { rpFilterAll: 2, rpFilterDefault: 2 },
    service: { enabled: 'enabled', active: 'active' },
    listenPortUsers: [],
    peers: [],
    baseline: { extraIpRules: [], leftoverPaths: [], leftoverUnits: [], leftoverInterfaces: [], firewallDrops: [] },
  };
}

describe('secret corpus through the on-node filter and the facts parser', () => {
  for (const [name, lines] of Object.entries({ ...CORPUS, ...NODE_CORPUS })) {
    it(`${name}: no secret leaves the node, the mesh's public key does`, () => {
      const text = throughNodeFilter(`${HEAD}${lines}\n${PEER}`);
      assert.deepEqual(secretsIn(text), [], text);
      assert.ok(text.includes(`PublicKey = ${MESH_PUB}`), text);
      assert.ok(text.includes('PostUp = wg set %i private-key /etc/wireguard/%i.key'), 'the rendered file passes unchanged');
    });
  }

  it('the rendered file passes the filter byte for byte', () => {
    assert.equal(throughNodeFilter(`${HEAD}${PEER}`), `${HEAD}${PEER}`);
  });

  it('a 43-character node name and DNS label with a `-` pass unchanged (RV6 F2: they were hidden as base64url)', () => {
    const name = 'homelab-rack-2-raspberry-pi-4-kitchen-shelf';
    const label = 'my-home-router-dynamic-dns-name-for-the-lab';
    assert.equal(name.length, 43);
    assert.equal(label.length, 43);
    const text = `${HEAD}\n[Peer]\n# ${name}\nPublicKey = ${MESH_PUB}\nEndpoint = ${label}.duckdns.org:51820\nAllowedIPs = 172.27.15.13/32\n`;
    assert.equal(throughNodeFilter(text), text);
  });

  it('an Endpoint whose DNS label has 43 characters, capitals and a `-` passes unchanged (RV6 F11)', () => {
    const text = `${HEAD}\n[Peer]\n# edge\nPublicKey = ${MESH_PUB}\nEndpoint = My-Home-Router-Dynamic-DNS-Name-For-The-Lab.example.org:51820\nAllowedIPs = 172.27.15.14/32\n`;
    assert.equal(throughNodeFilter(text), text);
  });

  it('a base64url key glued to other characters is hidden (a run longer than 43)', () => {
    const text = throughNodeFilter(`${HEAD}PostUp = echo K_${URL_K} --key-${URL_K}x > /dev/null\n${PEER}`);
    assert.ok(!text.includes(URL_K), text);
  });
});

/** What the config step plans wk-1's files from: the rendered file is HEAD + PEER. */
const CONFIG_INPUT = {
  iface: 'wg0',
  configText: `${HEAD}${PEER}`,
  sysctlText: 'net.ipv4.conf.all.rp_filter = 2\n',
  rpFilter: 2 as const,
  reloadDropInText: renderReloadDropIn('wg0'),
};

describe("the dry run's diff of a node file", () => {
  const input = CONFIG_INPUT;
  for (const [name, lines] of Object.entries(CORPUS)) {
    it(`${name}: no secret in the diff even from unfiltered node text`, () => {
      // the node text as it arrives unfiltered (an older node-side filter, a fixture): the diff redacts on its own
      const plan = planConfig(facts(`${HEAD}${lines}\n${PEER}`), input);
      const diff = plan.action!.changes.flatMap((c) => (c.kind === 'write-file' && c.diff ? c.diff : [])).join('\n');
      assert.ok(diff.length > 0);
      assert.deepEqual(secretsIn(diff), [], diff);
      assert.ok(!diff.includes(`-PublicKey = ${MESH_PUB}`), 'a known public key is not redacted (no spurious diff line)');
    });
  }
});

describe("finding 30: a key rotation's diff shows the old public key, and nothing secret", () => {
  /** ms-1's public key before the rotation, as ms-1 reported it (`wg show wg0 public-key`: its interface runs it still) */
  const OLD_PUB = key();
  const input = { ...CONFIG_INPUT, reportedPublicKeys: new Set([OLD_PUB, MESH_PUB, OWN_PUB]) };
  const diffOf = (text: string) =>
    planConfig(facts(text), input)
      .action!.changes.flatMap((c) => (c.kind === 'write-file' && c.diff ? c.diff : []))
      .join('\n');

  it('-PublicKey = OLD, +PublicKey = NEW (it used to read -PublicKey = [redacted])', () => {
    const diff = diffOf(`${HEAD}${PEER.replace(MESH_PUB, OLD_PUB)}`);
    assert.match(diff, new RegExp(`^-PublicKey = ${OLD_PUB.replace(/[+/]/g, '\\$&')}$`, 'm'), diff);
    assert.match(diff, new RegExp(`^\\+PublicKey = ${MESH_PUB.replace(/[+/]/g, '\\$&')}$`, 'm'), diff);
  });

  it('a private key typed into a PublicKey line is still hidden; a reported key outside a PublicKey line too', () => {
    const typed = diffOf(`${HEAD}${PEER.replace(MESH_PUB, K)}`);
    assert.deepEqual(secretsIn(typed), [], typed);
    assert.match(typed, /^-PublicKey = \[redacted\]$/m);
    const elsewhere = diffOf(`${HEAD}# old key ${OLD_PUB}\n${PEER}`);
    assert.ok(!elsewhere.includes(OLD_PUB), elsewhere);
  });

  it('a peer the node has and the plan removes shows its public key (Q3 finding 9: it read PublicKey = [redacted])', () => {
    const REMOVED = key();
    const diff = diffOf(`${HEAD}${PEER}\n[Peer]\nPublicKey = ${REMOVED}\nAllowedIPs = 172.27.15.99/32\n`);
    assert.match(diff, new RegExp(`^-PublicKey = ${REMOVED.replace(/[+/]/g, '\\$&')}$`, 'm'), diff);
    // a mesh node's private key typed into such a line stays hidden: its public half is a key meshctl knows
    const mesh = keyPair();
    const typed = planConfig(facts(`${HEAD}${PEER}\n[Peer]\nPublicKey = ${mesh.privateKey}\n`), {
      ...input,
      reportedPublicKeys: new Set([mesh.publicKey]),
    })
      .action!.changes.flatMap((c) => (c.kind === 'write-file' && c.diff ? c.diff : []))
      .join('\n');
    assert.ok(!typed.includes(mesh.privateKey), typed);
    assert.match(typed, /^-PublicKey = \[redacted\]$/m);
  });

  it("publicHalfOf is wg pubkey's X25519 (RFC 7748 section 6.1, Alice's keys)", async () => {
    const { publicHalfOf } = await import('../../src/remote/redact.js');
    const b64 = (hex: string) => Buffer.from(hex, 'hex').toString('base64');
    assert.equal(
      publicHalfOf(b64('77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a')),
      b64('8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a'),
    );
    assert.equal(publicHalfOf(OWN.privateKey), OWN.publicKey);
    assert.equal(publicHalfOf('not a key'), undefined);
  });

  for (const [name, lines] of Object.entries(CORPUS)) {
    it(`${name}: no secret in the diff with the reported keys shown`, () => {
      const diff = diffOf(`${HEAD}${lines}\n${PEER}`);
      assert.deepEqual(secretsIn(diff), [], diff);
    });
  }
});

describe('redactSecrets', async () => {
  // loaded here, so the rest of this file also runs against code without the module (to see which cases leaked)
  const redact = await import('../../src/remote/redact.js');
  it('keeps known public keys and sha256 digests, redacts every other key-shaped value', () => {
    const known = new Set([MESH_PUB]);
    const digest = 'a'.repeat(64);
    const out = redact.redactSecrets(`PublicKey = ${MESH_PUB}\nwg0.pub: ${K}\nsha256 ${digest}\npeer ${S} unknown`, known);
    assert.equal(out, `PublicKey = ${MESH_PUB}\nwg0.pub: ${redact.REDACTED}\nsha256 ${digest}\npeer ${redact.REDACTED} unknown`);
  });

  it('redacts deep in a report value, keys of objects too', () => {
    const out = redact.redactDeep({ evidence: [`wg0.pub: ${K}`], [K]: 1, n: 2 }, new Set());
    assert.deepEqual(secretsIn(JSON.stringify(out)), []);
    assert.equal((out as { n: number }).n, 2);
  });
});

describe('keys step: a .pub that is not the public key', () => {
  const withPub = (publicKeyFile: NonNullable<NodeFacts['keys']['publicKeyFile']>) => ({
    ...facts(''),
    keys: { privateKeyExists: true, privateKeyMode: '600', publicKey: OWN_PUB, publicKeyFile },
  });

  it('is rewritten from wg pubkey, mode 644, keeping the key', () => {
    const action = planKeys(withPub({ state: 'mismatch', mode: '644' }), 'wg0');
    assert.ok(action, 'a mismatching .pub must be repaired');
    assert.deepEqual(
      action.changes.map((c) => c.kind),
      ['repair-public-key-file'],
    );
    assert.match(describeChange(action.changes[0]!), /wg0\.pub/);
    assert.match(action.script, /if \[ -s \/etc\/wireguard\/wg0\.key \]; then echo kept/);
    assert.match(action.script, /wg pubkey < \/etc\/wireguard\/wg0\.key > \/etc\/wireguard\/wg0\.pub\.meshctl-tmp/);
    assert.match(action.script, /chmod 644 \/etc\/wireguard\/wg0\.pub/);
  });

  it('a missing or world-unreadable .pub is repaired too; a matching one is left alone', () => {
    assert.ok(planKeys(withPub({ state: 'missing' }), 'wg0'));
    assert.ok(planKeys(withPub({ state: 'match', mode: '600' }), 'wg0'));
    assert.equal(planKeys(withPub({ state: 'match', mode: '644' }), 'wg0'), undefined);
  });

  it('the facts send the .pub only when the node found it matches the key file', () => {
    const ctx = { interface: 'wg0', listenPort: 51820 };
    const cmd = FACTS.publicKeyFile.command(ctx);
    // the .pub is read by the shell (issue 10: no cat) and printed only in the branch where it equals wg pubkey's output
    assert.match(
      cmd,
      /done < \/etc\/wireguard\/wg0\.pub; \[ "\$\(wg pubkey < \/etc\/wireguard\/wg0\.key 2>\/dev\/null\)" = "\$mc_pub" \]; then printf/,
    );
    assert.equal(FACTS.publicKeyFile.parse({ name: 'pubfile', body: 'mismatch', rc: 0 }, ctx), undefined);
    assert.deepEqual(FACTS.publicKeyFileState.parse({ name: 'pubstate', body: 'mismatch\nmode=644', rc: 0 }, ctx), {
      state: 'mismatch',
      mode: '644',
    });
  });
});

describe("a host key's SHA256 fingerprint is shown, not redacted (a new user's finding 2: verify hid the one it asks to compare)", () => {
  const fingerprint = fingerprintSha256(Buffer.from('an ed25519 host key blob'));
  const digest = fingerprint.slice('SHA256:'.length);
  it('the fingerprint meshctl prints stays; the same run elsewhere, or a key after SHA256:, is still hidden', () => {
    assert.equal(digest.length, 43);
    const message = `host key not known: ED25519 key ${fingerprint} is not in /root/.ssh/known_hosts; refusing to connect`;
    assert.equal(redactSecrets(message), message);
    assert.equal(redactDeep({ checks: [{ message }] }, new Set()).checks[0]!.message, message);
    assert.equal(redactSecrets(`key ${digest} here`), `key ${REDACTED} here`);
    const key = `${'k'.repeat(42)}A=`;
    assert.equal(redactSecrets(`SHA256:${key}`), `SHA256:${REDACTED}`);
    assert.equal(redactSecrets(`xSHA256:${digest}`), `xSHA256:${digest}`, 'the prefix, wherever the word starts');
  });
});
