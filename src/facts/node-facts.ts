/**
 * The read-only facts probe `up` runs once per node: one round trip that gathers everything the phases plan
 * from (pyinfra style: facts in, only the commands needed to close the gap out).
 *
 * Private keys: the probe never prints one. It reports whether the key file exists and derives the public
 * key on the node (`wg pubkey < key`), so only the public half crosses the wire.
 *
 * The script and its parser are composed from the shared fact definitions (./definitions.ts), the same ones verify's
 * checklist and debug read: every fact is a named section, never a line position.
 */
import {
  FACTS,
  factsScript,
  readFact,
  udpDropRules,
  type FactContext,
  type FactDef,
  type DpkgStatus,
  type OperatorAddress,
  type PublicKeyFileState,
  type ReresolveState,
  type WireGuardFileMode,
  type WireGuardInterfaceFacts,
} from './definitions.js';
import { splitSections, type Section } from './sections.js';
import { LEAN_FACTS } from './lean.js';
import type { SysctlFileSettings } from './sysctl-order.js';
import type { LivePeer } from '../render/wgdump.js';
import type { FirewallFacts } from '../firewall/verdict.js';

/** The interface and listen port the probe asks about (a FactContext). */
export type ProbeTarget = FactContext;

export { wireguardPaths } from '../remote/wireguard.js';

export type PackageManager = 'apt' | 'dnf' | 'yum' | 'apk' | 'pacman';

export interface NodeFacts {
  uid: number;
  hostname: string;
  os: { id: string; versionId: string; idLike: string[]; prettyName: string };
  packageManager?: PackageManager;
  systemd: boolean;
  /** 'loaded': in the kernel now; 'available': loadable module on disk; 'missing': userspace (wireguard-go) needed */
  kernelModule: 'loaded' | 'available' | 'missing';
  tools: { wg: boolean; wgQuick: boolean; wireguardGo: boolean; tcpdump: boolean; ping: boolean };
  /**
   * dpkg's state of the packages meshctl installs with apt (FACTS.dpkgStatus; ../steps/install.ts repairs one left half
   * done); undefined when not probed (older captures), empty without dpkg.
   */
  dpkgStatus?: DpkgStatus;
  /** every network interface name on the node */
  interfaces: string[];
  /** interfaces WireGuard knows about (`wg show interfaces`), kernel or userspace */
  wireguardInterfaces: string[];
  /**
   * Every WireGuard interface with its listen port, addresses, routes and AllowedIPs (FACTS.wireguardInterfaceDetails):
   * the baseline judges a foreign one by what it would clash with. Undefined when not probed (older captures).
   */
  wireguardDetails?: WireGuardInterfaceFacts[];
  /** *.conf files in /etc/wireguard */
  wireguardConfigs: string[];
  config: {
    exists: boolean;
    sha256?: string;
    /** the file with every line that may hold a private or preshared key removed on the node (SECRET_LINE_ERE) */
    text?: string;
    hasPrivateKeyLine: boolean;
    /** a PresharedKey line (absent: not read, e.g. a fixture of an older probe) */
    hasPresharedKeyLine?: boolean;
    managedByMeshctl: boolean;
  };
  keys: {
    privateKeyExists: boolean;
    privateKeyMode?: string;
    publicKey?: string;
    /** whether IFACE.pub holds the public half of the key file, compared on the node (the file never leaves it) */
    publicKeyFile?: PublicKeyFileState;
  };
  /**
   * Owner and mode of /etc/wireguard, IFACE.key, IFACE.pub and IFACE.conf, those that exist (FACTS.wireguardFiles: the
   * same stat as the key's mode); judged by the baseline check `wireguard-file-modes` (../checks/file-modes.ts).
   * Undefined when not probed (older captures).
   */
  wireguardFiles?: WireGuardFileMode[];
  sysctl: {
    fileSha256?: string;
    rpFilterAll?: number;
    rpFilterDefault?: number;
    /** net.ipv4.conf.IFACE.rp_filter; undefined while the interface does not exist */
    rpFilterInterface?: number;
    /** the sysctl files that set rp_filter for all, default or the interface (FACTS.rpFilterSysctlFiles); unordered */
    rpFilterFiles?: SysctlFileSettings[];
  };
  service: {
    /** `systemctl is-enabled wg-quick@IFACE`; 'unknown' when it printed nothing (no unit file) or without systemd */
    enabled: string;
    /** `systemctl is-active wg-quick@IFACE`; 'unknown' when it printed nothing or without systemd */
    active: string;
    /** sha256 of meshctl's drop-in that keeps the key through `systemctl reload` (../render/systemd.ts) */
    reloadDropInSha256?: string;
  };
  /** the public half of the key the interface runs with; undefined when it has none (or does not exist) */
  interfacePublicKey?: string;
  /** ifindex of the WireGuard interface when it exists (a restart changes it) */
  interfaceIndex?: number;
  /** destinations routed via the WireGuard interface, as `ip route show` prints them (host routes without /32) */
  interfaceRoutes: string[];
  /** processes/sockets bound to the listen port, as `ss` prints them */
  listenPortUsers: string[];
  /** meshctl's re-resolve timer for peers dialled by name (FACTS.reresolve); undefined when not probed */
  reresolve?: ReresolveState;
  /** the node's clock, Unix seconds, when the probe ran (handshake ages are judged against it) */
  now?: number;
  /** the interface's live peers (`wg show IFACE dump`, preshared keys masked); empty when it does not exist */
  peers: LivePeer[];
  /** the operator's address as the node sees it ($SSH_CONNECTION); undefined when the node did not say */
  operatorAddress?: OperatorAddress;
  /**
   * The live [Interface] settings (`ip -j addr show dev IFACE`, `wg show IFACE listen-port`); undefined when the
   * interface does not exist or was not probed. `up` compares them, and the peers, with the design.
   */
  live?: LiveInterfaceFacts;
  baseline: {
    /** `ip rule`s beyond the three defaults (local, main, default) */
    extraIpRules: string[];
    leftoverPaths: string[];
    leftoverUnits: string[];
    leftoverInterfaces: string[];
    /** firewall rules (iptables-save / nft) that drop or reject incoming UDP to the listen port (udpDropRules) */
    firewallDrops: string[];
    /** the whole ruleset (FACTS.firewallRuleset), judged by ../firewall/verdict.ts; undefined when not probed */
    firewallRuleset?: FirewallFacts;
  };
}

/** What the running interface holds, as opposed to what its file says (NodeFacts.live). */
export interface LiveInterfaceFacts {
  /** link MTU in bytes */
  mtu?: number;
  /** IPv4 addresses with prefix, e.g. 172.27.15.12/32 */
  addresses: string[];
  /** those of `addresses` set with a peer (../facts/definitions.ts IfaceAddr.pointToPoint) */
  pointToPoint?: string[];
  /** UDP port WireGuard listens on; undefined when wg could not read the interface */
  listenPort?: number;
  /** `wg show IFACE` worked: only then are `peers` the interface's peers (and not an error read as none) */
  wgReadable: boolean;
  /** net.ipv4.conf.IFACE.forwarding, 0 or 1 (FACTS.interfaceForwarding); undefined when not read */
  forwarding?: number;
}

export { LEFTOVER_PATHS } from './definitions.js';

const LEFTOVER_INTERFACE = /^(cni\d*|flannel\.\d+|cali[0-9a-f]+|cilium_\w+|vxlan\.calico|kube-ipvs0|tunl0|weave|kube-bridge)$/;
const DEFAULT_IP_RULE = /^(0|32766|32767):\s+from all lookup (local|main|default)\s*$/;

/**
 * The iptables rules of the ruleset fact (legacy and nf_tables parts, as iptables-save prints them): what the older
 * `firewall` section gave up's firewallDrops, now without a second run of iptables-save and nft. Rules written in
 * nft's own syntax are judged from the same fact by ../firewall/verdict.ts (the baseline's no-firewall-drop check).
 */
function iptablesRuleLines(ruleset: FirewallFacts | undefined): string[] {
  return [ruleset?.legacy, ruleset?.iptablesNft].flatMap((part) => (part ?? '').split('\n')).filter((line) => line.startsWith('-A '));
}

/**
 * The facts up reads, in script order (each one a named section; see ./definitions.ts). Issue 10: where ./lean.ts
 * has a leaner command for a fact (one `wg`, one `stat`, one `sha256sum`, one `ip`, one awk for the clock and the small
 * files per probe), up's probe runs that one.
 */
const UP_FACTS: ReadonlyArray<FactDef<unknown>> = [
  FACTS.now,
  FACTS.uid,
  FACTS.hostname,
  FACTS.os,
  FACTS.packageManagers,
  FACTS.systemd,
  FACTS.kernelModule,
  FACTS.tools,
  FACTS.dpkgStatus,
  FACTS.interfaces,
  FACTS.wireguardInterfaces,
  FACTS.wireguardConfigs,
  FACTS.configMeta,
  FACTS.configText,
  FACTS.keyFile,
  FACTS.publicKeyFileState,
  FACTS.wireguardFiles,
  FACTS.sysctlFileSha256,
  FACTS.rpFilter,
  FACTS.rpFilterSysctlFiles,
  FACTS.service,
  FACTS.reloadDropInSha256,
  FACTS.interfaceIndex,
  FACTS.interfacePublicKey,
  FACTS.peers,
  FACTS.interfaceRoutes,
  FACTS.listenPortUsers,
  FACTS.interfaceAddr,
  FACTS.interfaceListenPort,
  FACTS.interfaceForwarding,
  FACTS.ipRules,
  FACTS.leftoverPaths,
  FACTS.leftoverUnits,
  // no FACTS.firewall (iptables-save, nft and grep: three execs; issue 10): firewallDrops is read from fwrules
  FACTS.firewallRuleset,
  FACTS.operatorAddress,
  FACTS.wireguardInterfaceDetails,
  FACTS.reresolve,
].map((def) => Object.values(LEAN_FACTS).find((l) => l.name === def.name) ?? def);

/** The shared definitions of up's probe, without ./lean.ts: what the probe ran before (test/unit/facts-lean.test.ts). */
export const factsProbeScriptShared = (target: ProbeTarget): string =>
  factsScript(
    UP_FACTS.map((def) => Object.values(FACTS).find((f) => f.name === def.name) as FactDef<unknown>),
    target,
  );

/**
 * The live [Interface] facts, or undefined when the interface does not exist or the probe did not read it (facts
 * captured before these sections existed): nothing is compared with the design then.
 */
function liveInterface(s: Map<string, Section>, target: ProbeTarget, exists: boolean): LiveInterfaceFacts | undefined {
  const addr = readFact(FACTS.interfaceAddr, s, target);
  if (!exists || !addr.exists || !s.has(FACTS.interfaceListenPort.name)) return undefined;
  const listenPort = readFact(FACTS.interfaceListenPort, s, target);
  const forwarding = s.has(FACTS.interfaceForwarding.name) ? readFact(FACTS.interfaceForwarding, s, target) : undefined;
  return {
    ...(addr.mtu !== undefined ? { mtu: addr.mtu } : {}),
    addresses: addr.addresses,
    ...(addr.pointToPoint.length ? { pointToPoint: addr.pointToPoint } : {}),
    ...(listenPort !== undefined ? { listenPort } : {}),
    wgReadable: s.get(FACTS.interfaceListenPort.name)?.rc === 0,
    ...(forwarding !== undefined ? { forwarding } : {}),
  };
}

/** How many times factsProbeScript composed a script (the cache below answers the rest; test/unit/facts-script-cache.test.ts). */
export const factsScriptBuilds = { count: 0 };
/** Scripts by interface and listen port; cleared when it holds this many (a mesh of many distinct ports). */
const SCRIPT_CACHE_MAX = 16;
const scripts = new Map<string, string>();

/**
 * The read-only script of up's facts probe for `target` (one round trip). Issue 10: it is the same text for every
 * node with the same interface and listen port (all of a usual mesh), and composing it from ~40 definitions was
 * ~2 ms of meshctl's CPU per node per run (16 nodes: 35-45 ms of a second `up`'s ~1 s), so it is composed once per
 * (interface, listen port) and kept.
 */
export function factsProbeScript(target: ProbeTarget): string {
  const key = `${target.interface}\u0000${target.listenPort}`;
  const known = scripts.get(key);
  if (known !== undefined) return known;
  factsScriptBuilds.count++;
  const script = factsScript(UP_FACTS, target);
  if (scripts.size >= SCRIPT_CACHE_MAX) scripts.clear();
  scripts.set(key, script);
  return script;
}

/**
 * Reads the facts probe's stdout. Throws when the output stops before the script's end (a cut connection): facts
 * read from half an output would plan wrong changes.
 */
export function parseFactsProbe(stdout: string, target: ProbeTarget): NodeFacts {
  const s = splitSections(stdout);
  if (s.get('end')?.rc !== 0) throw new Error('facts probe output is incomplete (the script did not run to its end)');
  const fact = <T>(def: FactDef<T>) => readFact(def, s, target);
  const pmName = fact(FACTS.packageManagers)[0];
  const packageManager = pmName === 'apt-get' ? 'apt' : (pmName as PackageManager | undefined);
  const tools = new Set(fact(FACTS.tools));
  const interfaces = fact(FACTS.interfaces);
  const meta = fact(FACTS.configMeta);
  const configText = meta.exists ? (fact(FACTS.configText) ?? '') : undefined;
  const keyFile = fact(FACTS.keyFile);
  const rp = fact(FACTS.rpFilter);
  const service = fact(FACTS.service);
  const now = fact(FACTS.now);
  const ifindex = fact(FACTS.interfaceIndex);
  const operatorAddress = fact(FACTS.operatorAddress);
  const live = liveInterface(s, target, interfaces.includes(target.interface));
  const wireguardDetails = fact(FACTS.wireguardInterfaceDetails);
  const firewallRuleset = fact(FACTS.firewallRuleset);
  const dpkgStatus = fact(FACTS.dpkgStatus);
  return {
    uid: fact(FACTS.uid),
    hostname: fact(FACTS.hostname),
    os: fact(FACTS.os),
    packageManager,
    systemd: fact(FACTS.systemd),
    kernelModule: fact(FACTS.kernelModule),
    tools: {
      wg: tools.has('wg'),
      wgQuick: tools.has('wg-quick'),
      wireguardGo: tools.has('wireguard-go'),
      tcpdump: tools.has('tcpdump'),
      ping: tools.has('ping'),
    },
    ...(dpkgStatus ? { dpkgStatus } : {}),
    interfaces,
    wireguardInterfaces: fact(FACTS.wireguardInterfaces),
    ...(wireguardDetails ? { wireguardDetails } : {}),
    wireguardConfigs: fact(FACTS.wireguardConfigs),
    config: {
      exists: meta.exists,
      sha256: meta.sha256,
      text: configText,
      hasPrivateKeyLine: meta.privateKeyLines > 0,
      hasPresharedKeyLine: meta.presharedKeyLines > 0,
      managedByMeshctl: configText?.includes('Managed by meshctl') ?? false,
    },
    keys: {
      privateKeyExists: keyFile.exists,
      privateKeyMode: keyFile.mode,
      publicKey: keyFile.publicKey,
      publicKeyFile: fact(FACTS.publicKeyFileState),
    },
    ...(s.has(FACTS.wireguardFiles.name) ? { wireguardFiles: fact(FACTS.wireguardFiles) } : {}),
    sysctl: {
      fileSha256: fact(FACTS.sysctlFileSha256),
      rpFilterAll: rp.all,
      rpFilterDefault: rp.default,
      rpFilterInterface: rp.iface,
      rpFilterFiles: fact(FACTS.rpFilterSysctlFiles),
    },
    service: {
      enabled: service.enabled ?? 'unknown',
      active: service.active ?? 'unknown',
      reloadDropInSha256: fact(FACTS.reloadDropInSha256),
    },
    interfacePublicKey: fact(FACTS.interfacePublicKey),
    interfaceIndex: ifindex,
    interfaceRoutes: fact(FACTS.interfaceRoutes),
    listenPortUsers: fact(FACTS.listenPortUsers),
    ...(s.has(FACTS.reresolve.name) ? { reresolve: fact(FACTS.reresolve) } : {}),
    ...(now !== undefined ? { now } : {}),
    ...(operatorAddress !== undefined ? { operatorAddress } : {}),
    // a missing interface makes wg print an error, never a peer line
    peers: interfaces.includes(target.interface) ? fact(FACTS.peers).peers : [],
    ...(live ? { live } : {}),
    baseline: {
      extraIpRules: fact(FACTS.ipRules).filter((rule) => !DEFAULT_IP_RULE.test(rule)),
      leftoverPaths: fact(FACTS.leftoverPaths),
      leftoverUnits: fact(FACTS.leftoverUnits),
      leftoverInterfaces: interfaces.filter((name) => LEFTOVER_INTERFACE.test(name)),
      firewallDrops: udpDropRules(
        s.has(FACTS.firewall.name) ? fact(FACTS.firewall) : iptablesRuleLines(firewallRuleset),
        target.listenPort,
      ),
      ...(firewallRuleset ? { firewallRuleset } : {}),
    },
  };
}
