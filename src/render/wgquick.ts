/**
 * wg-quick config files (/etc/wireguard/<iface>.conf): rendering meshctl's own, and parsing whatever is on a node.
 *
 * meshctl never handles private keys. The rendered file has no PrivateKey line; PostUp loads the key that was
 * generated on the node (`wg set %i private-key /etc/wireguard/%i.key`).
 * Caution, checked with wg 1.0 and wireguard-go: `wg setconf`/`wg syncconf` given a config WITHOUT PrivateKey CLEAR the
 * interface's key, and wg-quick@.service reloads with exactly that (`wg syncconf %i <(wg-quick strip %i)`). A
 * peers-only reload must therefore append the key on the node; ./systemd.ts renders a drop-in that does so.
 *
 * The parser is tolerant of hand-written files and never keeps a PrivateKey or PresharedKey value: it records only
 * that one was there. Hook commands (PostUp, PreUp, ...) and unknown settings are kept with anything that looks like
 * a key redacted, since people do write `PostUp = wg set %i private-key <(echo KEY)`.
 */
import type { DesiredNodeConfig, DesiredPeer } from '../topology/desired.js';
import { privateKeyPathFor } from '../topology/desired.js';
import { relayHooks } from './relay.js';

// Re-exported so callers find the whole wg-quick file API in one place (the implementation needs the drift rules).
export { classifyConfigChange, type ConfigChange, type ConfigChangeKind } from './changes.js';

// ---------------------------------------------------------------------------------------------------------------
// Rendering

/**
 * The PostUp that loads the node's private key. Written with %i when the key sits in the conventional place, so
 * the line reads the same on every node.
 */
export function postUpLoadingPrivateKey(config: Pick<DesiredNodeConfig, 'interface' | 'privateKeyPath'>): string {
  const path = config.privateKeyPath === privateKeyPathFor(config.interface) ? privateKeyPathFor('%i') : config.privateKeyPath;
  return `wg set %i private-key ${path}`;
}

function renderPeer(peer: DesiredPeer): string[] {
  return [
    '[Peer]',
    `# ${peer.name}`,
    `PublicKey = ${peer.publicKey}`,
    `AllowedIPs = ${peer.allowedIps.join(', ')}`,
    ...(peer.endpoint !== undefined ? [`Endpoint = ${peer.endpoint}`] : []),
    ...(peer.persistentKeepalive !== undefined ? [`PersistentKeepalive = ${peer.persistentKeepalive}`] : []),
  ];
}

/** A relay's forwarding (./relay.ts): which pairs it carries, then its PostUp and PreDown lines; nothing otherwise. */
function renderRelay(config: DesiredNodeConfig): string[] {
  if (!config.relay) return [];
  const hooks = relayHooks(config.interface);
  return [
    `# Relay for ${config.relay.pairs.map((p) => `${p.a}<->${p.b}`).join(', ')}: forwards between peers of ${config.interface} only.`,
    ...hooks.postUp.map((line) => `PostUp = ${line}`),
    ...hooks.preDown.map((line) => `PreDown = ${line}`),
  ];
}

/**
 * The complete file for one node. Deterministic: no timestamps or versions, peers in the order given (desiredMesh
 * sorts them), so an unchanged design renders byte-identical text and a second run changes nothing.
 */
export function renderWgQuickConfig(config: DesiredNodeConfig): string {
  const lines = [
    `# ${config.interface} of ${config.node}. Managed by meshctl: rewritten by \`meshctl up\` from the inventory;`,
    '# edit the inventory, not this file.',
    `# No PrivateKey here on purpose: the key was generated on this node and stays in ${config.privateKeyPath}.`,
    '[Interface]',
    `Address = ${config.address}`,
    `ListenPort = ${config.listenPort}`,
    `MTU = ${config.mtu}`,
    'SaveConfig = false',
    `PostUp = ${postUpLoadingPrivateKey(config)}`,
    ...renderRelay(config),
    ...config.peers.flatMap((peer) => ['', ...renderPeer(peer)]),
  ];
  return `${lines.join('\n')}\n`;
}

// ---------------------------------------------------------------------------------------------------------------
// Parsing

export interface ConfigDiagnostic {
  /** 1-based line in the file */
  line: number;
  message: string;
  /** index into `peers` when the line is inside a [Peer] section */
  peerIndex?: number;
}

/** A setting meshctl does not interpret, kept for reporting (value redacted where it could hold a secret). */
export interface ParsedEntry {
  /** as written in the file */
  key: string;
  value: string;
  line: number;
}

export interface ParsedInterface {
  /** line of the [Interface] header */
  line: number;
  addresses: string[];
  listenPort?: number;
  mtu?: number;
  saveConfig?: boolean;
  postUp: string[];
  /** a PrivateKey line was present; its value is never read into memory beyond the line being parsed */
  hasPrivateKey: boolean;
  /** DNS, Table, FwMark, PreUp, PreDown, PostDown and unknown keys */
  otherEntries: ParsedEntry[];
  /** line of the last occurrence of each interpreted setting, by lower-case key */
  lines: Record<string, number>;
}

export interface ParsedPeer {
  /** line of the [Peer] header */
  line: number;
  /** the first comment inside the section before any setting (meshctl writes `# name` there) */
  name?: string;
  publicKey?: string;
  allowedIps: string[];
  endpoint?: string;
  /** undefined for absent, 0 or off */
  persistentKeepalive?: number;
  /** a PresharedKey was set; its value is not kept */
  hasPresharedKey: boolean;
  otherEntries: ParsedEntry[];
  lines: Record<string, number>;
}

export interface ParsedWgQuickConfig {
  interface?: ParsedInterface;
  peers: ParsedPeer[];
  diagnostics: ConfigDiagnostic[];
}

const KEY_LIKE_SOURCE = '[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=';
const KEY_LIKE_TOKENS = new RegExp(KEY_LIKE_SOURCE, 'g');
const CONTAINS_KEY_LIKE_TOKEN = new RegExp(KEY_LIKE_SOURCE);
/** Settings wg and wg-quick know that meshctl keeps but does not interpret. */
const OTHER_INTERFACE_KEYS = new Set(['dns', 'table', 'fwmark', 'preup', 'predown', 'postdown']);

/** Redacts key-shaped tokens; a whole value when the setting's name says it is a key. */
function redact(key: string, value: string): string {
  if (/key/i.test(key)) return '<redacted>';
  return value.replace(KEY_LIKE_TOKENS, '<redacted>');
}

const splitList = (value: string) =>
  value
    .split(',')
    .map((item) => item.trim())
    .filter((item) => item !== '');

function parseInteger(value: string, min: number, max: number): number | undefined {
  if (!/^\d+$/.test(value)) return undefined;
  const number = Number(value);
  return number >= min && number <= max ? number : undefined;
}

export function parseWgQuickConfig(text: string): ParsedWgQuickConfig {
  const result: ParsedWgQuickConfig = { peers: [], diagnostics: [] };
  let section: 'none' | 'interface' | 'peer' = 'none';
  let peer: ParsedPeer | undefined;
  let sawSettingInSection = false;

  const diagnose = (line: number, message: string) =>
    result.diagnostics.push({ line, message, ...(section === 'peer' ? { peerIndex: result.peers.length - 1 } : {}) });

  text.split(/\r?\n/).forEach((rawLine, index) => {
    const line = index + 1;
    const hashAt = rawLine.indexOf('#');
    const content = (hashAt >= 0 ? rawLine.slice(0, hashAt) : rawLine).trim();
    if (content === '') {
      const comment = hashAt >= 0 ? rawLine.slice(hashAt + 1).trim() : '';
      if (peer && section === 'peer' && !sawSettingInSection && peer.name === undefined && comment !== '') {
        // Never let a comment smuggle a key into a name.
        if (!CONTAINS_KEY_LIKE_TOKEN.test(comment)) peer.name = comment;
      }
      return;
    }

    const header = /^\[\s*([A-Za-z]+)\s*\]$/.exec(content);
    if (header) {
      const name = header[1]!.toLowerCase();
      sawSettingInSection = false;
      if (name === 'interface') {
        section = 'interface';
        peer = undefined;
        if (result.interface) diagnose(line, `repeated [Interface] section (first at line ${result.interface.line}); merged`);
        else result.interface = { line, addresses: [], postUp: [], hasPrivateKey: false, otherEntries: [], lines: {} };
      } else if (name === 'peer') {
        section = 'peer';
        peer = { line, allowedIps: [], hasPresharedKey: false, otherEntries: [], lines: {} };
        result.peers.push(peer);
      } else {
        section = 'none';
        peer = undefined;
        diagnose(line, `unknown section [${header[1]}]; its settings are ignored`);
      }
      return;
    }

    const equalsAt = content.indexOf('=');
    if (equalsAt <= 0) {
      diagnose(line, section === 'none' ? 'text outside any section' : 'expected "Key = Value"');
      return;
    }
    sawSettingInSection = true;
    const key = content.slice(0, equalsAt).trim();
    const lowerKey = key.toLowerCase();
    // Split at the first '=' only: base64 keys end in '='. The value of a PrivateKey is never looked at.
    const value = lowerKey === 'privatekey' || lowerKey === 'presharedkey' ? '' : content.slice(equalsAt + 1).trim();

    if (section === 'none') {
      diagnose(line, `setting ${key} outside any section; ignored`);
      return;
    }
    if (section === 'interface') {
      const iface = result.interface!;
      iface.lines[lowerKey] = line;
      switch (lowerKey) {
        case 'privatekey':
          iface.hasPrivateKey = true;
          return;
        case 'address':
          iface.addresses.push(...splitList(value));
          return;
        case 'listenport': {
          const port = parseInteger(value, 0, 65535);
          if (port === undefined) diagnose(line, `ListenPort is not a port number: ${value}`);
          else iface.listenPort = port;
          return;
        }
        case 'mtu': {
          const mtu = parseInteger(value, 576, 65535);
          if (mtu === undefined) diagnose(line, `MTU is not a usable number: ${value}`);
          else iface.mtu = mtu;
          return;
        }
        case 'saveconfig':
          if (/^(true|false)$/i.test(value)) iface.saveConfig = value.toLowerCase() === 'true';
          else diagnose(line, `SaveConfig must be true or false: ${value}`);
          return;
        case 'postup':
          iface.postUp.push(redact(key, value));
          return;
        default:
          if (!OTHER_INTERFACE_KEYS.has(lowerKey)) diagnose(line, `unknown [Interface] setting ${key}`);
          iface.otherEntries.push({ key, value: redact(key, value), line });
          return;
      }
    }
    const current = peer!;
    current.lines[lowerKey] = line;
    switch (lowerKey) {
      case 'publickey':
        if (current.publicKey !== undefined) diagnose(line, 'second PublicKey in one [Peer] section; the last one counts');
        current.publicKey = value;
        return;
      case 'presharedkey':
        current.hasPresharedKey = true;
        return;
      case 'allowedips':
        current.allowedIps.push(...splitList(value));
        return;
      case 'endpoint':
        current.endpoint = value;
        return;
      case 'persistentkeepalive': {
        if (value.toLowerCase() === 'off') {
          delete current.persistentKeepalive;
          return;
        }
        const seconds = parseInteger(value, 0, 65535);
        if (seconds === undefined) diagnose(line, `PersistentKeepalive must be off or 0-65535: ${value}`);
        else if (seconds === 0) delete current.persistentKeepalive;
        else current.persistentKeepalive = seconds;
        return;
      }
      default:
        diagnose(line, `unknown [Peer] setting ${key}`);
        current.otherEntries.push({ key, value: redact(key, value), line });
    }
  });

  result.peers.forEach((p, peerIndex) => {
    if (p.publicKey === undefined) result.diagnostics.push({ line: p.line, message: '[Peer] without PublicKey', peerIndex });
  });
  return result;
}
