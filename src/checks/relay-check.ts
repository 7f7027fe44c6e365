/**
 * verify's `relay` check (issue 11): on a node that relays pairs, forwarding is on for the WireGuard interface and
 * the rule that keeps relayed traffic on it (accept IFACE -> IFACE, drop IFACE -> anything else, ../render/relay.ts)
 * is in place; on a node that relays nothing, a leftover of that rule (a node that relayed before: wg-quick's
 * restart runs the NEW file's PreDown, so the old rule stays) is reported as a warning. Pure apart from the fact's
 * command, which only reads.
 */
import type { FactDef } from '../facts/definitions.js';
import { sh } from '../remote/shell.js';
import { relayChainName, relayNftTableName } from '../render/relay.js';
import { FIREWALL_PART_MAX_BYTES } from '../firewall/verdict.js';

/** What a node shows of relaying on its WireGuard interface. */
export interface RelayState {
  /** net.ipv4.conf.IFACE.forwarding (0 or 1); undefined when unreadable (no interface) */
  forwarding?: number;
  /** `iptables -S` of meshctl's chain, and the FORWARD rules that jump to it */
  iptables: string[];
  /** `nft list table inet` of meshctl's table */
  nft: string[];
}

/**
 * Reads the forwarding sysctl (a shell builtin), meshctl's iptables chain and the FORWARD rules that jump to it (ONE
 * `iptables -S`: each iptables-nft call loads the whole ruleset, the costliest part of verify's checklist) and its
 * nftables table. Prints what `iptables -S CHAIN` and `iptables -S FORWARD | grep -F -- '-j CHAIN'` print, in that
 * order, each line tagged `ipt: `.
 */
export const RELAY_FACT: FactDef<RelayState> = {
  name: 'relay',
  command: (ctx) => {
    const chain = relayChainName(ctx.interface);
    const table = relayNftTableName(ctx.interface);
    const forwarding = `/proc/sys/net/ipv4/conf/${ctx.interface}/forwarding`;
    // the chain's own lines as they come; the jumps from FORWARD after them (iptables -S lists FORWARD first). A jump
    // is `-j` followed by exactly this chain: wg0-b's `-j meshctl-fwd-wg0-b` is no jump of wg0 (RV3 F3)
    const pick =
      '($1 == "-N" || $1 == "-A") && $2 == c { print "ipt: " $0; next } $1 == "-A" && $2 == "FORWARD" { for (i = 3; i < NF; i++) if ($i == "-j" && $(i + 1) == c) { f = f "ipt: " $0 "\\n"; break } } END { printf "%s", f }';
    return [
      sh`mc_f=; [ -r ${forwarding} ] && read -r mc_f < ${forwarding}; printf 'forwarding=%s\\n' "$mc_f"`.text,
      sh`if command -v iptables >/dev/null 2>&1; then iptables -w -S 2>/dev/null | awk -v c=${chain} ${pick}; fi`.text,
      sh`if command -v nft >/dev/null 2>&1; then nft list table inet ${table} 2>/dev/null | sed 's/^/nft: /'; fi`.text,
      'true',
    ].join('; ');
  },
  parse: (s) => {
    const lines = (s?.body ?? '').split('\n');
    const value = /^forwarding=([01])$/.exec(lines.find((l) => l.startsWith('forwarding=')) ?? '')?.[1];
    const tagged = (tag: string) => lines.filter((l) => l.startsWith(`${tag}: `)).map((l) => l.slice(tag.length + 2).trim());
    return { ...(value !== undefined ? { forwarding: Number(value) } : {}), iptables: tagged('ipt'), nft: tagged('nft') };
  },
};

/** Whether a rule's words jump to `chain` exactly (`-j CHAIN`; not a chain whose name starts with it: RV3 F3). */
const jumpsTo = (words: readonly string[], chain: string) => words.some((w, i) => w === '-j' && words[i + 1] === chain);

/**
 * The lines RELAY_FACT's `iptables -S | awk` prints, taken from iptables-save text of the same ruleset (what the lean
 * checklist already read: ./checklist-lean.ts): in its `*filter` table, `-N CHAIN` for the `:CHAIN` line, the
 * chain's `-A` lines, then FORWARD's `-A` lines naming `-j CHAIN`, as `iptables -S` prints them (save and -S print
 * a rule the same way; -S writes a chain as `-N`, save as `:CHAIN POLICY [counters]`).
 */
export function relayIptablesFromSave(save: string, iface: string): string[] {
  const chain = relayChainName(iface);
  const own: string[] = [];
  const jumps: string[] = [];
  let table = '';
  for (const line of save.split('\n')) {
    const words = line.trim().split(/\s+/);
    if (line.startsWith('*')) table = line.slice(1).trim();
    else if (table !== 'filter') continue;
    else if (words[0] === `:${chain}`) own.push(`-N ${chain}`);
    else if (words[0] === '-A' && words[1] === chain) own.push(line.trim());
    else if (words[0] === '-A' && words[1] === 'FORWARD' && jumpsTo(words, chain)) jumps.push(line.trim());
  }
  return [...own, ...jumps];
}

export interface RelayJudgement {
  status: 'pass' | 'warn' | 'fail';
  message: string;
  evidence: string[];
}

const literal = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** The rule as it should be: iptables chain with its jump, or the nftables table. */
function ruleState(iface: string, state: RelayState): { accept: boolean; drop: boolean; present: boolean } {
  const chain = literal(relayChainName(iface));
  const i = literal(iface);
  const ipt = state.iptables.join('\n');
  const nft = state.nft.join('\n');
  const iptAccept = new RegExp(`^-A ${chain} -i ${i} -o ${i} -j ACCEPT$`, 'm').test(ipt);
  const iptDrop = new RegExp(`^-A ${chain} -i ${i} -j DROP$`, 'm').test(ipt);
  const iptJump = new RegExp(`^-A FORWARD .*-j ${chain}$`, 'm').test(ipt);
  const nftAccept = new RegExp(`iifname "${i}" oifname "${i}" accept`).test(nft);
  const nftDrop = new RegExp(`iifname "${i}" (counter packets \\d+ bytes \\d+ )?drop`).test(nft);
  return {
    accept: (iptAccept && iptJump) || nftAccept,
    drop: (iptDrop && iptJump) || nftDrop,
    present: state.iptables.length > 0 || state.nft.length > 0,
  };
}

/**
 * The commands that remove a leftover relay rule by hand, for what the node shows: the FORWARD jump BEFORE the chain
 * (`iptables -X` of a chain a rule still jumps to fails "Device or resource busy", exit 4: Q4 ran the earlier advice
 * `iptables -F/-X` and it failed), and the nftables table.
 */
export function relayResidueFix(iface: string, state: Pick<RelayState, 'iptables' | 'nft'>): string {
  const chain = relayChainName(iface);
  const jumps = state.iptables.filter((l) => l.startsWith('-A FORWARD ')).map((l) => `iptables -w -D ${l.slice(3)}`);
  const hasChain = state.iptables.some((l) => l === `-N ${chain}` || l.startsWith(`-A ${chain} `));
  const commands = [
    ...jumps,
    ...(hasChain ? [`iptables -w -F ${chain}`, `iptables -w -X ${chain}`] : []),
    ...(state.nft.length ? [`nft delete table inet ${relayNftTableName(iface)}`] : []),
  ];
  return commands.join('; ');
}

/**
 * `pairs`: the pairs this node relays (undefined or empty: it relays none). undefined when there is nothing to say
 * (a node that relays nothing and shows no leftover rule).
 */
export function judgeRelay(
  iface: string,
  pairs: ReadonlyArray<{ a: string; b: string }> | undefined,
  state: RelayState,
): RelayJudgement | undefined {
  const rule = ruleState(iface, state);
  const evidence = [
    `net.ipv4.conf.${iface}.forwarding = ${state.forwarding ?? '(unreadable)'}`,
    ...state.iptables.map((l) => `iptables: ${l}`),
    ...state.nft.map((l) => `nft: ${l}`),
  ];
  if (!pairs?.length) {
    if (!rule.present) return undefined;
    return {
      status: 'warn',
      // up finds the rule in its firewall fact, whose parts are cut at FIREWALL_PART_MAX_BYTES: past the cut (a
      // kube-proxy node's iptables) it cannot see it, so no promise there (RV3 F9)
      message: `relays no pair, but meshctl's relay rule for ${iface} is still there (left from when it relayed; harmless with forwarding off; \`meshctl up\` removes it unless the node's iptables ruleset is larger than the ${FIREWALL_PART_MAX_BYTES / 1000} KB up reads of it; or by hand: ${relayResidueFix(iface, state)})`,
      evidence,
    };
  }
  const what = pairs.map((p) => `${p.a}<->${p.b}`).join(', ');
  if (!rule.drop)
    return {
      status: 'fail',
      // which consequence depends on the FORWARD chain's policy, which this fact does not read (Q8 F-relay: under a
      // DROP policy the pair was broken, while the message named only the leak of an ACCEPT policy)
      message: `relays ${what}, but meshctl's rule for ${iface} (accept ${iface} -> ${iface}, drop ${iface} -> other interfaces) is not whole${state.forwarding === 1 ? ': under an ACCEPT FORWARD policy relayed nodes could reach its underlay, under a DROP one (ufw, Docker) the relayed pairs cannot pass' : ''} (\`meshctl up\` sets it back on the running ${iface}, no restart)`,
      evidence,
    };
  if (state.forwarding !== 1)
    return {
      status: 'fail',
      message: `relays ${what}, but forwarding is off on ${iface}: the relayed pairs cannot pass (\`meshctl up\` sets it back on the running ${iface}, no restart)`,
      evidence,
    };
  if (!rule.accept)
    return {
      status: 'fail',
      message: `relays ${what}, but the rule accepting ${iface} -> ${iface} is missing: a FORWARD policy may drop the relayed pairs (\`meshctl up\` sets it back on the running ${iface}, no restart)`,
      evidence,
    };
  return { status: 'pass', message: `relays ${what}: forwarding on ${iface} only, ${iface} -> other interfaces dropped`, evidence };
}
