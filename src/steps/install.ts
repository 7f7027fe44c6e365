/**
 * Install phase: wireguard-tools everywhere, plus wireguard-go where no kernel module can be loaded.
 * Never the `wireguard` metapackage: on Debian it pulls in DKMS and kernel headers where there is no module.
 */
import type { NodeFacts, PackageManager } from '../facts/node-facts.js';
import type { NodeAction } from '../engine/types.js';
import { shellQuote } from '../remote/shell.js';

/** Package names and install commands per package manager (the only place they are written). */
const PACKAGE_MANAGERS: Record<PackageManager, { tools: string; userspace: string; install: (packages: string[]) => string }> = {
  apt: {
    tools: 'wireguard-tools',
    userspace: 'wireguard-go',
    install: (p) =>
      `export DEBIAN_FRONTEND=noninteractive; apt-get update -qq && apt-get install -y -qq --no-install-recommends ${p.map((name) => shellQuote(name)).join(' ')}`,
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

export interface InstallNeeds {
  packages: string[];
  /** why, per package, for the gate report */
  reasons: string[];
}

export function installNeeds(facts: NodeFacts): InstallNeeds | { error: string } {
  const pm = facts.packageManager;
  if (!pm) return { error: `no supported package manager found (apt, dnf, yum, apk, pacman) on ${facts.os.prettyName || 'this OS'}` };
  const names = PACKAGE_MANAGERS[pm];
  const packages: string[] = [];
  const reasons: string[] = [];
  if (!facts.tools.wg || !facts.tools.wgQuick) {
    packages.push(names.tools);
    reasons.push(`${names.tools}: wg/wg-quick missing`);
  }
  if (facts.kernelModule === 'missing' && !facts.tools.wireguardGo) {
    packages.push(names.userspace);
    reasons.push(`${names.userspace}: no WireGuard kernel module, userspace implementation needed`);
  }
  return { packages, reasons };
}

/** Checks the tools after installing, in the same round trip, so the gate has evidence. */
const TOOLS_PRESENT = 'for t in wg wg-quick; do command -v $t >/dev/null || { echo "missing $t" >&2; exit 1; }; done; wg --version';

/**
 * The install action, or undefined when wg, wg-quick (and wireguard-go where needed) are already there.
 * @throws Error when the node has no supported package manager
 */
export function planInstall(facts: NodeFacts): NodeAction | undefined {
  const needs = installNeeds(facts);
  if ('error' in needs) throw new Error(needs.error);
  if (needs.packages.length === 0) return undefined;
  const pm = facts.packageManager!;
  return {
    changes: [{ kind: 'install', manager: pm, packages: needs.packages, why: needs.reasons }],
    script: `set -e\n${PACKAGE_MANAGERS[pm].install(needs.packages)} >/dev/null\n${TOOLS_PRESENT}`,
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
