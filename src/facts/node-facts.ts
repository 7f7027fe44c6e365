/**
 * The read-only facts probe `up` runs once per node: one round trip that gathers everything the phases plan
 * from (pyinfra style: facts in, only the commands needed to close the gap out).
 *
 * Private keys: the probe never prints one. It reports whether the key file exists and derives the public
 * key on the node (`wg pubkey < key`), so only the public half crosses the wire.
 */
import { shellQuote } from '../transport/types.js';

export interface ProbeTarget {
  interface: string;
  listenPort: number;
}

export const wireguardPaths = (iface: string) => ({
  dir: '/etc/wireguard',
  config: `/etc/wireguard/${iface}.conf`,
  privateKey: `/etc/wireguard/${iface}.key`,
  publicKey: `/etc/wireguard/${iface}.pub`,
  sysctl: '/etc/sysctl.d/99-wireguard.conf',
  service: `wg-quick@${iface}`,
});

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
  service: { enabled: string; active: string };
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

/** Marker that separates the probe's sections; chosen so no tool prints it. */
const MARK = '@@meshctl:';

/** Directories and units left by Kubernetes distributions and CNIs that break a clean mesh (runbook "pristine"). */
export const LEFTOVER_PATHS = ['/etc/cni', '/var/lib/cni', '/etc/rancher', '/var/lib/rancher', '/var/lib/calico', '/etc/calico', '/run/flannel'];
const LEFTOVER_UNIT_GLOBS = ['k3s*', 'rke2*', 'calico*', 'flannel*', 'cilium*', 'kubelet*'];
const LEFTOVER_INTERFACE = /^(cni\d*|flannel\.\d+|cali[0-9a-f]+|cilium_\w+|vxlan\.calico|kube-ipvs0|tunl0|weave|kube-bridge)$/;

export function factsProbeScript(target: ProbeTarget): string {
  const p = wireguardPaths(target.interface);
  const iface = shellQuote(target.interface);
  const section = (name: string) => `echo '${MARK}${name}'`;
  return [
    'export LC_ALL=C PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
    section('uid'), 'id -u',
    section('hostname'), 'hostname',
    section('os'), '[ -r /etc/os-release ] && . /etc/os-release; printf "%s\\n%s\\n%s\\n%s\\n" "${ID:-}" "${VERSION_ID:-}" "${ID_LIKE:-}" "${PRETTY_NAME:-}"',
    section('pm'), 'for pm in apt-get dnf yum apk pacman; do command -v $pm >/dev/null 2>&1 && echo $pm; done',
    section('systemd'), '[ -d /run/systemd/system ] && echo yes || echo no',
    section('module'),
    '[ -d /sys/module/wireguard ] && echo loaded || { modinfo wireguard >/dev/null 2>&1 && echo available || echo missing; }',
    section('tools'), 'for t in wg wg-quick wireguard-go tcpdump ping; do command -v $t >/dev/null 2>&1 && echo $t; done',
    section('interfaces'), 'ls /sys/class/net',
    section('wginterfaces'), 'command -v wg >/dev/null 2>&1 && wg show interfaces 2>/dev/null | tr " " "\\n"',
    section('wgconfigs'), `ls ${p.dir} 2>/dev/null | grep '\\.conf$'`,
    section('config'),
    `if [ -f ${p.config} ]; then sha256sum < ${p.config} | cut -d" " -f1; grep -ci '^[[:space:]]*PrivateKey' ${p.config}; echo; grep -vi '^[[:space:]]*PrivateKey' ${p.config}; fi`,
    section('keys'),
    `if [ -s ${p.privateKey} ]; then stat -c %a ${p.privateKey}; command -v wg >/dev/null 2>&1 && wg pubkey < ${p.privateKey}; fi`,
    section('sysctl'),
    `[ -f ${p.sysctl} ] && sha256sum < ${p.sysctl} | cut -d" " -f1 || echo -; cat /proc/sys/net/ipv4/conf/all/rp_filter /proc/sys/net/ipv4/conf/default/rp_filter 2>/dev/null`,
    section('service'),
    `if [ -d /run/systemd/system ]; then systemctl is-enabled ${p.service} 2>/dev/null || true; systemctl is-active ${p.service} 2>/dev/null || true; fi`,
    section('ifindex'), `cat /sys/class/net/${iface}/ifindex 2>/dev/null`,
    section('routes'), `[ -e /sys/class/net/${iface} ] && ip -4 route show dev ${iface} | cut -d' ' -f1`,
    section('port'), `ss -Hulpn 'sport = :${target.listenPort}' 2>/dev/null`,
    section('iprules'), 'ip -4 rule show',
    section('leftoverpaths'), `for d in ${LEFTOVER_PATHS.join(' ')}; do [ -e "$d" ] && echo "$d"; done`,
    section('leftoverunits'),
    `[ -d /run/systemd/system ] && systemctl list-unit-files --no-legend ${LEFTOVER_UNIT_GLOBS.map(shellQuote).join(' ')} 2>/dev/null | cut -d" " -f1`,
    section('firewall'),
    `{ iptables-save 2>/dev/null; nft list ruleset 2>/dev/null; } | grep -Ei 'dport[ =]+${target.listenPort}\\b|dports.*\\b${target.listenPort}\\b' | grep -Ei 'drop|reject'`,
    section('end'),
    'true',
  ].join('\n');
}

function splitSections(stdout: string): Map<string, string[]> {
  const sections = new Map<string, string[]>();
  let current: string[] | undefined;
  for (const line of stdout.split('\n')) {
    if (line.startsWith(MARK)) {
      current = [];
      sections.set(line.slice(MARK.length), current);
    } else if (current) current.push(line);
  }
  return sections;
}

const nonEmpty = (lines: string[] | undefined) => (lines ?? []).map((l) => l.trim()).filter(Boolean);
const DEFAULT_IP_RULE = /^(0|32766|32767):\s+from all lookup (local|main|default)\s*$/;

export function parseFactsProbe(stdout: string, target: ProbeTarget): NodeFacts {
  const s = splitSections(stdout);
  if (!s.has('end')) throw new Error('facts probe output is incomplete (the script did not run to its end)');
  const [id = '', versionId = '', idLike = '', prettyName = ''] = s.get('os') ?? [];
  const pms = nonEmpty(s.get('pm'));
  const pmName = pms[0];
  const packageManager = pmName === 'apt-get' ? 'apt' : (pmName as PackageManager | undefined);
  const tools = new Set(nonEmpty(s.get('tools')));
  const interfaces = nonEmpty(s.get('interfaces'));

  const configLines = s.get('config') ?? [];
  const configExists = configLines.length > 0 && /^[0-9a-f]{64}$/.test(configLines[0]!.trim());
  const configText = configExists ? configLines.slice(3).join('\n').replace(/\n+$/, '\n') : undefined;

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
    tools: { wg: tools.has('wg'), wgQuick: tools.has('wg-quick'), wireguardGo: tools.has('wireguard-go'), tcpdump: tools.has('tcpdump'), ping: tools.has('ping') },
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
    service: { enabled: serviceLines[0] ?? 'unknown', active: serviceLines[1] ?? 'unknown' },
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
