/**
 * The lab's DNS server, for inventories that name a site by `nat.publicHost` (dynamic DNS), and the lab's way to
 * move such a site to a new public address under a running mesh (issue 11, dynamic public addresses).
 *
 * - dnsmasq (Debian package dnsmasq-base) runs in the lab's `internet` namespace, bound to INTERNET_GATEWAY
 *   (169.254.0.1), the on-link gateway every lab namespace already reaches (public nodes directly, NATed nodes
 *   through their router). It answers only the names in the lab's hosts file (`--no-resolv --no-hosts
 *   --local=/#/`: nothing is forwarded anywhere, there is no route out of the lab anyway), with TTL 0, so a
 *   changed record is seen at once.
 * - each node's /etc/resolv.conf names that server (written into the node's own root before it boots; the host's
 *   resolv.conf is never touched: nspawn runs with --resolv-conf=off).
 * - `labMoveSite` gives a nat site's router (or its carrier router) a new public address: the internet namespace's
 *   route, the router's `wan` address and its port-forwards (DNAT matches the public address), a flushed conntrack
 *   table (the old address's flows are gone, as after a new DHCP lease), then the DNS record, reloaded by SIGHUP.
 * Nothing here runs in the host's network namespace: every command is `ip netns exec` into a lab namespace.
 */
import { existsSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Inventory } from '../inventory/types.js';
import { isIpv4 } from '../net/ipv4.js';
import { badInput } from '../errors.js';
import { pidAlive } from './base.js';
import { labPaths } from './paths.js';
import { INTERNET_GATEWAY, type LabPlan } from './plan.js';
import { readState, writeState, type LabState } from './state.js';
import * as sys from './sys.js';

/** Where the lab's nodes send DNS queries. */
export const LAB_DNS_SERVER = INTERNET_GATEWAY;

/** name -> IPv4 address: every nat site's publicHost at the address its router (or carrier) holds. */
export function labDnsRecords(inventory: Inventory, plan: Pick<LabPlan, 'routers'>): Record<string, string> {
  const records: Record<string, string> = {};
  for (const site of inventory.sites) {
    if (site.kind !== 'nat' || !site.publicHost) continue;
    const router = plan.routers.find((r) => r.site === site.name);
    if (router) records[site.publicHost.toLowerCase()] = router.carrier?.publicIp ?? router.publicIp;
  }
  return records;
}

/** The hosts file dnsmasq serves (`--addn-hosts`): `ADDRESS NAME` lines, sorted by name. */
export const dnsHostsText = (records: Record<string, string>): string =>
  Object.keys(records)
    .sort()
    .map((name) => `${records[name]} ${name}\n`)
    .join('');

/** The resolv.conf every node of a lab with names gets: only the lab's server, short timeouts. */
export const nodeResolvConf = (): string =>
  `# lab: the lab's own DNS server (dnsmasq in the internet namespace); nothing leaves the lab\nnameserver ${LAB_DNS_SERVER}\noptions timeout:1 attempts:2\n`;

interface DnsFiles {
  hosts: string;
  pid: string;
  /** dnsmasq's stderr: its log (--log-facility=-), queries included */
  log: string;
}
const dnsFiles = (lab: string): DnsFiles => {
  const dir = labPaths(lab).dir;
  return { hosts: join(dir, 'dns.hosts'), pid: join(dir, 'dns.pid'), log: join(dir, 'dns.log') };
};

/**
 * Writes /etc/resolv.conf into a node's root before its first boot. The file may be a symlink in the base (to a
 * resolver's stub file): it is removed first, so the write never follows a link out of the node's root.
 */
export function writeNodeResolvConf(root: string): void {
  const path = join(root, 'etc/resolv.conf');
  rmSync(path, { force: true });
  writeFileSync(path, nodeResolvConf(), { mode: 0o644 });
}

/**
 * Starts dnsmasq in the lab's internet namespace serving `records`, and waits until it answers (at most 10 s).
 * Its process lives in a lab namespace, so `lab down` ends it with the rest. Throws when dnsmasq is missing.
 */
export async function startLabDns(lab: string, internetNs: string, records: Record<string, string>): Promise<number> {
  if (!sys.which('dnsmasq'))
    throw badInput(
      'this inventory names a site by nat.publicHost: the lab needs dnsmasq (Debian package dnsmasq-base; scripts/setup.sh installs it)',
    );
  const files = dnsFiles(lab);
  writeFileSync(files.hosts, dnsHostsText(records), { mode: 0o644 });
  const argv = sys.inNetns(internetNs, [
    'dnsmasq',
    '--keep-in-foreground',
    '--conf-file=/dev/null',
    '--no-resolv',
    '--no-hosts',
    '--no-poll',
    // every name is local: a known name without AAAA is NODATA, an unknown one NXDOMAIN (never REFUSED, which
    // glibc's parallel A+AAAA lookup in getent/wg could take as a failure of the whole lookup)
    '--local=/#/',
    `--addn-hosts=${files.hosts}`,
    `--listen-address=${LAB_DNS_SERVER}`,
    '--bind-interfaces',
    '--local-ttl=0',
    '--user=root',
    '--pid-file=',
    '--log-queries',
    '--log-facility=-',
  ]);
  const pid = sys.spawnDetached(argv, files.log, process.env);
  writeFileSync(files.pid, `${pid}\n`);
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (!pidAlive(pid)) throw new Error(`the lab's dnsmasq exited: ${tail(files.log)}`);
    const listening = await sys.run(sys.inNetns(internetNs, ['ss', '-Hlun']));
    if (listening.stdout.includes(`${LAB_DNS_SERVER}:53 `)) return pid;
    if (Date.now() > deadline) throw new Error(`the lab's dnsmasq is not listening on ${LAB_DNS_SERVER}:53: ${tail(files.log)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const tail = (path: string) => (existsSync(path) ? readFileSync(path, 'utf8').trim().split('\n').slice(-3).join(' | ') : '(no log)');

/** What labMoveSite did. */
export interface MoveReport {
  site: string;
  from: string;
  to: string;
  /** names whose record now points at `to` */
  names: string[];
}

/**
 * Moves nat site `site` of lab `lab` to public address `to` (IPv4, not used by anything in the lab) and points its
 * publicHost names there. For the lab's tests and `meshctl lab move-site`. The inventory file is not changed: a
 * site with a dynamic address is expected to keep its name, not its publicIp.
 */
export async function labMoveSite(lab: string, site: string, to: string): Promise<MoveReport> {
  const state = readState(lab);
  if (!state) throw badInput(`no lab named ${lab} (see meshctl lab status)`);
  const router = state.plan.routers.find((r) => r.site === site);
  if (router?.kind !== 'nat') throw badInput(`lab ${lab} has no nat site ${site}`);
  if (!isIpv4(to)) throw badInput(`${to} is not an IPv4 address`);
  const used = state.plan.namespaces.flatMap((ns) => ns.interfaces.flatMap((i) => i.addresses.map((a) => a.split('/')[0]!)));
  if (used.includes(to)) throw badInput(`${to} is already an address in lab ${lab}`);
  // the namespace holding the site's public address: the carrier router of a carrier NAT site, else the router
  const holder = router.carrier?.namespace ?? router.namespace;
  const from = router.carrier?.publicIp ?? router.publicIp;
  const link = state.plan.links.find((l) => l.a.ns === state.plan.internet.namespace && l.b.ns === holder && l.b.ifname === 'wan');
  if (!link) throw new Error(`lab ${lab}: no internet link to ${holder}`);
  const internet = state.plan.internet.namespace;

  await sys.ipBatch(internet, [`route replace ${to}/32 dev ${link.a.ifname}`, `route del ${from}/32 dev ${link.a.ifname}`]);
  await sys.ipBatch(holder, [
    `address add ${to}/32 dev wan`,
    `address del ${from}/32 dev wan`,
    `route replace default via ${INTERNET_GATEWAY} dev wan onlink`,
  ]);
  const movedForwards = router.carrier ? router.forwards : router.forwards.map((f) => ({ ...f, publicIp: to }));
  if (!router.carrier) {
    const nat = state.plan.namespaces.find((ns) => ns.name === router.namespace)!.nat!;
    const newNat = { ...nat, forwards: nat.forwards.map((f) => ({ ...f, publicIp: to })) };
    if (state.firewall === 'iptables') await sys.must(sys.inNetns(holder, ['iptables', '-w', '-t', 'nat', '-F']));
    else await sys.must(sys.inNetns(holder, ['nft', 'delete', 'table', 'ip', 'nat']));
    await sys.applyNat(holder, newNat, state.firewall);
    nat.forwards = newNat.forwards;
  }
  // the old address's flows end with it, as after a new lease (conntrack is in setup.sh's packages)
  await sys.run(sys.inNetns(holder, ['conntrack', '-F']));
  recordMove(state, holder, router, from, to, movedForwards);

  const names = await updateDns(lab, state, from, to);
  writeState(state);
  return { site, from, to, names };
}

/** The plan in state.json follows the move, so that exec targets and a later move start from the truth. */
function recordMove(
  state: LabState,
  holder: string,
  router: LabPlan['routers'][number],
  from: string,
  to: string,
  forwards: LabPlan['routers'][number]['forwards'],
): void {
  const ns = state.plan.namespaces.find((n) => n.name === holder)!;
  for (const itf of ns.interfaces) itf.addresses = itf.addresses.map((a) => (a === `${from}/32` ? `${to}/32` : a));
  const internet = state.plan.namespaces.find((n) => n.name === state.plan.internet.namespace)!;
  for (const route of internet.routes) if (route.to === `${from}/32`) route.to = `${to}/32`;
  if (router.carrier) router.carrier.publicIp = to;
  else router.publicIp = to;
  router.forwards = forwards;
}

/** Points every name that resolved to `from` at `to`, and makes dnsmasq re-read its hosts file (SIGHUP). */
async function updateDns(lab: string, state: LabState, from: string, to: string): Promise<string[]> {
  const files = dnsFiles(lab);
  if (!existsSync(files.hosts)) return [];
  const records = Object.fromEntries(
    readFileSync(files.hosts, 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((line) => line.split(/\s+/))
      .map(([address, name]) => [name!, address!]),
  );
  const names = Object.keys(records).filter((name) => records[name] === from);
  for (const name of names) records[name] = to;
  writeFileSync(`${files.hosts}.tmp`, dnsHostsText(records), { mode: 0o644 });
  renameSync(`${files.hosts}.tmp`, files.hosts);
  const pid = Number(readFileSync(files.pid, 'utf8').trim());
  if (pid && pidAlive(pid)) {
    // the pid is of `ip netns exec`, which execs dnsmasq in place: the same process
    process.kill(pid, 'SIGHUP');
  } else throw new Error(`lab ${state.name}: its dnsmasq is not running`);
  return names;
}
