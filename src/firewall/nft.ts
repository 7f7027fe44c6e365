/**
 * `nft -j list ruleset` (libnftables-json(5)) as a ./model.ts ruleset: the ip, inet and netdev tables (IPv4's
 * datagrams pass them), each rule judged for one incoming UDP datagram of a new flow. An expression not known here is
 * `maybe` (a match) or `unknown` (a verdict), never ignored.
 */
import { cidrContains, isIpv4, parseCidr } from '../net/ipv4.js';
import {
  allOf,
  maybe,
  NO,
  YES,
  tableKey,
  type Action,
  type BaseChain,
  type Chain,
  type Packet,
  type Rule,
  type Ruleset,
  type Tri,
} from './model.js';

type Json = unknown;
type Obj = Record<string, Json>;
const isObj = (v: Json): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Families whose base chains see an incoming IPv4 datagram. */
const FAMILIES = new Set(['ip', 'inet', 'netdev']);
const HOOKS = new Set(['ingress', 'prerouting', 'input']);

/** A compact nft-like rendering of an expression, for naming a rule (`udp dport 51820 accept`). */
export function renderExpr(e: Json): string {
  if (typeof e === 'string' || typeof e === 'number') return String(e);
  if (Array.isArray(e)) return `{ ${e.map(renderExpr).join(', ')} }`;
  if (!isObj(e)) return String(e);
  const [key, value] = Object.entries(e)[0] ?? ['?', null];
  const v = value as Obj;
  switch (key) {
    case 'match': {
      const op = v.op === '==' || v.op === 'in' ? '' : ` ${String(v.op)}`;
      return `${renderExpr(v.left)}${op} ${renderExpr(v.right)}`;
    }
    case 'payload':
      return `${String(v.protocol)} ${String(v.field)}`;
    case 'meta':
      return `meta ${String(v.key)}`;
    case 'ct':
      return `ct ${String(v.key)}`;
    case 'set':
      return Array.isArray(value) ? `{ ${value.map(renderExpr).join(', ')} }` : renderExpr(value);
    case 'range':
      return Array.isArray(value) ? `${renderExpr(value[0])}-${renderExpr(value[1])}` : '?';
    case 'prefix':
      return `${String(v.addr)}/${String(v.len)}`;
    case 'jump':
    case 'goto':
      return `${key} ${String(v.target)}`;
    case 'vmap':
      return `${renderExpr(v.key)} vmap ${renderExpr(v.data)}`;
    case 'accept':
    case 'drop':
    case 'return':
    case 'counter':
    case 'reject':
    case 'log':
    case 'limit':
    case 'queue':
      return key;
    case 'xt':
      return `xt ${String(v.type)} ${String(v.name)}`;
    default:
      return key;
  }
}

/** The value a key expression has for the packet, or undefined when it cannot be known. */
function keyValue(left: Json, packet: Packet): string | number | undefined {
  if (!isObj(left)) return undefined;
  if (isObj(left.meta)) {
    const k = left.meta.key;
    if (k === 'l4proto' || k === 'protocol') return k === 'l4proto' ? 'udp' : 'ip';
    if (k === 'nfproto') return 'ipv4';
    if (k === 'pkttype') return 'host';
    return undefined;
  }
  if (isObj(left.ct)) {
    const k = left.ct.key;
    if (k === 'state') return 'new';
    if (k === 'status') return undefined;
    return undefined;
  }
  if (isObj(left.payload)) {
    const { protocol, field } = left.payload;
    if ((protocol === 'udp' || protocol === 'th') && field === 'dport') return packet.dport;
    if (protocol === 'ip' && field === 'protocol') return 'udp';
    if (protocol === 'ip' && field === 'saddr') return packet.src;
    if (protocol === 'ip' && field === 'daddr') return packet.dst;
    return undefined;
  }
  return undefined;
}

/** Whether `value` is in the right-hand side (a value, a list or anonymous set, a range, a prefix). */
function contains(right: Json, value: string | number): boolean | undefined {
  if (typeof right === 'number') return right === value || (typeof value === 'string' && Number(value) === right);
  if (typeof right === 'string') {
    if (right.startsWith('@')) return undefined; // a named set: its elements may change at any time
    if (typeof value === 'string' && isIpv4(value) && isIpv4(right)) return right === value;
    return right === String(value) || (right === '17' && value === 'udp');
  }
  if (Array.isArray(right)) {
    const found = right.map((r) => contains(r, value));
    return found.includes(true) ? true : found.includes(undefined) ? undefined : false;
  }
  if (!isObj(right)) return undefined;
  if ('set' in right) return contains(right.set, value);
  if (Array.isArray(right.range) && typeof value === 'number') {
    const [a, b] = right.range as [number, number];
    return a <= value && value <= b;
  }
  if (isObj(right.prefix) && typeof value === 'string' && isIpv4(value)) {
    const cidr = parseCidr(`${String(right.prefix.addr)}/${String(right.prefix.len)}`, { strict: false });
    return cidr ? cidrContains(cidr, value) : undefined;
  }
  return undefined;
}

/** Keys that decide nothing about the packet's path when unknown, named in the verdict's conditions. */
function matchExpr(m: Obj, packet: Packet): Tri {
  const text = renderExpr({ match: m });
  const left = m.left;
  // a rule about another transport protocol (tcp dport 22, icmp type ...) never matches a UDP datagram
  if (
    isObj(left) &&
    isObj(left.payload) &&
    ['tcp', 'icmp', 'icmpv6', 'sctp', 'dccp', 'ip6', 'igmp', 'esp', 'ah'].includes(String(left.payload.protocol))
  )
    return m.op === '!=' ? YES : NO;
  if (isObj(left) && isObj(left.meta) && (left.meta.key === 'iif' || left.meta.key === 'iifname')) {
    // the datagrams come from another host: never loopback; which other interface is not known here
    const isLo = contains(m.right, 'lo');
    if (isLo === true && !Array.isArray(m.right) && !isObj(m.right)) return m.op === '!=' ? YES : NO;
    return maybe(text);
  }
  if (isObj(left) && isObj(left.meta) && (left.meta.key === 'oif' || left.meta.key === 'oifname')) return YES;
  const value = keyValue(left, packet);
  if (value === undefined) return maybe(text);
  const isIn = contains(m.right, value);
  if (isIn === undefined) return maybe(text);
  switch (m.op) {
    case '==':
    case 'in':
      return isIn ? YES : NO;
    case '!=':
      return isIn ? NO : YES;
    default:
      return maybe(text);
  }
}

/** Statements that let the packet go on (count, log, mark, set ...). */
const CONTINUE_STATEMENTS = new Set([
  'counter',
  'log',
  'mangle',
  'notrack',
  'set',
  'ct helper',
  'quota',
  'dup',
  'fwd',
  'synproxy',
  'snat',
  'dnat',
  'masquerade',
  'redirect',
  'tproxy',
  'flow',
  'meter',
  'secmark',
  'ct count',
  'ct timeout',
  'ct expectation',
  'last',
]);

function verdictOf(e: Obj): Action | undefined {
  if ('accept' in e) return { kind: 'accept' };
  if ('drop' in e) return { kind: 'drop', how: 'drop' };
  if ('reject' in e) return { kind: 'drop', how: 'reject' };
  if ('return' in e) return { kind: 'return' };
  if (isObj(e.jump)) return { kind: 'jump', chain: String(e.jump.target) };
  if (isObj(e.goto)) return { kind: 'goto', chain: String(e.goto.target) };
  if ('queue' in e) return { kind: 'unknown', what: 'queued to a user-space program' };
  return undefined;
}

/** One rule's expressions: the matches before its verdict (a limit or an xt match is `maybe`/unknown). */
function ruleFrom(prefix: string, exprs: Json[]): Rule {
  const text = `${prefix}${exprs
    .map(renderExpr)
    .filter((t) => t !== 'counter')
    .join(' ')}`;
  const judge = (packet: Packet): { match: Tri; action: Action } => {
    const matches: Tri[] = [];
    for (const e of exprs) {
      if (!isObj(e)) return { match: allOf(matches), action: { kind: 'unknown', what: 'unreadable expression' } };
      if (isObj(e.match)) {
        matches.push(matchExpr(e.match, packet));
        continue;
      }
      const verdict = verdictOf(e);
      if (verdict) return { match: allOf(matches), action: verdict };
      if (isObj(e.vmap)) {
        const value = keyValue(e.vmap.key, packet);
        const data = isObj(e.vmap.data) && Array.isArray(e.vmap.data.set) ? (e.vmap.data.set as Json[]) : undefined;
        if (value === undefined || !data) return { match: allOf(matches), action: { kind: 'unknown', what: 'a verdict map not judged' } };
        const hit = data.find((pair) => Array.isArray(pair) && contains(pair[0], value) === true) as [Json, Obj] | undefined;
        if (!hit) return { match: allOf([...matches, NO]), action: { kind: 'continue' } };
        return { match: allOf(matches), action: verdictOf(hit[1]) ?? { kind: 'unknown', what: 'a verdict map not judged' } };
      }
      if (isObj(e.xt)) {
        if (e.xt.type === 'target')
          return { match: allOf(matches), action: { kind: 'unknown', what: `xt target ${String(e.xt.name)} not judged` } };
        matches.push(maybe(`xt match ${String(e.xt.name)}`));
        continue;
      }
      if ('limit' in e) {
        matches.push(maybe('a rate limit'));
        continue;
      }
      const key = Object.keys(e)[0] ?? '';
      if (CONTINUE_STATEMENTS.has(key)) continue;
      matches.push(maybe(`${key} (not judged)`));
    }
    return { match: allOf(matches), action: { kind: 'continue' } };
  };
  return { text, match: (p) => judge(p).match, action: (p) => judge(p).action };
}

/** Tables managed by iptables-nft show as nft tables too; `skipIpTables` names them (judged from iptables-save). */
export function parseNftJson(text: string, options: { skipIpTables?: ReadonlySet<string> } = {}): Ruleset {
  const problems: string[] = [];
  const tables = new Map<string, Map<string, Chain>>();
  const bases: BaseChain[] = [];
  let items: Json[] = [];
  try {
    const data = JSON.parse(text) as Obj;
    items = Array.isArray(data.nftables) ? data.nftables : [];
    if (!Array.isArray(data.nftables)) problems.push('nftables: no "nftables" array in nft -j output');
  } catch {
    problems.push(`nftables: cannot read nft -j output (${text.trim().split('\n')[0]?.slice(0, 120) ?? ''})`);
    return { source: 'nftables', tables, bases, problems };
  }
  const wanted = (family: Json, table: Json) =>
    typeof family === 'string' && FAMILIES.has(family) && !(family === 'ip' && options.skipIpTables?.has(String(table)));
  const chainsOf = (family: string, table: string) => {
    const key = tableKey(family, table);
    const found = tables.get(key) ?? new Map<string, Chain>();
    tables.set(key, found);
    return found;
  };
  for (const item of items) {
    if (!isObj(item)) continue;
    if (isObj(item.chain)) {
      const c = item.chain;
      if (!wanted(c.family, c.table)) continue;
      const family = String(c.family);
      const table = String(c.table);
      const name = String(c.name);
      chainsOf(family, table).set(name, { name, ...(c.policy === 'drop' || c.policy === 'accept' ? { policy: c.policy } : {}), rules: [] });
      if (typeof c.hook === 'string' && HOOKS.has(c.hook) && (family !== 'netdev' || c.hook === 'ingress'))
        bases.push({
          source: 'nftables',
          family,
          table,
          chain: name,
          hook: c.hook as BaseChain['hook'],
          priority: typeof c.prio === 'number' ? c.prio : 0,
        });
    } else if (isObj(item.rule)) {
      const r = item.rule;
      if (!wanted(r.family, r.table)) continue;
      const chain = chainsOf(String(r.family), String(r.table)).get(String(r.chain));
      if (!chain || !Array.isArray(r.expr)) {
        problems.push(`nftables: a rule of ${String(r.family)} ${String(r.table)} ${String(r.chain)} cannot be read`);
        continue;
      }
      chain.rules.push(ruleFrom(`${String(r.family)} ${String(r.table)} ${String(r.chain)}: `, r.expr));
    }
  }
  return { source: 'nftables', tables, bases, problems };
}
