/**
 * The inventory file format, written once as data (a Spec, see src/schema/spec.ts): field types, ranges,
 * defaults and a description per field. The loader checks files against it (`checkSpec`: every problem at its
 * exact line:col, with a did-you-mean) and schema/inventory.schema.json is derived from it (./jsonSchema.ts).
 * Rules that involve more than one field (duplicates, overlaps, reachability) live in ./semantic.ts.
 */
import { isIPv6 } from 'node:net';
import { isIpv4, parseCidrDetailed } from '../net/ipv4.js';
import { publicIpv6Problem } from '../net/ipv6.js';
import type { Spec, StringFormat } from '../schema/spec.js';

export { checkSpec, type Spec, type StringFormat } from '../schema/spec.js';

type Common = Pick<Spec, 'description' | 'examples' | 'default' | 'required'>;

// --- string formats ---------------------------------------------------------------------------------------

const OCTET = '(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])';
const IPV4_PATTERN = `${OCTET}\\.${OCTET}\\.${OCTET}\\.${OCTET}`;
const LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
/** The words of `relay:`; any other value names a relay node (src/topology/paths.ts). */
export const RELAY_MODES = ['auto', 'always', 'never'] as const;

/**
 * The interface names meshctl accepts: a letter, digit or `_`, then letters, digits, `_` and `-`, at most 15
 * characters (IFNAMSIZ - 1). Narrower than wg-quick(8)'s `[a-zA-Z0-9_=+.-]{1,15}` because the name also goes into
 * - the systemd unit wg-quick@NAME: `+` and `=` are not allowed in unit names, so systemd-escape turns `wg+0` into
 *   `wg-quick@wg\x2b0`, whose %i is the escaped text and whose `wg-quick up wg\x2b0` then fails on every boot;
 * - sysctl keys net.ipv4.conf.NAME.rp_filter, where `.` separates the key's parts;
 * - command lines (`wg show NAME`, `ip link`), where a leading `-` reads as an option;
 * and `all`, `default` (the sysctl directories /proc/sys/net/ipv4/conf/{all,default}) and `lo` are taken.
 */
const INTERFACE_PATTERN = '^[a-zA-Z0-9_][a-zA-Z0-9_-]{0,14}$';
const RESERVED_INTERFACE_NAMES = ['all', 'default', 'lo'] as const;

function interfaceNameProblem(value: string): string | undefined {
  const why =
    'letters, digits, "_" and "-" (not first), at most 15 characters: it also names the systemd unit wg-quick@NAME (which escapes "+" and "=" into a unit that fails) and sysctl keys net.ipv4.conf.NAME (where "." separates parts)';
  if (value.length > 15) return `"${value}" is too long for an interface name (${value.length} characters): use ${why}`;
  if (value.startsWith('-')) return `"${value}" starts with "-", which commands would read as an option: use ${why}`;
  if (!new RegExp(INTERFACE_PATTERN).test(value)) return `"${value}" is not a safe interface name: use ${why}`;
  if ((RESERVED_INTERFACE_NAMES as readonly string[]).includes(value))
    return `"${value}" is taken: /proc/sys/net/ipv4/conf/${value} is ${value === 'lo' ? 'the loopback interface' : 'a sysctl directory, not an interface'}`;
  return undefined;
}

/** A DNS name (RFC 1123 labels, at most 253 characters, an optional final dot): `home.example.net`. */
const DNS_NAME = /^(?=.{1,253}\.?$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$/;
const ENDPOINT_PATTERN = '^(\\[[0-9A-Fa-f:.]+\\]|[A-Za-z0-9.-]+):[0-9]{1,5}$';

export type EndpointParse = { ok: true; host: string; port: number } | { ok: false; message: string };

/**
 * Reads a node's `endpoint: host:port` as WireGuard's Endpoint takes it (wg(8)): a DNS name or IPv4 address, or an
 * IPv6 address in brackets, then `:` and a port from 1 to 65535. The message says what is wrong, for file:line:col.
 */
export function parseEndpointText(value: string): EndpointParse {
  const bad = (message: string): EndpointParse => ({ ok: false, message });
  const bracketed = /^\[([^\]]*)\](?::(.*))?$/.exec(value);
  const colon = value.lastIndexOf(':');
  if (!bracketed && value.indexOf(':') !== colon) return bad(`"${value}": an IPv6 address goes in brackets, like [2001:db8::1]:51820`);
  const host = bracketed ? bracketed[1]! : colon < 0 ? value : value.slice(0, colon);
  const portText = bracketed ? bracketed[2] : colon < 0 ? undefined : value.slice(colon + 1);
  if (portText === undefined || portText === '')
    return bad(`"${value}" has no port: write host:port, e.g. ${bracketed ? `[${host}]` : host || 'home.example.net'}:51820`);
  if (!/^[0-9]+$/.test(portText)) return bad(`"${portText}" in "${value}" is not a port number`);
  const port = Number(portText);
  if (port < 1 || port > 65535) return bad(`port ${portText} in "${value}" is out of range (1-65535)`);
  if (bracketed) return isIPv6(host) ? { ok: true, host, port } : bad(`"${host}" in brackets is not an IPv6 address`);
  if (host === '') return bad(`"${value}" has no host: write host:port, e.g. home.example.net:${port}`);
  if (/^[0-9.]+$/.test(host)) return isIpv4(host) ? { ok: true, host, port } : bad(`"${host}" is not an IPv4 address (four numbers 0-255)`);
  // glibc's inet_aton forms (1-4 parts, each decimal, octal or 0x hex), which getaddrinfo and so wg(8) read as an
  // IPv4 address: not a name (Q10 F4: `0xac1b0f0c` passed as a DNS name where 172.27.15.12 was refused)
  if (/^(0x[0-9a-f]*|[0-9]+)(\.(0x[0-9a-f]*|[0-9]+)){0,3}\.?$/i.test(host))
    return bad(
      `"${host}" is a numeric form the resolver reads as an IPv4 address, not a DNS name: write the address as four decimal numbers 0-255`,
    );
  return DNS_NAME.test(host)
    ? { ok: true, host: host.replace(/\.$/, ''), port }
    : bad(`"${host}" is not a DNS name or IPv4 address (letters, digits and "-" in dot-separated labels)`);
}

export const formats = {
  ipv4: {
    what: 'an IPv4 address like 192.168.1.10',
    check: (value) => {
      if (isIpv4(value)) return undefined;
      const withPrefix = /^(.+)\/\d+$/.exec(value);
      if (withPrefix && isIpv4(withPrefix[1]!)) return `expected an address without a prefix length: write ${withPrefix[1]}`;
      return `"${value}" is not an IPv4 address (expected four numbers 0-255, like 192.168.1.10)`;
    },
    jsonSchema: { format: 'ipv4', pattern: `^${IPV4_PATTERN}$` },
  },
  cidr: {
    what: 'an IPv4 network in CIDR form like 10.42.0.0/16',
    check: (value) => {
      const parsed = parseCidrDetailed(value);
      if (parsed.ok) return undefined;
      switch (parsed.reason) {
        case 'no-prefix':
          return `${value} has no prefix length: write the network in CIDR form, e.g. ${value}/24`;
        case 'prefix':
          return `${value}: prefix length /${parsed.prefix} is out of range (0-32)`;
        case 'host-bits':
          return `${value} has host bits set: the network is ${parsed.network}`;
        default:
          return `"${value}" is not an IPv4 network in CIDR form (like 10.42.0.0/16)`;
      }
    },
    jsonSchema: { pattern: `^${IPV4_PATTERN}/(3[0-2]|[12]?[0-9])$` },
  },
  publicIpv6: {
    what: 'a global IPv6 address like 2001:db8:10::11',
    check: publicIpv6Problem,
    // JSON Schema's `ipv6` format (RFC 4291 text); editors then flag typos, the loader checks the rest
    jsonSchema: { format: 'ipv6' },
  },
  hostnameLabel: {
    what: 'a name usable as a hostname',
    check: (value) =>
      LABEL.test(value)
        ? undefined
        : `"${value}" is not usable as a hostname: use lowercase letters, digits and "-" (not first or last), at most 63 characters`,
    jsonSchema: { pattern: '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$' },
  },
  interfaceName: {
    what: 'a network interface name like wg0',
    check: interfaceNameProblem,
    jsonSchema: { pattern: INTERFACE_PATTERN, not: { enum: [...RESERVED_INTERFACE_NAMES] } },
  },
  sshHost: {
    what: 'a host name, IPv4 address or ~/.ssh/config alias',
    check: (value) => {
      if (value.includes('@')) return `"${value}": put the user in ssh.user, not in the host`;
      if (/^[^:]+:\d+$/.test(value)) return `"${value}": put the port in ssh.port, not in the host`;
      return /^[A-Za-z0-9_.%-]+$/.test(value) && !value.startsWith('-')
        ? undefined
        : `"${value}" is not a host name, IPv4 address or ~/.ssh/config alias`;
    },
    jsonSchema: { pattern: '^[A-Za-z0-9_.%][A-Za-z0-9_.%-]*$' },
  },
  userName: {
    what: 'a user name',
    check: (value) => (/^[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}$/.test(value) ? undefined : `"${value}" is not a valid user name`),
    jsonSchema: { pattern: '^[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}$' },
  },
  siteRef: {
    what: 'a site name',
    check: (value) => (value.trim() === '' ? 'expected a site name, got an empty string' : undefined),
    jsonSchema: { minLength: 1 },
  },
  endpoint: {
    what: 'host:port, like home.example.net:51820',
    check: (value) => {
      const parsed = parseEndpointText(value);
      return parsed.ok ? undefined : parsed.message;
    },
    jsonSchema: { pattern: ENDPOINT_PATTERN },
  },
  dnsName: {
    what: 'a DNS name like home.example.net',
    check: (value) => {
      if (/^[0-9.]+$/.test(value)) return `"${value}" is an address, not a name: write it as nat.publicIp`;
      return DNS_NAME.test(value) ? undefined : `"${value}" is not a DNS name (letters, digits and "-" in dot-separated labels)`;
    },
    jsonSchema: { pattern: '^(?![0-9.]+$)[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?\\.?$', maxLength: 254 },
  },
  relay: {
    what: 'auto, always, never or a node name',
    check: (value) =>
      RELAY_MODES.includes(value as (typeof RELAY_MODES)[number]) || LABEL.test(value)
        ? undefined
        : `"${value}" is not a relay setting: use auto, always, never, or the name of a node in a public site`,
    jsonSchema: { pattern: '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$' },
  },
  path: {
    what: 'a file path',
    check: (value) => (value.trim() === '' ? 'expected a file path, got an empty string' : undefined),
    jsonSchema: { minLength: 1 },
  },
} satisfies Record<string, StringFormat>;

// --- the inventory format ------------------------------------------------------------------------------------

const port = (description: string, extra: Partial<Common> = {}): Spec => ({
  type: 'integer',
  minimum: 1,
  maximum: 65535,
  what: 'a port number from 1 to 65535',
  description,
  ...extra,
});

const sshFields = (forNode: boolean): Record<string, Spec> => ({
  ...(forNode
    ? {
        host: {
          type: 'string',
          format: formats.sshHost,
          description: "Where meshctl connects over SSH: host name, IPv4 address or ~/.ssh/config alias. Defaults to the node's address.",
          examples: ['192.168.15.2', 'ms-1.example.net'],
        } satisfies Spec,
      }
    : {}),
  port: port('TCP port of the SSH server on the node.', { default: 22 }),
  user: {
    type: 'string',
    format: formats.userName,
    description: 'SSH user. meshctl needs root: any other user must be allowed passwordless sudo (become: sudo).',
    default: 'root',
    examples: ['root', 'admin'],
  },
  identityFile: {
    type: 'string',
    format: formats.path,
    description: 'Private key file to log in with (~ is expanded). Without it, ssh-agent and ~/.ssh/config are used.',
    examples: ['~/.ssh/id_ed25519'],
  },
  become: {
    type: 'enum',
    values: ['sudo', 'none'],
    description:
      'How commands get root: "sudo" runs each one through `sudo -n` (no password prompt), "none" runs them as the login user, which must then be root. Defaults to none for root, sudo for any other user.',
  },
});

export const inventorySpec: Spec = {
  type: 'object',
  description:
    'A meshctl inventory: the WireGuard mesh settings, the sites (underlay networks) and the nodes. Every node gets one /32 in the overlay network and a peer entry for every other node.',
  hints: {
    node: 'unknown field; did you mean nodes?',
    site: 'unknown field; did you mean sites?',
    ssh: 'unknown field; SSH settings shared by every node go under defaults.ssh',
  },
  fields: {
    mesh: {
      type: 'object',
      required: true,
      description: 'Settings shared by the whole WireGuard mesh.',
      hints: {
        overlay: 'unknown field; the overlay network is mesh.network',
        keepalive: 'unknown field; did you mean persistentKeepalive?',
        port: 'unknown field; did you mean listenPort?',
      },
      fields: {
        interface: {
          type: 'string',
          format: formats.interfaceName,
          description:
            'WireGuard interface name; also names /etc/wireguard/<interface>.conf and the wg-quick@<interface> service. At most 15 characters.',
          default: 'wg0',
          examples: ['wg0'],
        },
        network: {
          type: 'string',
          format: formats.cidr,
          required: true,
          description:
            'Overlay network in CIDR form. Every node gets one address in it (overlayIp, routed as a /32). Must not overlap any site LAN or reservedCidrs entry.',
          examples: ['172.27.15.0/24'],
        },
        listenPort: port("UDP port WireGuard listens on; each node's listenPort defaults to it.", { default: 51820 }),
        mtu: {
          type: 'integer',
          minimum: 1280,
          maximum: 9000,
          what: 'an MTU from 1280 to 9000',
          description: 'MTU of the WireGuard interface (1420 fits a 1500-byte underlay with IPv6 headroom).',
          default: 1420,
        },
        persistentKeepalive: {
          type: 'integer',
          minimum: 0,
          maximum: 65535,
          what: 'a number of seconds from 0 to 65535 (0 turns keepalive off)',
          description:
            'PersistentKeepalive in seconds, set only from a node behind NAT (nat or lan site) towards peers outside its site, to keep the NAT mapping open. 0 turns it off.',
          default: 25,
        },
        rpFilter: {
          type: 'enum',
          values: ['loose', 'strict', 'off', 2, 1, 0],
          description:
            'Reverse-path filtering (net.ipv4.conf.*.rp_filter) set on every node: loose (2), strict (1) or off (0). loose is what a mesh needs.',
          default: 'loose',
        },
        reservedCidrs: {
          type: 'array',
          items: {
            type: 'string',
            format: formats.cidr,
            description: 'A network in CIDR form that the overlay must not overlap.',
            examples: ['10.42.0.0/16'],
          },
          description:
            'Networks the overlay must stay clear of, such as Kubernetes pod and service CIDRs (k3s: 10.42.0.0/16 and 10.43.0.0/16).',
          default: [],
        },
        relay: {
          type: 'string',
          format: formats.relay,
          description:
            "Relays for pairs with no direct path (neither side can dial the other; meshctl does not punch holes through NAT): auto relays only those pairs through a public node meshctl picks (fewest relayed pairs first); always relays every pair that does not include a public node; never refuses an inventory where a pair would need a relay, naming the pairs; a node name (a node in a public site) relays through that node. A node's own relay wins for its pairs.",
          default: 'auto',
          examples: ['auto', 'never', 'p-1'],
        },
      },
    },
    defaults: {
      type: 'object',
      description: 'Values applied to every node unless the node sets its own.',
      fields: {
        ssh: {
          type: 'object',
          description: "SSH settings for every node; a node's own ssh fields win, field by field.",
          hints: {
            host: "unknown field; host cannot be a default (every node would get the same one): set nodes.<name>.ssh.host where needed, it defaults to the node's address",
          },
          fields: sshFields(false),
        },
      },
    },
    sites: {
      type: 'record',
      required: true,
      keyWhat: 'site name',
      keyFormat: formats.hostnameLabel,
      shape: 'home: { lan: 192.168.15.0/24, router: 192.168.15.1, nat: { publicIp: 203.0.113.10 } }',
      description:
        'Underlay network segments, by name. A site is one of: a LAN behind a NAT router with port forwards (lan + router + nat), a public site whose nodes hold public addresses (public: true), or a plain LAN with no way in (lan, optional router).',
      value: {
        type: 'object',
        description:
          'One site: { lan, router, nat: { publicIp } } for a NATed LAN, { public: true } for public addresses, { lan, router? } for a LAN with no way in.',
        hints: {
          publicIp: 'unknown field; publicIp belongs under nat (nat: { publicIp: ... })',
          publicHost: 'unknown field; publicHost belongs under nat (nat: { publicHost: ... })',
          network: 'unknown field; a site network is called lan',
          gateway: 'unknown field; the LAN gateway is called router',
        },
        fields: {
          lan: {
            type: 'string',
            format: formats.cidr,
            description: "The site's LAN in CIDR form; its nodes' addresses are inside it. Not for public sites.",
            examples: ['192.168.15.0/24'],
          },
          router: {
            type: 'string',
            format: formats.ipv4,
            description: "The router's address on the LAN (the nodes' default gateway). Required for a nat site.",
            examples: ['192.168.15.1'],
          },
          nat: {
            type: 'object',
            description:
              "The LAN reaches the internet through the router's public IP, and the router forwards UDP ports from it to nodes (see each node's forwardedPort).",
            fields: {
              publicIp: {
                type: 'string',
                format: formats.ipv4,
                description:
                  "The router's public IPv4 address: other sites dial this site's nodes at publicIp:forwardedPort. Required unless publicHost is given; with publicHost, it is only the address the name had when written (the lab starts the site there).",
                examples: ['203.0.113.10'],
              },
              publicHost: {
                type: 'string',
                format: formats.dnsName,
                description:
                  "A DNS name of the router's public address, for a dynamic address (the dynamic-DNS name of a home): peers dial publicHost:forwardedPort by name, and each node that dials it re-resolves it every 30 s (systemd timer meshctl-reresolve@IFACE.timer), so a new address is reached again without a new up.",
                examples: ['home.example.net'],
              },
              carrier: {
                type: 'boolean',
                description:
                  "true: the site is behind the ISP's carrier-grade NAT, two NATs deep (the router's own WAN address is in the carrier's shared space, e.g. 100.64.0.0/10, and publicIp is the carrier's address). No port can be forwarded to it: its nodes have no forwardedPort, only dial out.",
                default: false,
              },
            },
            // one of the two says where peers dial the site (semantic.ts reports it with file:line)
            jsonSchema: { anyOf: [{ required: ['publicIp'] }, { required: ['publicHost'] }] },
          },
          public: {
            type: 'boolean',
            description: 'true: the nodes of this site hold public addresses that every node can dial directly.',
          },
          lab: {
            type: 'object',
            description:
              'Read only by `meshctl lab` (how it builds the replica of this site); up, plan and verify ignore it. Not for public sites.',
            fields: {
              nat: {
                type: 'enum',
                values: ['symmetric', 'port-preserving'],
                description:
                  "The lab router's mapping (RFC 4787): symmetric gives every new destination a new random public port (MASQUERADE --random-fully), port-preserving keeps the node's source port for every destination (endpoint-independent). A carrier NAT site's carrier router does the same.",
                default: 'symmetric',
              },
            },
          },
        },
        jsonSchema: {
          oneOf: [
            {
              title: 'public site',
              required: ['public'],
              properties: { public: { const: true } },
              not: { anyOf: [{ required: ['lan'] }, { required: ['router'] }, { required: ['nat'] }, { required: ['lab'] }] },
            },
            {
              title: 'NAT site',
              required: ['lan', 'router', 'nat'],
              properties: { public: { const: false } },
            },
            {
              title: 'LAN site (no way in)',
              required: ['lan'],
              properties: { public: { const: false } },
              not: { required: ['nat'] },
            },
          ],
        },
      },
    },
    nodes: {
      type: 'record',
      required: true,
      keyWhat: 'node name',
      keyFormat: formats.hostnameLabel,
      shape: 'ms-1: { site: home, address: 192.168.15.2, overlayIp: 172.27.15.12 }',
      description: 'The machines of the mesh, by name (the name must be usable as a hostname). At least two.',
      value: {
        type: 'object',
        description: 'One machine of the mesh.',
        hints: {
          name: "unknown field; a node's name is its key under nodes",
          host: 'unknown field; the SSH host goes under ssh (ssh: { host: ... })',
          user: 'unknown field; the SSH user goes under ssh (ssh: { user: ... })',
          port: 'unknown field; did you mean listenPort, forwardedPort or ssh.port?',
          publicIp: "unknown field; a NAT site's public IP is set once, under sites.<site>.nat.publicIp",
        },
        fields: {
          site: {
            type: 'string',
            format: formats.siteRef,
            required: true,
            description: 'Name of the site (under sites) the node is in.',
            examples: ['home'],
          },
          address: {
            type: 'string',
            format: formats.ipv4,
            required: true,
            description:
              "Underlay address: the node's LAN address in a nat or lan site (inside the site's lan), its public address in a public site.",
            examples: ['192.168.15.2', '198.51.100.25'],
          },
          address6: {
            type: 'string',
            format: formats.publicIpv6,
            description:
              "The node's public IPv6 address (global unicast, inside 2000::/3; no prefix length), in any kind of site. Two nodes of different sites that both have one dial each other at [address6]:listenPort, ahead of any IPv4 NAT forward (IPv6 has no NAT), so two NATed sites without forwards still connect directly. Unique.",
            examples: ['2001:db8:10::11'],
          },
          overlayIp: {
            type: 'string',
            format: formats.ipv4,
            required: true,
            description: "The node's address in the overlay network (without prefix; it is routed as a /32). Unique.",
            examples: ['172.27.15.12'],
          },
          listenPort: port('UDP port WireGuard listens on inside this node. Defaults to mesh.listenPort.'),
          forwardedPort: port(
            "nat sites only: the UDP port on the site's public IP that the router forwards to this node's address:listenPort. Without it, nodes outside the site cannot dial this node (it still dials out). Unique within the site.",
          ),
          endpoint: {
            type: 'string',
            format: formats.endpoint,
            description:
              "Where every peer dials this node (host:port; a DNS name is allowed, an IPv6 address goes in brackets), for a way in the inventory cannot describe (a forward made elsewhere, a dynamic-DNS name). Wins over every computed endpoint, for every peer, as WireKube's endpoint annotation does.",
            examples: ['home.example.net:41001', '203.0.113.10:51821'],
          },
          relay: {
            type: 'string',
            format: formats.relay,
            description:
              "This node's relay setting for its pairs (auto, always, never, or the name of a public node to relay through); defaults to mesh.relay. A public node with never relays no other pairs either. In a pair, never wins over always, and a relay named by the node listed first wins.",
            examples: ['p-1', 'never'],
          },
          ssh: {
            type: 'object',
            description: 'How meshctl logs into this node; each field falls back to defaults.ssh, then to the built-in default.',
            fields: sshFields(true),
          },
        },
      },
    },
  },
};
