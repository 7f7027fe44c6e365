/**
 * /etc/sysctl.d/99-wireguard.conf: reverse-path filtering for the mesh.
 *
 * Strict rp_filter (1) drops a packet when the route back to its source does not leave through the interface it
 * came in on; overlay and NATed underlay traffic trips over that, so the design wants loose (2).
 */
import type { RpFilterMode } from '../inventory/types.js';

export const RP_FILTER_SYSCTL_PATH = '/etc/sysctl.d/99-wireguard.conf';

/** The keys the file sets, in file order; checks read the same ones back. */
export const RP_FILTER_SYSCTL_KEYS = ['net.ipv4.conf.all.rp_filter', 'net.ipv4.conf.default.rp_filter'] as const;

const MODE_NAMES: Record<RpFilterMode, string> = { 0: 'off', 1: 'strict', 2: 'loose' };

/** File content for the given mode. Deterministic: same mode, same bytes, so a rerun writes nothing. */
export function renderRpFilterSysctl(mode: RpFilterMode): string {
  return [
    '# Managed by meshctl: reverse-path filtering for the WireGuard mesh; edit the inventory (mesh.rpFilter), not this file.',
    `# Mode: ${MODE_NAMES[mode]} (${mode}). 0 off; 1 strict, which drops packets whose route back leaves by another interface; 2 loose.`,
    '# The kernel uses max(conf.all.rp_filter, conf.<interface>.rp_filter) for each interface: "all" is a floor for',
    '# every interface, and "default" is what new interfaces start with (wg0 is created anew by each wg-quick up).',
    ...(mode === 0 ? ['# Off (0) cannot lower an interface that sets 1 or 2 itself: max() keeps the higher value.'] : []),
    '# 99- sorts last in sysctl.d, after distribution defaults that would otherwise override these values.',
    ...RP_FILTER_SYSCTL_KEYS.map((key) => `${key} = ${mode}`),
    '',
  ].join('\n');
}

export const rpFilterModeName = (mode: RpFilterMode) => MODE_NAMES[mode];
