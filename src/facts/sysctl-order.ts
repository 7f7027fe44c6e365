/**
 * Which sysctl configuration files win at boot, in systemd-sysctl's order, and which of them undo meshctl's
 * rp_filter file (/etc/sysctl.d/99-wireguard.conf) with another value.
 *
 * Order (sysctl.d(5)): the *.conf files of SYSCTL_DIRS are sorted by file name across all directories and applied in
 * that order, so a later file's value wins; a file name in an earlier directory (/etc first) shadows the same name in
 * a later one (a symlink to /dev/null masks it); /etc/sysctl.conf is read last of all.
 */

/** The sysctl.d directories, highest priority first (sysctl.d(5)). */
export const SYSCTL_DIRS = ['/etc/sysctl.d', '/run/sysctl.d', '/usr/local/lib/sysctl.d', '/usr/lib/sysctl.d', '/lib/sysctl.d'] as const;
/** Read after every sysctl.d file (sysctl.d(5), systemd-sysctl). */
export const SYSCTL_CONF = '/etc/sysctl.conf';

/** One rp_filter assignment found in a sysctl file. */
export interface RpFilterSetting {
  /** normalised with dots: net.ipv4.conf.all.rp_filter */
  key: string;
  value: number;
}

/** A sysctl file as the node reported it: its path and the rp_filter assignments in it, in file order. */
export interface SysctlFileSettings {
  path: string;
  settings: RpFilterSetting[];
}

const baseName = (path: string) => path.slice(path.lastIndexOf('/') + 1);
const dirName = (path: string) => path.slice(0, path.lastIndexOf('/'));

/**
 * The files systemd-sysctl applies, in application order: one per file name (the one in the highest-priority
 * directory), sorted by file name (byte order, like systemd's strcmp), then /etc/sysctl.conf. Paths outside
 * SYSCTL_DIRS (other than /etc/sysctl.conf) are dropped.
 */
export function orderSysctlFiles(paths: readonly string[]): string[] {
  const byName = new Map<string, string>();
  const rank = (path: string) => SYSCTL_DIRS.indexOf(dirName(path) as (typeof SYSCTL_DIRS)[number]);
  for (const path of paths) {
    if (rank(path) < 0 || !path.endsWith('.conf')) continue;
    const held = byName.get(baseName(path));
    if (held === undefined || rank(path) < rank(held)) byName.set(baseName(path), path);
  }
  const names = [...byName.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  return [...names.map((name) => byName.get(name)!), ...(paths.includes(SYSCTL_CONF) ? [SYSCTL_CONF] : [])];
}

/** A file whose rp_filter value is the one the kernel holds after boot, and not the designed one. */
export interface RpFilterOverride {
  path: string;
  key: string;
  value: number;
}

export interface OverrideQuery {
  /** meshctl's file (wireguardPaths(iface).sysctl); it sets `all` and `default` to `mode`, present on the node or not */
  ours: string;
  iface: string;
  /** the designed mode (inventory mesh.rpFilter) */
  mode: number;
}

/**
 * The files that override meshctl's rp_filter file at boot: for `all` and `default`, the file that sets the key last
 * (in orderSysctlFiles' order, our file counted as setting both to `mode`) when that is another file with another
 * value; for the interface's own key (which our file does not set), the last setting when it is above `mode` (the
 * kernel uses max(all, IFACE)). Masked (shadowed) files do not count. Result in application order.
 */
export function rpFilterOverrides(files: readonly SysctlFileSettings[], query: OverrideQuery): RpFilterOverride[] {
  const { ours, iface, mode } = query;
  const settingsOf = new Map(files.map((f) => [f.path, f.settings]));
  const keys = { all: 'net.ipv4.conf.all.rp_filter', default: 'net.ipv4.conf.default.rp_filter', own: `net.ipv4.conf.${iface}.rp_filter` };
  const last = new Map<string, RpFilterOverride>();
  for (const path of orderSysctlFiles([...files.map((f) => f.path), ours])) {
    const settings =
      path === ours
        ? [
            { key: keys.all, value: mode },
            { key: keys.default, value: mode },
          ]
        : (settingsOf.get(path) ?? []);
    for (const s of settings) last.set(s.key, { path, key: s.key, value: s.value });
  }
  const overrides = [keys.all, keys.default]
    .map((key) => last.get(key))
    .filter((o): o is RpFilterOverride => o !== undefined && o.path !== ours && o.value !== mode);
  const own = last.get(keys.own);
  if (own && own.value > mode) overrides.push(own);
  const order = orderSysctlFiles([...files.map((f) => f.path), ours]);
  return overrides.sort((a, b) => order.indexOf(a.path) - order.indexOf(b.path));
}

/** "PATH sets KEY = V after 99-wireguard.conf: rp_filter will be strict again after a reboot" (or "off", "loose"). */
export function describeOverride(o: RpFilterOverride, ours: string): string {
  const mode = o.value === 1 ? 'strict' : o.value === 0 ? 'off' : o.value === 2 ? 'loose' : `${o.value}`;
  const where = o.key.endsWith('.all.rp_filter') || o.key.endsWith('.default.rp_filter') ? `after ${baseName(ours)}` : 'for the interface';
  return `${o.path} sets ${o.key} = ${o.value} ${where}: rp_filter will be ${mode} again after a reboot`;
}
