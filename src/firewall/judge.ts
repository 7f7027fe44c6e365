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

/** The verdict for `node`'s listen port, asked for the sources its dialling peers arrive from. */
export function firewallVerdictFor(inventory: Inventory, node: Node, facts: FirewallFacts | undefined): FirewallVerdict {
  const dialers = dialersOf(inventory, node);
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
  if (judged.status !== 'fail' || dialersOf(inventory, node).length > 0) return judged;
  return { ...judged, status: 'warn', message: `${judged.message} (no peer dials ${node.name}, so no session needs it yet)` };
}
