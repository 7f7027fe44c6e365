/**
 * A relay rule left on a node that relays nothing (Q4's finding 2). When a node stops relaying while its interface is
 * restarted anyway (another [Interface] change), `up` restarts wg-quick@IFACE on the NEW file, and `wg-quick down`
 * runs the PreDown of the file on disk, which no longer has the relay's lines: the old PostUp's FORWARD jump and
 * meshctl's chain (or nftables table, ../render/relay.ts) stay. (When the relay lines are the only change, the
 * enable step tears the relay down live with this same removal: ../steps/service.ts, a `relay-off` change.)
 * So the plan reads the rule from the node's live firewall ruleset (NodeFacts' firewallRuleset: iptables-save of
 * the legacy and nf_tables backends, `nft -j list ruleset`) and, when the design gives the node no relay, removes
 * what it finds: whatever left it (a stopped relay, an interrupted run, a hand-made copy). Pure.
 *
 * The removal runs after the node's restart or sync in the same script (with systemd or without). It switches
 * forwarding off on IFACE first, so the rule is never taken away while the relay's forwarding is on, removes the
 * rule, then sets IFACE's forwarding to what a fresh device gets: net.ipv4.conf.default.forwarding, which the kernel
 * sets to 1 with net.ipv4.ip_forward=1 (ip-sysctl.rst; a Docker host, a router). So the node ends as one that never
 * relayed, whatever came before (RV3 F4: it was left 0, breaking e.g. a Docker port reached over the mesh).
 */
import type { Change } from '../engine/types.js';
import type { FirewallFacts } from './verdict.js';
import { relayForwardingKey, relayNftTableName, relayRuleDownCommand } from '../render/relay.js';
import { relayIptablesFromSave } from '../checks/relay-check.js';

/** One item of `nft -j list ruleset` (libnftables-json(5)): the parts read here. */
interface NftItem {
  table?: { family?: string; name?: string };
  rule?: { family?: string; table?: string; expr?: Array<{ match?: { left?: { meta?: { key?: string } }; right?: unknown } }> };
}

/**
 * The name meshctl gave `iface`'s relay table before 3f9a0e6 when it differs from today's (an interface with `_`:
 * `wg_a` had `meshctl_fwd_wg_a`, which is also `wg-a`'s name then and now); undefined otherwise.
 */
const relayNftTableNameBefore3f9a0e6 = (iface: string) => (iface.includes('_') ? `meshctl_fwd_${iface.replaceAll('-', '_')}` : undefined);

/**
 * meshctl's relay rule for `iface` as the ruleset shows it: iptables lines (`-N CHAIN`, its `-A` lines, FORWARD's
 * jumps to it, as iptables -S prints them) of both backends, then `nft table inet NAME` when its nftables table
 * exists. Empty when there is none, or the ruleset was not read. An nft part that is not JSON is taken as no table.
 * An interface with `_` also owns the table an older meshctl named for it (relayNftTableNameBefore3f9a0e6), but only
 * when that table's rules match `iifname IFACE`: the same name is `wg-a`'s own table, which matches `wg-a` (RV4 F4.1:
 * such a table was never found, so a node that stopped relaying kept dropping wg_a's forwarded packets).
 */
export function relayRuleFound(ruleset: FirewallFacts | undefined, iface: string): string[] {
  if (!ruleset) return [];
  const lines = [ruleset.legacy, ruleset.iptablesNft].flatMap((save) => (save ? relayIptablesFromSave(save, iface) : []));
  const table = relayNftTableName(iface);
  const before = relayNftTableNameBefore3f9a0e6(iface);
  if (ruleset.nftJson) {
    try {
      const items = (JSON.parse(ruleset.nftJson) as { nftables?: NftItem[] }).nftables ?? [];
      if (items.some((item) => item.table?.family === 'inet' && item.table.name === table)) lines.push(`nft table inet ${table}`);
      const guardsIface = (item: NftItem) =>
        item.rule?.family === 'inet' &&
        item.rule.table === before &&
        (item.rule.expr ?? []).some((e) => e.match?.left?.meta?.key === 'iifname' && e.match.right === iface);
      if (before && items.some(guardsIface)) lines.push(`nft table inet ${before}`);
    } catch {
      // not JSON (cut at the size cap, or an nft without -j): nothing is known of the table
    }
  }
  return [...new Set(lines)];
}

/**
 * The removal of a leftover relay rule on a node the design gives no relay (`relays`: the node's designed relay
 * pairs, DesiredNodeConfig.relay; undefined: the design is not known, nothing is removed): forwarding off on `iface`,
 * relayRuleDownCommand, then `iface`'s forwarding set to conf.default.forwarding. Nothing when the node relays or no
 * rule is found. Idempotent: every command tolerates a rule already gone.
 */
export function relayResidueRemoval(
  ruleset: FirewallFacts | undefined,
  iface: string,
  desired: { relay?: { pairs: unknown[] } } | undefined,
): { commands: string[]; changes: Change[] } {
  if (!desired || desired.relay?.pairs.length) return { commands: [], changes: [] };
  const found = relayRuleFound(ruleset, iface);
  if (found.length === 0) return { commands: [], changes: [] };
  const key = relayForwardingKey(iface);
  // the rule is removed in the backend it was found in, whichever one `iptables` points at now (RV3 F3: a rule in
  // the other backend was never removed, and every up planned its removal again)
  const backends = (
    [
      ['iptables-legacy', ruleset?.legacy],
      ['iptables-nft', ruleset?.iptablesNft],
    ] as const
  )
    .filter(([, save]) => save && relayIptablesFromSave(save, iface).length > 0)
    .map(([tool]) => {
      const down = relayRuleDownCommand(iface)
        .split('; ')
        .filter((c) => c.startsWith('iptables -w '))
        .map((c) => c.replace('iptables -w ', `${tool} -w `));
      return `if command -v ${tool} >/dev/null 2>&1; then ${down.join('; ')}; fi`;
    });
  return {
    commands: [
      [
        `sysctl -q -w ${key}=0 2>/dev/null || true`,
        relayRuleDownCommand(iface),
        ...backends,
        // a table an older meshctl named for this interface (relayRuleFound): relayRuleDownCommand knows today's name only
        ...found
          .filter((line) => line.startsWith('nft table inet ') && line !== `nft table inet ${relayNftTableName(iface)}`)
          .map((line) => `nft delete ${line.slice('nft '.length)} 2>/dev/null || true`),
        `sysctl -q -w ${key}="$(cat /proc/sys/net/ipv4/conf/default/forwarding)" 2>/dev/null || true`,
      ].join('; '),
    ],
    changes: [{ kind: 'remove-relay-rule', iface, found }],
  };
}
