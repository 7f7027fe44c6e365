/**
 * The firewall verdict (./verdict.ts) as a check's judgement, shared by up's `no-firewall-drop` gate and verify's
 * `firewall` check: a sure drop fails and names the chain, rule or policy and the exact accept rule to add; a
 * verdict that depends on what is not known, or a ruleset that could not be read, warns (never a silent pass).
 */
import type { Judgement } from '../checks/judge.js';
import type { Inventory, Node } from '../inventory/types.js';
import { redactSecrets } from '../remote/redact.js';
import { dialersOf } from './sources.js';
import { judgeFirewall, type FirewallFacts, type FirewallVerdict } from './verdict.js';

/**
 * The verdict for `node`'s listen port, asked for the sources its dialling peers arrive from over IPv4 (the rulesets
 * read are IPv4's: iptables, nft ip/inet/netdev; peers dialling over IPv6 are judged by judgeNodeFirewall's warning).
 */
export function firewallVerdictFor(inventory: Inventory, node: Node, facts: FirewallFacts | undefined): FirewallVerdict {
  const dialers = dialersOf(inventory, node).filter((d) => !d.ipv6);
  return judgeFirewall(facts, {
    port: node.listenPort,
    ...(dialers.length ? { sources: dialers.map((d) => d.source) } : {}),
    destination: node.address,
  });
}

/** The judgement of a verdict; rule texts are shown with key-shaped tokens redacted (a comment may hold anything). */
export function judgeFirewallVerdict(verdict: FirewallVerdict): Judgement {
  const clean = (text: string) => redactSecrets(text);
  const evidence = [
    ...verdict.blockers.flatMap((b) => [`drops: ${clean(b.text)}`, `fix: ${b.fix}`]),
    ...verdict.reasons.map((r) => `${verdict.status === 'conditional' ? 'depends on' : 'not judged'}: ${clean(r)}`),
    ...verdict.evidence.map((e) => `ruleset: ${clean(e)}`),
  ];
  const first = verdict.blockers[0];
  switch (verdict.status) {
    case 'accept':
      return { status: 'pass', message: verdict.summary, evidence };
    case 'drop':
      return { status: 'fail', message: `${clean(verdict.summary)}; add: ${first!.fix}`, evidence };
    default:
      return { status: 'warn', message: clean(verdict.summary), evidence };
  }
}

/**
 * `node`'s firewall judged for its dialling peers. A node nobody dials (every peer waits for it to dial out) needs
 * no new incoming flow: a drop there only warns.
 */
export function judgeNodeFirewall(inventory: Inventory, node: Node, facts: FirewallFacts | undefined): Judgement {
  const judged = judgeFirewallVerdict(firewallVerdictFor(inventory, node, facts));
  const dialers = dialersOf(inventory, node);
  const over4 = dialers.filter((d) => !d.ipv6);
  const over6 = dialers.filter((d) => d.ipv6);
  const v4 =
    judged.status !== 'fail' || over4.length > 0
      ? judged
      : {
          ...judged,
          status: 'warn' as const,
          message: `${judged.message} (no peer dials ${node.name} over IPv4, so no session needs it yet)`,
        };
  return over6.length
    ? withIpv6Unjudged(
        v4,
        node,
        over6.map((d) => d.node.name),
        facts,
      )
    : v4;
}

/**
 * The rules of IPv6 chains (ip6tables, nft ip6 tables, what inet and netdev tables do to IPv6) are not judged yet: a
 * node that peers dial over IPv6 keeps its IPv4 verdict only when nothing can filter IPv6 on it (ipv6Unfiltered).
 * Otherwise a pass becomes a warning naming the unjudged path and how to check it; a failure stays one.
 */
function withIpv6Unjudged(judged: Judgement, node: Node, peers: string[], facts: FirewallFacts | undefined): Judgement {
  const unfiltered = ipv6Unfiltered(facts);
  if (unfiltered) return { ...judged, evidence: [...(judged.evidence ?? []), `IPv6 (${peers.join(', ')} dial over it): ${unfiltered}`] };
  const what = `${peers.join(', ')} dial${peers.length === 1 ? 's' : ''} ${node.name} over IPv6 at [${node.address6}]:${node.listenPort}, and its IPv6 firewall is not judged (check that ip6tables / nft ip6 and inet input chains accept UDP ${node.listenPort}; verify's cold-start check sends a new flow over that path)`;
  const evidence = [...(judged.evidence ?? []), 'not judged: the IPv6 ruleset (ip6tables, nft ip6/inet/netdev chains)'];
  if (judged.status === 'fail') return { ...judged, evidence };
  return {
    status: 'warn',
    message: judged.status === 'pass' ? `IPv4: ${judged.message}; IPv6: ${what}` : `${judged.message}; IPv6: ${what}`,
    evidence,
  };
}

/**
 * Why nothing can filter an incoming IPv6 datagram on the node, or undefined when something might (or it cannot be
 * told). Nothing does when the namespace has no legacy ip6tables table (/proc/net/ip6_tables_names is empty) and
 * nftables (which shows ip6tables-nft's tables too) has no base chain at the ingress, prerouting or input hook in an
 * ip6, inet or netdev table. Judging the rules of such chains for IPv6 is not done yet: their presence is a warning.
 */
export function ipv6Unfiltered(facts: FirewallFacts | undefined): string | undefined {
  if (!facts || facts.ip6Legacy === undefined || facts.nftJson === undefined) return undefined;
  if (facts.ip6Legacy.trim() !== '' || facts.truncated.includes('nft')) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(facts.nftJson);
  } catch {
    return undefined;
  }
  const items = (parsed as { nftables?: unknown } | null)?.nftables;
  if (!Array.isArray(items)) return undefined;
  const v6Chains = items
    .map((item) => (item as { chain?: { family?: unknown; hook?: unknown } } | null)?.chain)
    .filter(
      (c) =>
        c !== undefined &&
        ['ip6', 'inet', 'netdev'].includes(String(c.family)) &&
        ['ingress', 'prerouting', 'input'].includes(String(c.hook)),
    );
  return v6Chains.length === 0
    ? 'no ip6tables (legacy) table and no nftables ip6, inet or netdev chain for incoming packets: new UDP over IPv6 is accepted'
    : undefined;
}
