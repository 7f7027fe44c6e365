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
      )
    : v4;
}

/**
 * The IPv6 ruleset (ip6tables, nft ip6 tables, and what inet tables do to IPv6) is not read yet: a node that peers
 * dial over IPv6 is never passed on the IPv4 verdict alone. A pass becomes a warning naming the unjudged path and
 * how to check it; a failure stays one.
 */
function withIpv6Unjudged(judged: Judgement, node: Node, peers: string[]): Judgement {
  const what = `${peers.join(', ')} dial${peers.length === 1 ? 's' : ''} ${node.name} over IPv6 at [${node.address6}]:${node.listenPort}, and its IPv6 firewall is not judged (check that ip6tables / nft ip6 and inet input chains accept UDP ${node.listenPort}; verify's cold-start check sends a new flow over that path)`;
  const evidence = [...(judged.evidence ?? []), `not judged: ${what}`];
  if (judged.status === 'fail') return { ...judged, evidence };
  return {
    status: 'warn',
    message: judged.status === 'pass' ? `IPv4: ${judged.message}; IPv6: ${what}` : `${judged.message}; IPv6: ${what}`,
    evidence,
  };
}
