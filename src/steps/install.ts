/**
 * Install phase: wireguard-tools everywhere, plus wireguard-go where no kernel module can be loaded.
 * Never the `wireguard` metapackage: on Debian it pulls in DKMS and kernel headers where there is no module.
 */
import type { NodeFacts, PackageManager } from '../facts/node-facts.js';
import type { NodeAction } from '../engine/types.js';
import { shellQuote } from '../remote/shell.js';

/** Package names and install commands per package manager (the only place they are written). */
const PACKAGE_MANAGERS: Record<
  PackageManager,
  { tools: string; userspace: string; install: (packages: string[], reinstall?: boolean) => string }
> = {
  apt: {
    tools: 'wireguard-tools',
    userspace: 'wireguard-go',
    install: (p, reinstall) =>
      `export DEBIAN_FRONTEND=noninteractive; apt-get update -qq && apt-get install -y -qq --no-install-recommends ${reinstall ? '--reinstall ' : ''}${p.map((name) => shellQuote(name)).join(' ')}`,
  },
  dnf: {
    tools: 'wireguard-tools',
    userspace: 'wireguard-go',
    install: (p) => `dnf install -y -q ${p.map((name) => shellQuote(name)).join(' ')}`,
  },
  yum: {
    tools: 'wireguard-tools',
    userspace: 'wireguard-go',
    install: (p) => `yum install -y -q ${p.map((name) => shellQuote(name)).join(' ')}`,
  },
  apk: {
    tools: 'wireguard-tools',
    userspace: 'wireguard-go',
    install: (p) => `apk add --no-cache ${p.map((name) => shellQuote(name)).join(' ')}`,
  },
  pacman: {
    tools: 'wireguard-tools',
    userspace: 'wireguard-go',
    install: (p) => `pacman -Sy --noconfirm --needed ${p.map((name) => shellQuote(name)).join(' ')}`,
  },
};

/** The packages meshctl installs with apt, whose dpkg state the facts probe reads (FACTS.dpkgStatus). */
export const DPKG_PACKAGES: readonly string[] = [PACKAGE_MANAGERS.apt.tools, PACKAGE_MANAGERS.apt.userspace];

/**
 * Whether dpkg left `abbrev` (a value of NodeFacts.dpkgStatus) half done: a package status other than installed (`i`), not
 * installed (`n`) or config-files (`c`), i.e. half-installed, unpacked, half-configured or waiting for triggers, or
 * the reinstall-required flag (dpkg-query(1)). A Ctrl-C during `apt-get install` leaves this with `wg` present.
 */
export const dpkgHalfDone = (abbrev: string): boolean => !/^[uihrp][inc]$/.test(abbrev);

/** dpkg's words for the package status letters of a Status-Abbrev (dpkg-query(1)), for the plan's reasons. */
const DPKG_STATES: Record<string, string> = {
  H: 'half-installed',
  U: 'unpacked',
  F: 'half-configured',
  W: 'triggers-awaited',
  t: 'triggers-pending',
  i: 'installed',
  n: 'not-installed',
  c: 'config-files',
};

export interface InstallNeeds {
  packages: string[];
  /** why, per package, for the gate report */
  reasons: string[];
  /** the packages dpkg left half done (dpkgHalfDone): `dpkg --configure -a` first, then they are reinstalled */
  repair: string[];
}

export function installNeeds(facts: NodeFacts): InstallNeeds | { error: string } {
  const pm = facts.packageManager;
  if (!pm) return { error: `no supported package manager found (apt, dnf, yum, apk, pacman) on ${facts.os.prettyName || 'this OS'}` };
  const names = PACKAGE_MANAGERS[pm];
  const packages: string[] = [];
  const reasons: string[] = [];
  // a Ctrl-C during an earlier install (dpkg's state, not the programs: wg may be there, half configured)
  const repair =
    pm === 'apt'
      ? Object.entries(facts.dpkgStatus ?? {}).filter(([name, abbrev]) => DPKG_PACKAGES.includes(name) && dpkgHalfDone(abbrev))
      : [];
  for (const [name, abbrev] of repair) {
    packages.push(name);
    const flag = abbrev.length > 2 ? ', reinstall required' : '';
    reasons.push(`${name}: dpkg left it ${DPKG_STATES[abbrev[1]!] ?? abbrev}${flag} (${abbrev}): dpkg --configure -a, then reinstalled`);
  }
  if ((!facts.tools.wg || !facts.tools.wgQuick) && !packages.includes(names.tools)) {
    packages.push(names.tools);
    reasons.push(`${names.tools}: wg/wg-quick missing`);
  }
  if (facts.kernelModule === 'missing' && !facts.tools.wireguardGo && !packages.includes(names.userspace)) {
    packages.push(names.userspace);
    reasons.push(`${names.userspace}: no WireGuard kernel module, userspace implementation needed`);
  }
  return { packages, reasons, repair: repair.map(([name]) => name) };
}

/**
 * What an interrupted dpkg run needs before apt runs again (apt-get refuses with "dpkg was interrupted, you must
 * manually run 'dpkg --configure -a'"): the unpacked and half-configured packages configured. A half-installed one is
 * left to the reinstall that follows (`apt-get install --reinstall`).
 */
const DPKG_REPAIR = 'export DEBIAN_FRONTEND=noninteractive; dpkg --configure -a >/dev/null';

/** Checks the tools after installing, in the same round trip, so the gate has evidence. */
const TOOLS_PRESENT = 'for t in wg wg-quick; do command -v $t >/dev/null || { echo "missing $t" >&2; exit 1; }; done; wg --version';

/**
 * The install action, or undefined when wg, wg-quick (and wireguard-go where needed) are already there and dpkg left
 * none of its packages half done (InstallNeeds.repair: then `dpkg --configure -a` runs first, and the install
 * reinstalls them).
 * @throws Error when the node has no supported package manager
 */
export function planInstall(facts: NodeFacts): NodeAction | undefined {
  const needs = installNeeds(facts);
  if ('error' in needs) throw new Error(needs.error);
  if (needs.packages.length === 0) return undefined;
  const pm = facts.packageManager!;
  const repair = needs.repair.length > 0;
  return {
    changes: [{ kind: 'install', manager: pm, packages: needs.packages, why: needs.reasons, ...(repair ? { repair: needs.repair } : {}) }],
    script: `set -e\n${repair ? `${DPKG_REPAIR}\n` : ''}${PACKAGE_MANAGERS[pm].install(needs.packages, repair)} >/dev/null\n${TOOLS_PRESENT}`,
    timeoutMs: 300_000,
  };
}

/** The tools after an install: what the facts said, plus what the action installed (its script fails otherwise). */
export function toolsAfterInstall(facts: NodeFacts, action: NodeAction | undefined): NodeFacts['tools'] {
  const installed = action?.changes.flatMap((c) => (c.kind === 'install' ? c.packages : [])) ?? [];
  if (installed.length === 0) return facts.tools;
  const userspace = installed.includes(PACKAGE_MANAGERS[facts.packageManager!].userspace);
  return { ...facts.tools, wg: true, wgQuick: true, wireguardGo: facts.tools.wireguardGo || userspace };
}
