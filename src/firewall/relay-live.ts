/**
 * Whether a relay's rule is in place on the node, read from up's firewall fact (NodeFacts.baseline.firewallRuleset),
 * for the enable step to compare with the design (../steps/service.ts): a relay whose rule was deleted (a firewall
 * reset, `iptables -D FORWARD ...` by hand) is set up again live, as its forwarding switched off is (a new user's
 * finding Q8 F-relay: `up` said nothing to change while the relayed pair was down). Pure.
 *
 * The rule is looked for where the relay's PostUp puts it (../render/relay.ts): with `iptables` on the node, in the
 * ruleset of the backend `iptables -V` names (nf_tables: the iptables-nft part; legacy: the legacy part), the chain
 * meshctl-fwd-IFACE with its ACCEPT IFACE -> IFACE and DROP IFACE -> other lines and a FORWARD jump to it, as
 * ../checks/relay-check.ts judges them; without iptables, the nftables table with both rules (`nft -j list ruleset`).
 */
import type { FirewallFacts } from './verdict.js';
import { relayChainName, relayNftTableName } from '../render/relay.js';
import { relayIptablesFromSave } from '../checks/relay-check.js';

/** One item of `nft -j list ruleset` (libnftables-json(5)): the parts read here. */
interface NftItem {
  rule?: {
    family?: string;
    table?: string;
    expr?: Array<{ match?: { left?: { meta?: { key?: string } }; right?: unknown }; accept?: null; drop?: null }>;
  };
}

/**
 * true when meshctl's relay rule for `iface` is whole in the ruleset the relay's PostUp writes to, false when it is
 * not (missing, or a part of it: no FORWARD jump, no DROP line), undefined when that cannot be told: the ruleset was
 * not read, its part is not there (no iptables-save of that backend on the node) or was cut at the size cap
 * (FIREWALL_PART_MAX_BYTES), or the nft part is not JSON.
 */
export function relayRuleInPlace(ruleset: FirewallFacts | undefined, iface: string): boolean | undefined {
  if (!ruleset) return undefined;
  if (ruleset.iptablesVersion !== undefined) {
    const legacy = !/nf_tables/.test(ruleset.iptablesVersion);
    const save = legacy ? ruleset.legacy : ruleset.iptablesNft;
    if (save === undefined || ruleset.truncated.includes(legacy ? 'legacy' : 'iptables-nft')) return undefined;
    const lines = relayIptablesFromSave(save, iface);
    const chain = relayChainName(iface);
    const words = (line: string) => line.split(/\s+/);
    const has = (want: string) => lines.some((line) => line === want);
    const jump = lines.some((line) => {
      const w = words(line);
      return w[1] === 'FORWARD' && w.some((x, i) => x === '-j' && w[i + 1] === chain);
    });
    return jump && has(`-A ${chain} -i ${iface} -o ${iface} -j ACCEPT`) && has(`-A ${chain} -i ${iface} -j DROP`);
  }
  if (ruleset.nftJson === undefined || ruleset.truncated.includes('nft')) return undefined;
  let items: NftItem[];
  try {
    items = (JSON.parse(ruleset.nftJson) as { nftables?: NftItem[] }).nftables ?? [];
  } catch {
    return undefined;
  }
  const table = relayNftTableName(iface);
  const rules = items.filter((item) => item.rule?.family === 'inet' && item.rule.table === table).map((item) => item.rule!.expr ?? []);
  const matches = (expr: NonNullable<NonNullable<NftItem['rule']>['expr']>, key: string) =>
    expr.some((e) => e.match?.left?.meta?.key === key && e.match.right === iface);
  const accept = rules.some((expr) => matches(expr, 'iifname') && matches(expr, 'oifname') && expr.some((e) => 'accept' in e));
  const drop = rules.some((expr) => matches(expr, 'iifname') && !matches(expr, 'oifname') && expr.some((e) => 'drop' in e));
  return accept && drop;
}
