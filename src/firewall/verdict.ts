/**
 * Does a node's firewall let a NEW incoming UDP datagram reach WireGuard's listen port? Judged by the effect of the
 * whole ruleset (chain policies, catch-all rules, jumps into user chains), over iptables-legacy, iptables-nft and
 * native nftables at once: netfilter runs every base chain registered at a hook, so the datagram must get through
 * each of them (./model.ts). Pure: the input is the `fwrules` fact (../facts/definitions.ts), captured on the node.
 */
import { parseIptablesSave } from './iptables.js';
import { parseNftJson } from './nft.js';
import { walkBaseChain, type BaseChain, type Outcome, type Packet, type Ruleset } from './model.js';

/** The parts of the `fwrules` fact: each ruleset as the node printed it (undefined: the tool is not there). */
export interface FirewallFacts {
  /** `iptables -V`, e.g. "iptables v1.8.9 (nf_tables)"; undefined without iptables */
  iptablesVersion?: string;
  /** iptables-legacy-save, only when legacy tables exist (/proc/net/ip_tables_names) */
  legacy?: string;
  /** iptables-nft-save (or iptables-save when that is the nf_tables backend) */
  iptablesNft?: string;
  /** nft -j list ruleset */
  nftJson?: string;
  /**
   * the legacy ip6tables tables of the node's namespace (/proc/net/ip6_tables_names, one per line; empty: none);
   * undefined when the fact did not report it. nftables' view (ip6tables-nft included) is in nftJson.
   */
  ip6Legacy?: string;
  /** the parts cut at the size cap (FIREWALL_PART_MAX_BYTES) */
  truncated: string[];
}

/** The cap on each part of the fact that leaves the node: a Kubernetes node's ruleset runs to megabytes, and three parts must stay well under the transport's 4 MiB output cap (a cut part is judged unknown). */
export const FIREWALL_PART_MAX_BYTES = 512_000;

const PART = /^@@ (version|legacy|iptables-nft|nft|ip6legacy)$/;

/** Reads the `fwrules` section: `@@ NAME` lines open its parts (version, legacy, iptables-nft, nft). */
export function parseFirewallFacts(body: string): FirewallFacts {
  const parts = new Map<string, string[]>();
  let current: string[] | undefined;
  for (const line of body.split('\n')) {
    const m = PART.exec(line);
    if (m) {
      current = [];
      parts.set(m[1]!, current);
    } else current?.push(line);
  }
  const text = (name: string) => {
    const lines = parts.get(name);
    return lines === undefined ? undefined : lines.join('\n').trim();
  };
  const version = text('version');
  const truncated = [...parts.entries()]
    .filter(([, lines]) => Buffer.byteLength(lines.join('\n')) >= FIREWALL_PART_MAX_BYTES)
    .map(([name]) => name);
  return {
    ...(version ? { iptablesVersion: version } : {}),
    ...(text('legacy') !== undefined ? { legacy: text('legacy')! } : {}),
    ...(text('iptables-nft') !== undefined ? { iptablesNft: text('iptables-nft')! } : {}),
    ...(text('nft') !== undefined ? { nftJson: text('nft')! } : {}),
    ...(text('ip6legacy') !== undefined ? { ip6Legacy: text('ip6legacy')! } : {}),
    truncated,
  };
}

export interface FirewallQuery {
  /** the UDP port WireGuard listens on */
  port: number;
  /**
   * The source addresses the node's dialling peers arrive from (each judged); `undefined` in the list (or no list)
   * stands for a source that is not known, judged as any source.
   */
  sources?: Array<string | undefined>;
  /** the node's own address the datagrams arrive on */
  destination?: string;
}

/** A base chain that drops the datagram, with the exact rule to add in front of it. */
export interface Blocker {
  chain: BaseChain;
  /** chain path and deciding rule or policy, in words */
  text: string;
  /** the accept rule to add (a command to run on the node) */
  fix: string;
  /** the sources it drops (undefined: any source) */
  sources?: string[];
}

export interface FirewallVerdict {
  /**
   * accept: every base chain lets the datagram through; drop: some base chain drops it for sure (for the sources
   * asked about); conditional: it depends on something the rules match that is not known here (named in `reasons`);
   * unknown: the ruleset could not be read or followed.
   */
  status: 'accept' | 'drop' | 'conditional' | 'unknown';
  port: number;
  /** one line for the check's message */
  summary: string;
  blockers: Blocker[];
  /** what it depends on (conditional) or why it is unknown */
  reasons: string[];
  /** the rulesets judged and their base chains, for evidence */
  evidence: string[];
}

/** The command that prepends `udp dport PORT accept` to a base chain (iptables -I / nft insert put it first). */
export function acceptRuleFor(chain: BaseChain, port: number, facts: Pick<FirewallFacts, 'iptablesVersion'>): string {
  if (chain.source === 'nftables') return `nft insert rule ${chain.family} ${chain.table} ${chain.chain} udp dport ${port} accept`;
  const nftBackend = /nf_tables/.test(facts.iptablesVersion ?? '');
  const tool = chain.source === 'iptables-nft' ? (nftBackend ? 'iptables' : 'iptables-nft') : nftBackend ? 'iptables-legacy' : 'iptables';
  return `${tool}${chain.table === 'filter' ? '' : ` -t ${chain.table}`} -I ${chain.chain} -p udp --dport ${port} -j ACCEPT`;
}

/** The tables iptables-save printed (`*filter` ...): nft shows the same tables again, judged once only. */
const iptablesTables = (text: string) => new Set([...text.matchAll(/^\*(\S+)/gm)].map((m) => m[1]!));

/** Every ruleset of the facts, as ./model.ts rulesets. */
export function rulesetsOf(facts: FirewallFacts): Ruleset[] {
  const out: Ruleset[] = [];
  if (facts.legacy !== undefined) out.push(parseIptablesSave(facts.legacy, 'iptables-legacy'));
  if (facts.iptablesNft !== undefined) out.push(parseIptablesSave(facts.iptablesNft, 'iptables-nft'));
  if (facts.nftJson !== undefined)
    out.push(
      parseNftJson(facts.nftJson, { skipIpTables: facts.iptablesNft !== undefined ? iptablesTables(facts.iptablesNft) : new Set() }),
    );
  return out;
}

const HOOK_ORDER = { ingress: 0, prerouting: 1, input: 2 } as const;
const chainName = (c: BaseChain) =>
  `${c.source} ${c.family === 'ip' && c.source !== 'nftables' ? '' : `${c.family} `}${c.table} ${c.chain}`;
const describe = (o: Outcome) => `${o.path.join(' -> ')}: ${o.decidedBy}`;

/** Judges one packet against every base chain, in hook and priority order. */
function judgePacket(rulesets: Ruleset[], packet: Packet) {
  const bases = rulesets
    .flatMap((r) => r.bases.map((b) => ({ ruleset: r, base: b })))
    .sort((a, b) => HOOK_ORDER[a.base.hook] - HOOK_ORDER[b.base.hook] || a.base.priority - b.base.priority);
  return bases.map(({ ruleset, base }) => ({ base, outcomes: walkBaseChain(ruleset, base, packet) }));
}

/**
 * The verdict for UDP to `query.port` from each of `query.sources` (or from any source). Unknown or unreadable
 * rulesets give `unknown` (a warning for the caller), never a silent accept.
 */
export function judgeFirewall(facts: FirewallFacts | undefined, query: FirewallQuery): FirewallVerdict {
  const { port } = query;
  const base = { port, blockers: [] as Blocker[], reasons: [] as string[], evidence: [] as string[] };
  if (!facts)
    return {
      ...base,
      status: 'unknown',
      summary: `firewall not read: cannot tell whether UDP ${port} is accepted`,
      reasons: ['the node did not report its ruleset'],
    };
  const rulesets = rulesetsOf(facts);
  const problems = [
    ...facts.truncated.map((p) => `${p}: the ruleset is larger than ${FIREWALL_PART_MAX_BYTES} bytes and was cut`),
    ...rulesets.flatMap((r) => r.problems),
  ];
  const evidence = rulesets.map(
    (r) => `${r.source}: ${r.bases.length ? r.bases.map(chainName).join(', ') : 'no chain for incoming packets'}`,
  );
  if (facts.iptablesVersion) evidence.unshift(facts.iptablesVersion);
  if (rulesets.length === 0 && !facts.iptablesVersion)
    return {
      ...base,
      evidence,
      status: 'unknown',
      summary: `neither iptables nor nft is on the node: cannot tell whether UDP ${port} is accepted`,
      reasons: ['no firewall tool to read the ruleset with'],
    };

  const sources: Array<string | undefined> = query.sources?.length ? [...new Set(query.sources)] : [undefined];
  const blockers = new Map<string, Blocker>();
  const reasons = new Set<string>(problems);
  let conditional = false;
  let unknown = problems.length > 0;
  for (const src of sources) {
    const packet: Packet = { dport: port, ...(src ? { src } : {}), ...(query.destination ? { dst: query.destination } : {}) };
    for (const { base: chain, outcomes } of judgePacket(rulesets, packet)) {
      const drops = outcomes.filter((o) => o.verdict === 'drop');
      const unknowns = outcomes.filter((o) => o.verdict === 'unknown');
      for (const o of unknowns) reasons.add(`${chainName(chain)}: ${describe(o)}`);
      if (unknowns.length) unknown = true;
      if (drops.length === 0) continue;
      if (drops.length === outcomes.length) {
        // dropped whatever the undecidable matches say: a sure drop; named by its first way
        const key = chainName(chain);
        const found = blockers.get(key);
        const text = `${key}: ${drops
          .map((d) => `${d.path.slice(1).length ? `${d.path.join(' -> ')}: ` : ''}${d.decidedBy}`)
          .filter((t, i, all) => all.indexOf(t) === i)
          .join('; ')}`;
        if (found) found.sources = src && found.sources ? [...found.sources, src] : undefined;
        else blockers.set(key, { chain, text, fix: acceptRuleFor(chain, port, facts), ...(src ? { sources: [src] } : {}) });
        break; // later base chains never see it
      }
      conditional = true;
      for (const d of drops)
        reasons.add(`${chainName(chain)} drops it ${d.conditions.length ? `when ${d.conditions.join(', and ')}` : ''}: ${describe(d)}`);
    }
  }
  const list = [...blockers.values()];
  const out = { ...base, blockers: list, reasons: [...reasons], evidence };
  if (list.length) {
    const who = (b: Blocker) => (b.sources ? ` from ${b.sources.join(', ')}` : '');
    return { ...out, status: 'drop', summary: `the firewall drops new UDP ${port}${who(list[0]!)}: ${list[0]!.text}` };
  }
  if (unknown)
    return {
      ...out,
      status: 'unknown',
      summary: `cannot tell whether the firewall accepts UDP ${port}: ${[...reasons][0] ?? 'unreadable ruleset'}`,
    };
  if (conditional) return { ...out, status: 'conditional', summary: `the firewall accepts UDP ${port} only sometimes: ${[...reasons][0]}` };
  const judged = rulesets.reduce((n, r) => n + r.bases.length, 0);
  return {
    ...out,
    status: 'accept',
    summary:
      judged === 0
        ? `no firewall chain filters incoming packets: new UDP ${port} is accepted`
        : `the firewall accepts new UDP ${port} (${judged} base chain${judged === 1 ? '' : 's'} judged)`,
  };
}
