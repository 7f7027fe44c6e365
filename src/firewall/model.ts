/**
 * The common model of a packet filter ruleset (iptables-legacy, iptables-nft and native nftables alike) and the walk
 * of one packet through it. Pure: ./iptables.ts and ./nft.ts turn a node's ruleset text into this model,
 * ./verdict.ts asks it about WireGuard's datagrams.
 *
 * Netfilter's rules that the walk follows (iptables(8), nft(8) "VERDICT STATEMENT", netfilter hooks):
 * - every base chain registered at a hook sees the packet, in priority order; `accept` ends only the chain (and the
 *   table) it is in, the packet goes on to the next base chain; `drop`/`reject` end it for good;
 * - a packet falls off the end of a base chain to the chain's policy, off the end of a user chain back to the rule
 *   after the `jump` that entered it (a `goto` does not come back);
 * - a match we cannot decide for the packet (an interface we do not know, a named set, a rate limit) is `maybe`:
 *   the walk follows both ways and the verdict says what it depends on.
 */

/** A three-valued match result: `maybe` carries the words for what it depends on. */
export type Tri = { result: 'yes' } | { result: 'no' } | { result: 'maybe'; on: string };

export const YES: Tri = { result: 'yes' };
export const NO: Tri = { result: 'no' };
export const maybe = (on: string): Tri => ({ result: 'maybe', on });
export const not = (t: Tri): Tri => (t.result === 'yes' ? NO : t.result === 'no' ? YES : maybe(`not ${t.on}`));
/** All of several matches (a rule's matches are ANDed). */
export function allOf(results: Tri[]): Tri {
  if (results.some((r) => r.result === 'no')) return NO;
  const open = results.filter((r): r is { result: 'maybe'; on: string } => r.result === 'maybe');
  return open.length === 0 ? YES : maybe(open.map((r) => r.on).join(' and '));
}

/** The packet asked about: an incoming IPv4 UDP datagram of a NEW flow (no conntrack entry helps it). */
export interface Packet {
  dport: number;
  /** source address as the node sees it; undefined = any source */
  src?: string;
  /** the node's own address it arrives on; undefined = unknown */
  dst?: string;
}

export type Action =
  | { kind: 'accept' }
  | { kind: 'drop'; how: string }
  | { kind: 'return' }
  | { kind: 'jump'; chain: string }
  | { kind: 'goto'; chain: string }
  /** a rule that does not end the walk (counter, log, mark ...) */
  | { kind: 'continue' }
  /** a verdict we cannot follow (NFQUEUE, an xt target nft cannot show, a verdict map we cannot read) */
  | { kind: 'unknown'; what: string };

export interface Rule {
  /** the rule as the tool prints it (iptables-save line, or nft's words) */
  text: string;
  match(packet: Packet): Tri;
  /** the action for this packet (a verdict map may depend on it) */
  action(packet: Packet): Action;
}

export interface Chain {
  name: string;
  /** base chains only */
  policy?: 'accept' | 'drop';
  rules: Rule[];
}

export type RulesetSource = 'iptables-legacy' | 'iptables-nft' | 'nftables';

/** One base chain a packet for the node passes (hook prerouting/input, or a netdev ingress chain). */
export interface BaseChain {
  source: RulesetSource;
  /** nft family (ip, inet, netdev); `ip` for iptables */
  family: string;
  table: string;
  chain: string;
  hook: 'ingress' | 'prerouting' | 'input';
  /** priority within the hook (iptables' fixed ones: raw -300, mangle -150, filter 0, security 50) */
  priority: number;
}

/** A ruleset of one source: its tables' chains by name, and the base chains incoming packets pass. */
export interface Ruleset {
  source: RulesetSource;
  /** `family table` -> chain name -> chain */
  tables: Map<string, Map<string, Chain>>;
  bases: BaseChain[];
  /** what could not be read (unparseable lines, cut output); any of it makes the verdict unknown */
  problems: string[];
}

export const tableKey = (family: string, table: string) => `${family} ${table}`;

/** Where a walk ended: the chain path from the base chain, and the rule or policy that decided. */
export interface Outcome {
  verdict: 'accept' | 'drop' | 'unknown';
  /** base chain first, then each chain jumped to */
  path: string[];
  /** the deciding rule's text, or `policy drop` / `policy accept`; for unknown, what could not be followed */
  decidedBy: string;
  /** the undecidable matches this outcome depends on (empty: it holds for every such packet) */
  conditions: string[];
}

/** A cap on the walk (branches on `maybe` and jumps): a ruleset past it is judged unknown, never guessed. */
export const WALK_BUDGET = 20_000;
const MAX_DEPTH = 64;

type Inner = { verdict: 'accept' | 'drop' | 'unknown' | 'return'; path: string[]; decidedBy: string; conditions: string[] };

/**
 * Every way `packet` can leave `base` (a base chain): each outcome with the undecidable matches it depends on.
 * Rules are walked in order; a `maybe` match forks the walk (taken / not taken).
 */
export function walkBaseChain(ruleset: Ruleset, base: BaseChain, packet: Packet): Outcome[] {
  const chains = ruleset.tables.get(tableKey(base.family, base.table));
  let budget = WALK_BUDGET;
  const memo = new Map<string, Inner[]>();

  const walkFrom = (chain: Chain, index: number, depth: number): Inner[] => {
    const key = `${chain.name}\u0000${index}`;
    const known = memo.get(key);
    if (known) return known;
    if (--budget < 0 || depth > MAX_DEPTH)
      return [{ verdict: 'unknown', path: [chain.name], decidedBy: 'the ruleset is too large or too deep to follow', conditions: [] }];
    const result = step(chain, index, depth);
    memo.set(key, result);
    return result;
  };

  const atEnd = (chain: Chain, isBase: boolean): Inner[] => {
    if (!isBase) return [{ verdict: 'return', path: [chain.name], decidedBy: 'end of chain', conditions: [] }];
    const policy = chain.policy ?? 'accept';
    return [{ verdict: policy, path: [chain.name], decidedBy: `policy ${policy}`, conditions: [] }];
  };

  const prefix = (chain: Chain, outs: Inner[], condition?: string): Inner[] =>
    outs.map((o) => ({
      ...o,
      path: o.path[0] === chain.name ? o.path : [chain.name, ...o.path],
      conditions: condition ? [condition, ...o.conditions] : o.conditions,
    }));

  const apply = (chain: Chain, index: number, rule: Rule, depth: number): Inner[] => {
    const action = rule.action(packet);
    const here = (verdict: Inner['verdict'], decidedBy = rule.text): Inner[] => [
      { verdict, path: [chain.name], decidedBy, conditions: [] },
    ];
    switch (action.kind) {
      case 'accept':
        return here('accept');
      case 'drop':
        return here('drop');
      case 'return':
        return here('return');
      case 'continue':
        return walkFrom(chain, index + 1, depth);
      case 'unknown':
        return here('unknown', `${rule.text} (${action.what})`);
      case 'jump':
      case 'goto': {
        const target = chains?.get(action.chain);
        if (!target) return here('unknown', `${rule.text} (no chain ${action.chain})`);
        const sub = prefix(chain, walkFrom(target, 0, depth + 1));
        if (action.kind === 'goto') return sub;
        // a jump comes back to the next rule when the chain jumped to returns
        return sub.flatMap((o) =>
          o.verdict === 'return'
            ? walkFrom(chain, index + 1, depth).map((next) => ({ ...next, conditions: [...o.conditions, ...next.conditions] }))
            : [o],
        );
      }
    }
  };

  const step = (chain: Chain, index: number, depth: number): Inner[] => {
    const isBase = depth === 0 && chain.name === base.chain;
    for (let i = index; i < chain.rules.length; i++) {
      const rule = chain.rules[i]!;
      const m = rule.match(packet);
      if (m.result === 'no') continue;
      if (m.result === 'yes') return apply(chain, i, rule, depth);
      const taken = prefix(chain, apply(chain, i, rule, depth), `${m.on} (${rule.text})`);
      const skipped = prefix(chain, walkFrom(chain, i + 1, depth), `not ${m.on} (${rule.text})`);
      return [...taken, ...skipped];
    }
    return atEnd(chain, isBase);
  };

  const start = chains?.get(base.chain);
  if (!start) return [{ verdict: 'unknown', path: [base.chain], decidedBy: `no chain ${base.chain}`, conditions: [] }];
  return walkFrom(start, 0, 0).map((o) => ({
    // a base chain's return ends it like its policy
    verdict: o.verdict === 'return' ? (start.policy ?? 'accept') : o.verdict,
    path: o.path,
    decidedBy: o.verdict === 'return' ? `${o.decidedBy}, then policy ${start.policy ?? 'accept'}` : o.decidedBy,
    conditions: o.conditions,
  }));
}
