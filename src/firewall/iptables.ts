/**
 * iptables-save output (legacy or nf_tables backend; the format is the same) as a ./model.ts ruleset. Matches are
 * judged for one incoming UDP datagram of a new flow; any option not known here is `maybe` (named), never ignored,
 * so an unusual rule makes the verdict conditional rather than wrong. The options are iptables-extensions(8)'s.
 */
import { cidrContains, isIpv4, parseCidr } from '../net/ipv4.js';
import {
  allOf,
  maybe,
  NO,
  not,
  YES,
  tableKey,
  type Action,
  type BaseChain,
  type Chain,
  type Packet,
  type Rule,
  type Ruleset,
  type RulesetSource,
  type Tri,
} from './model.js';

/** The built-in chains an incoming packet passes, per table, with the table's hook priority (netfilter_ipv4.h). */
const INCOMING: Record<string, { chains: Array<'PREROUTING' | 'INPUT'>; priority: number }> = {
  raw: { chains: ['PREROUTING'], priority: -300 },
  mangle: { chains: ['PREROUTING', 'INPUT'], priority: -150 },
  filter: { chains: ['INPUT'], priority: 0 },
  security: { chains: ['INPUT'], priority: 50 },
};

/** Splits one iptables-save line into words; "double quoted" words (comments, log prefixes) keep their spaces. */
export function words(line: string): string[] {
  const out: string[] = [];
  const re = /"((?:[^"\\]|\\.)*)"|(\S+)/g;
  for (let m = re.exec(line); m; m = re.exec(line)) out.push(m[1] !== undefined ? m[1].replace(/\\(.)/g, '$1') : m[2]!);
  return out;
}

const inRange = (spec: string, port: number): boolean => {
  const [lo, hi] = spec.split(':');
  const a = lo === '' || lo === undefined ? 0 : Number(lo);
  const b = hi === undefined ? a : hi === '' ? 65535 : Number(hi);
  return Number.isInteger(a) && Number.isInteger(b) && a <= port && port <= b;
};
const portList = (list: string, port: number) => list.split(',').some((spec) => inRange(spec, port));

const addressMatch = (spec: string, ip: string | undefined, what: string): Tri => {
  const cidr = parseCidr(spec.includes('/') ? spec : `${spec}/32`, { strict: false });
  if (!cidr) return maybe(`${what} ${spec}`);
  if (ip === undefined || !isIpv4(ip)) return maybe(`${what} ${spec}`);
  return cidrContains(cidr, ip) ? YES : NO;
};

/** conntrack's states for the first datagram of a flow: NEW (never ESTABLISHED, RELATED, INVALID, UNTRACKED). */
const stateMatch = (list: string): Tri => (list.split(',').some((s) => s.toUpperCase() === 'NEW') ? YES : NO);

/** One option (with its value) of a rule, judged for the packet. `values` are the words after the option. */
function optionMatch(option: string, values: string[], packet: Packet): Tri {
  const v = values[0] ?? '';
  switch (option) {
    case '-p':
    case '--protocol':
      return ['udp', '17', 'all', '0'].includes(v.toLowerCase()) ? YES : NO;
    case '-s':
    case '--source':
    case '--src':
      return addressMatch(v, packet.src, 'source');
    case '-d':
    case '--destination':
    case '--dst':
      return addressMatch(v, packet.dst, 'destination');
    case '-i':
    case '--in-interface':
      // the datagrams come from another host: never loopback; which other interface is not known here
      return v === 'lo' ? NO : maybe(`arriving on ${v}`);
    case '-o':
    case '--out-interface':
      return YES;
    case '--dport':
    case '--destination-port':
      return inRange(v, packet.dport) ? YES : NO;
    case '--dports':
    case '--destination-ports':
      return portList(v, packet.dport) ? YES : NO;
    case '--ports':
      return portList(v, packet.dport) ? YES : maybe(`source port in ${v}`);
    case '--sport':
    case '--source-port':
    case '--sports':
    case '--source-ports':
      return maybe(`source port ${v}`);
    case '--ctstate':
    case '--state':
      return stateMatch(v);
    case '--comment':
      return YES;
    case '--dst-type':
      return v.split(',').includes('LOCAL') ? YES : NO;
    case '--pkt-type':
      return v === 'unicast' ? YES : NO;
    case '--icmp-type':
    case '--tcp-flags':
    case '--syn':
    case '--tcp-option':
      // only valid with -p icmp / -p tcp, which did not match a UDP datagram anyway
      return NO;
    case '-f':
    case '--fragment':
      return NO;
    default:
      return maybe(`${option}${values.length ? ` ${values.join(' ')}` : ''}`);
  }
}

/** How many values an option takes (most take one; some none; --tcp-flags two). */
const VALUE_COUNT: Record<string, number> = {
  '--syn': 0,
  '-f': 0,
  '--fragment': 0,
  '--tcp-flags': 2,
  '--rsource': 0,
  '--rdest': 0,
  '--set': 0,
  '--update': 0,
  '--rcheck': 0,
  '--remove': 0,
};

/** Non-terminating targets (they mark, log, count and let the packet go on). */
const CONTINUE_TARGETS = new Set([
  'LOG',
  'NFLOG',
  'ULOG',
  'MARK',
  'CONNMARK',
  'CT',
  'NOTRACK',
  'TRACE',
  'AUDIT',
  'CHECKSUM',
  'TCPMSS',
  'SET',
  'DSCP',
  'TOS',
  'TTL',
  'CLASSIFY',
  'CONNSECMARK',
  'SECMARK',
  'IDLETIMER',
  'LED',
  'RATEEST',
  'TEE',
]);

function targetAction(target: string | undefined, isGoto: boolean, chains: Set<string>): Action {
  if (target === undefined) return { kind: 'continue' };
  if (target === 'ACCEPT') return { kind: 'accept' };
  if (target === 'DROP' || target === 'REJECT') return { kind: 'drop', how: target };
  if (target === 'RETURN') return { kind: 'return' };
  if (chains.has(target)) return isGoto ? { kind: 'goto', chain: target } : { kind: 'jump', chain: target };
  if (CONTINUE_TARGETS.has(target)) return { kind: 'continue' };
  return { kind: 'unknown', what: `target ${target} not judged` };
}

/** One `-A CHAIN ...` line as a rule (its text is the line itself). */
export function parseRuleLine(line: string, chains: Set<string>): { chain: string; rule: Rule } | undefined {
  const w = words(line);
  if (w[0] !== '-A' || !w[1]) return undefined;
  const chain = w[1];
  const matches: Array<{ option: string; values: string[]; negated: boolean }> = [];
  let target: string | undefined;
  let isGoto = false;
  let negate = false;
  for (let i = 2; i < w.length; i++) {
    const token = w[i]!;
    if (token === '!') {
      negate = true;
      continue;
    }
    if (token === '-j' || token === '--jump' || token === '-g' || token === '--goto') {
      target = w[i + 1];
      isGoto = token === '-g' || token === '--goto';
      break; // the rest are the target's own options
    }
    if (token === '-m' || token === '--match') {
      i++;
      continue;
    }
    if (!token.startsWith('-')) continue;
    const count = VALUE_COUNT[token] ?? 1;
    const values = w.slice(i + 1, i + 1 + count).filter((x) => x !== '!');
    i += count;
    matches.push({ option: token, values, negated: negate });
    negate = false;
  }
  const action = targetAction(target, isGoto, chains);
  const rule: Rule = {
    text: line.trim(),
    match: (packet) => allOf(matches.map((m) => (m.negated ? not : (t: Tri) => t)(optionMatch(m.option, m.values, packet)))),
    action: () => action,
  };
  return { chain, rule };
}

/**
 * Parses iptables-save output. Tables without a chain incoming packets pass (nat's are kept, as they cannot drop,
 * but walked like the others) are kept in `tables` all the same; `bases` lists the built-in chains of INCOMING.
 */
export function parseIptablesSave(text: string, source: Extract<RulesetSource, 'iptables-legacy' | 'iptables-nft'>): Ruleset {
  const tables = new Map<string, Map<string, Chain>>();
  const bases: BaseChain[] = [];
  const problems: string[] = [];
  let table: string | undefined;
  let chains = new Map<string, Chain>();
  let pending: string[] = [];
  const close = () => {
    if (!table) return;
    const names = new Set(chains.keys());
    for (const line of pending) {
      const parsed = parseRuleLine(line, names);
      const chain = parsed ? chains.get(parsed.chain) : undefined;
      if (!parsed || !chain) problems.push(`${source}: cannot read ${line}`);
      else chain.rules.push(parsed.rule);
    }
    tables.set(tableKey('ip', table), chains);
    const incoming = INCOMING[table];
    for (const name of incoming?.chains ?? [])
      if (chains.has(name))
        bases.push({
          source,
          family: 'ip',
          table,
          chain: name,
          hook: name === 'INPUT' ? 'input' : 'prerouting',
          priority: incoming!.priority,
        });
    table = undefined;
  };
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    if (line.startsWith('*')) {
      close();
      table = line.slice(1);
      chains = new Map();
      pending = [];
    } else if (line.startsWith(':')) {
      const [name, policy] = line.slice(1).split(/\s+/);
      if (!name) continue;
      chains.set(name, {
        name,
        ...(policy === 'DROP' ? { policy: 'drop' as const } : policy === 'ACCEPT' ? { policy: 'accept' as const } : {}),
        rules: [],
      });
    } else if (line.startsWith('-A')) {
      if (table) pending.push(line);
      else problems.push(`${source}: a rule outside any table: ${line}`);
    } else if (line === 'COMMIT') close();
    else if (/^(iptables|ip6tables)[\w-]*: |^Fatal|^Failed|^can't|^Another app/i.test(line)) problems.push(`${source}: ${line}`);
  }
  if (table) problems.push(`${source}: table ${table} has no COMMIT (output cut short)`);
  close();
  return { source, tables, bases, problems };
}
