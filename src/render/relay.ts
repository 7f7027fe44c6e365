/**
 * What makes a node a relay (issue 11): the PostUp and PreDown lines of its wg-quick file. Pure; rendered by
 * ./wgquick.ts, compared by ./drift.ts.
 *
 * Forwarding is enabled for the WireGuard interface only: net.ipv4.conf.IFACE.forwarding=1. Linux decides whether
 * a packet may be forwarded by the `forwarding` of the device it came IN on (ip-sysctl.rst: "conf/interface/*
 * forwarding - Enable IP forwarding on this interface. This controls whether packets received _on_ this interface
 * can be forwarded."), so packets arriving on the underlay interfaces are still not forwarded, and
 * net.ipv4.ip_forward / conf.all.forwarding (which would switch every interface) are left as they are.
 * A forward rule then allows only IFACE -> IFACE and drops IFACE -> anything else (the relayed peers' traffic could
 * otherwise reach the relay's underlay networks): iptables when the node has it (its FORWARD chain is where other
 * software, Docker for one, sets a DROP policy, and a rule inserted first there wins over it), else nftables.
 *
 * The lines are idempotent (a leftover chain or table from a crash is flushed and refilled) and wg-quick runs them
 * under `set -e`: when the rule cannot be installed, PostUp fails, wg-quick takes the interface down again, and
 * forwarding is never switched on without the rule (it comes after it). PreDown switches forwarding off and
 * removes the rule; it never fails (a failing PreDown would keep wg-quick from taking the interface down).
 * No `#` may appear in a line: wg-quick strips everything after it as a comment.
 */

/** The iptables chain holding the relay's forward rule, per interface (iptables: <= 28 chars). */
export const relayChainName = (iface: string) => `meshctl-fwd-${iface}`;

/**
 * The nftables table holding the relay's forward rule, one per interface and never the same for two (RV3 F3: `wg-a`
 * and `wg_a` both got `meshctl_fwd_wg_a`, so removing one's leftover deleted the other's guard). An interface name
 * (`[A-Za-z0-9_][A-Za-z0-9_-]*`, ../inventory/spec.ts) without `_` keeps the name it always had, `-` written `_`
 * (`wg-a`: `meshctl_fwd_wg_a`); one with `_` is written in hex after `meshctl_fwdx_` (`wg_a`:
 * `meshctl_fwdx_77675f61`), a prefix the first form never starts with.
 */
export const relayNftTableName = (iface: string) =>
  iface.includes('_') ? `meshctl_fwdx_${Buffer.from(iface, 'utf8').toString('hex')}` : `meshctl_fwd_${iface.replaceAll('-', '_')}`;

/** The sysctl that lets packets received on IFACE be forwarded (and only those). */
export const relayForwardingKey = (iface: string) => `net.ipv4.conf.${iface}.forwarding`;

export interface RelayHooks {
  postUp: string[];
  preDown: string[];
}

function iptablesUp(iface: string): string {
  const chain = relayChainName(iface);
  return [
    `iptables -w -N ${chain} 2>/dev/null || iptables -w -F ${chain}`,
    `iptables -w -A ${chain} -i ${iface} -o ${iface} -j ACCEPT`,
    `iptables -w -A ${chain} -i ${iface} -j DROP`,
    `{ iptables -w -C FORWARD -i ${iface} -j ${chain} 2>/dev/null || iptables -w -I FORWARD 1 -i ${iface} -j ${chain}; }`,
  ].join(' && ');
}

function nftUp(iface: string): string {
  const table = relayNftTableName(iface);
  return [
    `nft add table inet ${table}`,
    `nft flush table inet ${table}`,
    `nft add chain inet ${table} forward '{ type filter hook forward priority 0; policy accept; }'`,
    `nft add rule inet ${table} forward iifname ${iface} oifname ${iface} accept`,
    `nft add rule inet ${table} forward iifname ${iface} counter drop`,
  ].join(' && ');
}

/**
 * Removes meshctl's relay rule for `iface`: the FORWARD jump first (a chain still referenced cannot be deleted:
 * `iptables -X` fails "Device or resource busy"), then the chain, then the nftables table. Every command `|| true`:
 * under wg-quick's `set -e` one failing command (a rule already gone) would end PreDown; run again it does nothing.
 */
export function relayRuleDownCommand(iface: string): string {
  const chain = relayChainName(iface);
  return [
    `iptables -w -D FORWARD -i ${iface} -j ${chain}`,
    `iptables -w -F ${chain}`,
    `iptables -w -X ${chain}`,
    `nft delete table inet ${relayNftTableName(iface)}`,
  ]
    .map((command) => `${command} 2>/dev/null || true`)
    .join('; ');
}

/** The lines for a relay on interface `iface` (the real name, not %i: it also names the chain and the sysctl). */
export function relayHooks(iface: string): RelayHooks {
  const noTool = `echo "meshctl relay: neither iptables nor nft on this node: not forwarding" >&2; false`;
  return {
    postUp: [
      `if command -v iptables >/dev/null 2>&1; then ${iptablesUp(iface)}; elif command -v nft >/dev/null 2>&1; then ${nftUp(iface)}; else ${noTool}; fi`,
      `sysctl -q -w ${relayForwardingKey(iface)}=1`,
    ],
    preDown: [`sysctl -q -w ${relayForwardingKey(iface)}=0 2>/dev/null || true`, relayRuleDownCommand(iface)],
  };
}
