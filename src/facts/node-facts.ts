/**
 * The read-only facts probe `up` runs once per node: one round trip that gathers everything the phases plan
 * from (pyinfra style: facts in, only the commands needed to close the gap out).
 *
 * Private keys: the probe never prints one. It reports whether the key file exists and derives the public
 * key on the node (`wg pubkey < key`), so only the public half crosses the wire.
 */
import { shellQuote } from '../transport/types.js';
import { PATH_PRELUDE, sectionScript, splitSections, type Section } from '../checks/probes.js';
import { wireguardPaths } from '../remote/wireguard.js';
import { looksLikeWireGuardKey } from '../topology/desired.js';

export interface ProbeTarget {
  interface: string;
  listenPort: number;
}

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
  /** every network interface name on the node */
  interfaces: string[];
  /** interfaces WireGuard knows about (`wg show interfaces`), kernel or userspace */
  wireguardInterfaces: string[];
  /** *.conf files in /etc/wireguard */
  wireguardConfigs: string[];
  config: {
    exists: boolean;
    sha256?: string;
    /** the file with any PrivateKey line removed on the node */
    text?: string;
    hasPrivateKeyLine: boolean;
    managedByMeshctl: boolean;
  };
  keys: { privateKeyExists: boolean; privateKeyMode?: string; publicKey?: string };
  sysctl: { fileSha256?: string; rpFilterAll?: number; rpFilterDefault?: number };
  service: {
    enabled: string;
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
  baseline: {
    /** `ip rule`s beyond the three defaults (local, main, default) */
    extraIpRules: string[];
    leftoverPaths: string[];
    leftoverUnits: string[];
    leftoverInterfaces: string[];
    /** firewall lines (iptables-save / nft) that drop or reject traffic on the listen port */
    firewallDrops: string[];
  };
}

/** Directories and units left by Kubernetes distributions and CNIs that break a clean mesh (runbook "pristine"). */
export const LEFTOVER_PATHS = [
  '/etc/cni',
  '/var/lib/cni',
  '/etc/rancher',
  '/var/lib/rancher',
  '/var/lib/calico',
  '/etc/calico',
  '/run/flannel',
];
const LEFTOVER_UNIT_GLOBS = ['k3s*', 'rke2*', 'calico*', 'flannel*', 'cilium*', 'kubelet*'];
const LEFTOVER_INTERFACE = /^(cni\d*|flannel\.\d+|cali[0-9a-f]+|cilium_\w+|vxlan\.calico|kube-ipvs0|tunl0|weave|kube-bridge)$/;

export function factsProbeScript(target: ProbeTarget): string {
  const p = wireguardPaths(target.interface);
  const iface = shellQuote(target.interface);
  return [
    PATH_PRELUDE,
    sectionScript('uid', 'id -u'),
    sectionScript('hostname', 'hostname'),
    sectionScript(
      'os',
      '[ -r /etc/os-release ] && . /etc/os-release; printf "%s\\n%s\\n%s\\n%s\\n" "${ID:-}" "${VERSION_ID:-}" "${ID_LIKE:-}" "${PRETTY_NAME:-}"',
    ),
    sectionScript('pm', 'for pm in apt-get dnf yum apk pacman; do command -v $pm >/dev/null 2>&1 && echo $pm; done; true'),
    sectionScript('systemd', '[ -d /run/systemd/system ] && echo yes || echo no'),
    sectionScript(
      'module',
      '[ -d /sys/module/wireguard ] && echo loaded || { modinfo wireguard >/dev/null 2>&1 && echo available || echo missing; }',
    ),
    sectionScript('tools', 'for t in wg wg-quick wireguard-go tcpdump ping; do command -v $t >/dev/null 2>&1 && echo $t; done; true'),
    sectionScript('interfaces', 'ls /sys/class/net'),
    sectionScript('wginterfaces', 'command -v wg >/dev/null 2>&1 && wg show interfaces 2>/dev/null | tr " " "\\n"; true'),
    sectionScript('wgconfigs', `ls ${p.dir} 2>/dev/null | grep '\\.conf$'; true`),
    sectionScript(
      'config',
      `if [ -f ${p.config} ]; then sha256sum < ${p.config} | cut -d" " -f1; grep -ci '^[[:space:]]*PrivateKey' ${p.config}; echo; grep -vi '^[[:space:]]*PrivateKey' ${p.config}; fi; true`,
    ),
    sectionScript(
      'keys',
      `if [ -s ${p.privateKey} ]; then stat -c %a ${p.privateKey}; command -v wg >/dev/null 2>&1 && wg pubkey < ${p.privateKey}; fi; true`,
    ),
    sectionScript(
      'sysctl',
      `{ [ -f ${p.sysctl} ] && sha256sum < ${p.sysctl} | cut -d" " -f1 || echo -; }; cat /proc/sys/net/ipv4/conf/all/rp_filter /proc/sys/net/ipv4/conf/default/rp_filter 2>/dev/null`,
    ),
    sectionScript(
      'service',
      `if [ -d /run/systemd/system ]; then systemctl is-enabled ${p.service} 2>/dev/null; systemctl is-active ${p.service} 2>/dev/null; fi; true`,
    ),
    sectionScript('dropin', `[ -f ${p.reloadDropIn} ] && sha256sum < ${p.reloadDropIn} | cut -d" " -f1; true`),
    sectionScript('ifindex', `cat /sys/class/net/${iface}/ifindex 2>/dev/null; true`),
    sectionScript(
      'livekey',
      `[ -e /sys/class/net/${iface} ] && command -v wg >/dev/null 2>&1 && wg show ${iface} public-key 2>/dev/null; true`,
    ),
    sectionScript('routes', `[ -e /sys/class/net/${iface} ] && ip -4 route show dev ${iface} | cut -d' ' -f1; true`),
    sectionScript('port', `ss -Hulpn 'sport = :${target.listenPort}' 2>/dev/null; true`),
    sectionScript('iprules', 'ip -4 rule show'),
    sectionScript('leftoverpaths', `for d in ${LEFTOVER_PATHS.join(' ')}; do [ -e "$d" ] && echo "$d"; done; true`),
    sectionScript(
      'leftoverunits',
      `[ -d /run/systemd/system ] && systemctl list-unit-files --no-legend ${LEFTOVER_UNIT_GLOBS.map(shellQuote).join(' ')} 2>/dev/null | cut -d" " -f1; true`,
    ),
    sectionScript(
      'firewall',
      `{ iptables-save 2>/dev/null; nft list ruleset 2>/dev/null; } | grep -Ei 'dport[ =]+${target.listenPort}\\b|dports.*\\b${target.listenPort}\\b' | grep -Ei 'drop|reject'; true`,
    ),
    sectionScript('end', 'true'),
  ].join('\n');
}

const nonEmpty = (section: Section | undefined) =>
  linesOf(section)
    .map((l) => l.trim())
    .filter(Boolean);
const linesOf = (section: Section | undefined) => (section?.body ? section.body.split('\n') : []);
const DEFAULT_IP_RULE = /^(0|32766|32767):\s+from all lookup (local|main|default)\s*$/;

export function parseFactsProbe(stdout: string, _target: ProbeTarget): NodeFacts {
  const s = splitSections(stdout);
  if (s.get('end')?.rc !== 0) throw new Error('facts probe output is incomplete (the script did not run to its end)');
  const [id = '', versionId = '', idLike = '', prettyName = ''] = linesOf(s.get('os'));
  const pms = nonEmpty(s.get('pm'));
  const pmName = pms[0];
  const packageManager = pmName === 'apt-get' ? 'apt' : (pmName as PackageManager | undefined);
  const tools = new Set(nonEmpty(s.get('tools')));
  const interfaces = nonEmpty(s.get('interfaces'));

  const configLines = linesOf(s.get('config'));
  const configExists = configLines.length > 0 && /^[0-9a-f]{64}$/.test(configLines[0]!.trim());
  // the section body lost its trailing newlines; a wg-quick file written by meshctl ends with exactly one
  const configText = configExists ? `${configLines.slice(3).join('\n')}\n` : undefined;

  const keyLines = nonEmpty(s.get('keys'));
  const sysctlLines = nonEmpty(s.get('sysctl'));
  const serviceLines = nonEmpty(s.get('service'));
  const ipRules = nonEmpty(s.get('iprules'));
  const ifindex = nonEmpty(s.get('ifindex'))[0];

  return {
    uid: Number(nonEmpty(s.get('uid'))[0] ?? NaN),
    hostname: nonEmpty(s.get('hostname'))[0] ?? '',
    os: { id, versionId, idLike: idLike.split(/\s+/).filter(Boolean), prettyName },
    packageManager,
    systemd: nonEmpty(s.get('systemd'))[0] === 'yes',
    kernelModule: (nonEmpty(s.get('module'))[0] ?? 'missing') as NodeFacts['kernelModule'],
    tools: {
      wg: tools.has('wg'),
      wgQuick: tools.has('wg-quick'),
      wireguardGo: tools.has('wireguard-go'),
      tcpdump: tools.has('tcpdump'),
      ping: tools.has('ping'),
    },
    interfaces,
    wireguardInterfaces: nonEmpty(s.get('wginterfaces')),
    wireguardConfigs: nonEmpty(s.get('wgconfigs')),
    config: {
      exists: configExists,
      sha256: configExists ? configLines[0]!.trim() : undefined,
      text: configText,
      hasPrivateKeyLine: configExists && Number(configLines[1]) > 0,
      managedByMeshctl: configText?.includes('Managed by meshctl') ?? false,
    },
    keys: {
      privateKeyExists: keyLines.length > 0,
      privateKeyMode: keyLines[0],
      publicKey: keyLines[1],
    },
    sysctl: {
      fileSha256: sysctlLines[0] === '-' ? undefined : sysctlLines[0],
      rpFilterAll: sysctlLines[1] === undefined ? undefined : Number(sysctlLines[1]),
      rpFilterDefault: sysctlLines[2] === undefined ? undefined : Number(sysctlLines[2]),
    },
    service: {
      enabled: serviceLines[0] ?? 'unknown',
      active: serviceLines[1] ?? 'unknown',
      reloadDropInSha256: nonEmpty(s.get('dropin'))[0],
    },
    interfacePublicKey: nonEmpty(s.get('livekey')).find(looksLikeWireGuardKey),
    interfaceIndex: ifindex === undefined ? undefined : Number(ifindex),
    interfaceRoutes: nonEmpty(s.get('routes')),
    listenPortUsers: nonEmpty(s.get('port')),
    baseline: {
      extraIpRules: ipRules.filter((rule) => !DEFAULT_IP_RULE.test(rule)),
      leftoverPaths: nonEmpty(s.get('leftoverpaths')),
      leftoverUnits: nonEmpty(s.get('leftoverunits')),
      leftoverInterfaces: interfaces.filter((name) => LEFTOVER_INTERFACE.test(name)),
      firewallDrops: nonEmpty(s.get('firewall')),
    },
  };
}
