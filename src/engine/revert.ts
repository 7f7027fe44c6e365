/**
 * Rollback on the node itself (issue 9; issue 8, kind 5: a dead man's switch on enable), as Junos `commit confirmed`
 * and `netplan try` do it: before `up` changes a node's files or interface, the same script (one round trip) first
 * ARMS a revert on the node: it keeps the previous files (wg-quick config, sysctl file, reload drop-in) and the
 * previous state of the interface and its unit in a private directory under /run, writes a small revert script
 * there, and starts a timer that runs it after `deadlineS` seconds (a transient `systemd-run --on-active=` unit, or
 * without systemd a detached `sleep` in its own session). meshctl DISARMS it only after the node passed the checks
 * of the confirming phase (the enable gate, whose `ssh-still-reachable` check is a fresh SSH login). So:
 * - meshctl killed, or its connection lost, mid-change: nobody disarms, the node reverts by itself at the deadline;
 * - a node that fails its checks after a change: the run triggers the revert at once and says so;
 * - a run that stops (any node's STOP) before a node was confirmed: that node is reverted at once too, since its
 *   change was never confirmed (its files would otherwise flip back later, unannounced);
 * - Ctrl-C before a node was confirmed: the run waits for the arming scripts in flight, then reverts it at once too
 *   (settleLeftovers; a new user's finding 4); a second Ctrl-C leaves it to its timer;
 * - a revert that fired by itself is reported, and its directory removed, by the next changing run's facts probe
 *   (firedRollbacksScript; finding 7).
 * A transient timer and /run do not survive a reboot: a node rebooted inside the window keeps the new files.
 * A run removes its own directory once confirmed (disarm) or reverted by it; a directory left by a killed run (its
 * revert done by the timer, or its timer gone) is removed by the next run's first arm (finding 33).
 *
 * The timer fires at an absolute time (`--on-calendar`, UTC; `deadline` holds it in Unix seconds): a relative one
 * (`--on-active`) is re-armed by every `systemctl daemon-reload` (finding 18).
 * On the node: /run/meshctl/revert-RUN/ (mode 700) holds `config`, `sysctl`, `dropin`, and with systemd the re-resolve
 * timer's files `rr_script`, `rr_service`, `rr_timer` (or NAME.absent), `dropin_dir.absent` and `rr_dir.absent` when
 * the directory of the drop-in or of the re-resolve script did not exist (the revert removes it again if it is empty:
 * Q5 4a, a cold start's revert left an empty wg-quick@IFACE.service.d), `state` (active=, enabled=, up=, mtu= (the live
 * interface's, empty without one), addrs= (its IPv4 addresses: liveAddressesCommand), fwd= (its
 * net.ipv4.conf.IFACE.forwarding, 0 or 1, empty without one), relay_rule= (yes or no: meshctl's relay rule for it is
 * there, relayRuleStateCommand; empty without iptables and nft), peers= (a checksum of the live peers and key:
 * livePeersDigestCommand), rp_all=, rp_default=, and with systemd rr=1, rr_active=, rr_enabled= of the re-resolve
 * timer), `revert.sh`, `unit` (the timer's unit) or `pid` (the fallback), and after a revert `reverted` (Unix time),
 * `log`, `live` (what it put back on the running interface, in words) and `kept` (what it did not). Private keys are
 * neither copied nor read: meshctl's config carries none, and a hand-made one that does is copied node-locally under
 * umask 077, never sent anywhere.
 */
import { randomBytes } from 'node:crypto';
import { posix } from 'node:path';
import type { Change, CheckResult, NodeAction, NodePhaseReport, NodeStep } from './types.js';
import type { Registry } from './runner.js';
import { sectionScript, splitSections } from '../facts/sections.js';
import { redactSecrets } from '../remote/redact.js';
import { raw, sh } from '../remote/shell.js';
import { reresolvePaths, wireguardPaths } from '../remote/wireguard.js';
import { systemctlEnablement } from '../remote/systemctl.js';
import { syncPeerRoutesCommand, syncPeersCommand } from '../render/systemd.js';
import { relayChainName, relayForwardingKey, relayHooks, relayNftTableName, relayRuleDownCommand } from '../render/relay.js';
import { LOCK_PATH } from './lock.js';

/** The run lock's file, as the fired section reads it (no character the shell would read). */
const LOCK_FILE = LOCK_PATH;

/** The default window between a change and its confirmation, seconds (`up --rollback-deadline`). */
export const DEFAULT_ROLLBACK_DEADLINE_S = 120;

/** Bounds of the deadline: a window shorter than a fresh login plus the checks would revert healthy changes. */
export const MIN_ROLLBACK_DEADLINE_S = 5;
export const MAX_ROLLBACK_DEADLINE_S = 3600;

/** The exit code of an arm script that finds its run's revert already fired (the window passed at a gate). */
export const REVERT_FIRED_EXIT = 75;

/** The exit code of an arm script that finds another run's unconfirmed change still pending on the node. */
export const PENDING_OTHER_EXIT = 76;

/** How a run arms its reverts: one id per run (names the directory and units on the node) and the window. */
export interface RollbackOptions {
  /** [0-9a-f]{8,32}: pasted into paths and unit names */
  runId: string;
  /** seconds from a change to the automatic revert, unless meshctl confirms first */
  deadlineS: number;
}

const RUN_ID = /^[0-9a-f]{8,32}$/;

/** A fresh run id (16 hex digits). */
export const newRunId = (): string => randomBytes(8).toString('hex');

/**
 * Parses `--rollback-deadline` (whole seconds, MIN..MAX).
 * @throws Error naming the bounds for anything else
 */
export function parseRollbackDeadline(text: string | undefined): number {
  if (text === undefined) return DEFAULT_ROLLBACK_DEADLINE_S;
  const value = Number(text);
  if (!/^\d+$/.test(text.trim()) || value < MIN_ROLLBACK_DEADLINE_S || value > MAX_ROLLBACK_DEADLINE_S)
    throw new Error(
      `--rollback-deadline must be whole seconds from ${MIN_ROLLBACK_DEADLINE_S} to ${MAX_ROLLBACK_DEADLINE_S}, not "${text}"`,
    );
  return value;
}

/** Where a run keeps its snapshot on the node, and the prefix of its timer units. */
export function revertPaths(runId: string): { dir: string; unitPrefix: string } {
  if (!RUN_ID.test(runId)) throw new Error(`bad rollback run id ${runId}`);
  return { dir: `/run/meshctl/revert-${runId}`, unitPrefix: `meshctl-revert-${runId}` };
}

/**
 * The [Interface] part of a wg-quick file, for comparing two files (awk program; input: the file): the lines of its
 * [Interface] sections without their comments (from `#` on, as wg-quick(8) strips them) and blank lines, trimmed,
 * with no space around the first `=`; section headers matched case-blind, as wg(8) reads them. With the awk variable
 * `nomtu` set, without the MTU line (to tell a change of the MTU alone).
 * It compares text, line by line in file order, where `up` judged the change by meaning (../render/changes.ts
 * liveInterfaceChange parses both files): the same [Interface] keys in another order or spelling (an adopted file) differ
 * here, so such a revert restarts the unit where `up` set the MTU live. That is the safe side, a restart never misses
 * a change (a reviewer's finding RV2-14); the node has no parser of wg-quick files to do better in sh and awk.
 */
const INTERFACE_PART_AWK = [
  '/^[ \\t]*\\[/ { s = tolower($0); gsub(/[ \\t]/, "", s); next }',
  's == "[interface]" { sub(/#.*/, ""); sub(/^[ \\t]+/, ""); sub(/[ \\t]+$/, ""); sub(/[ \\t]*=[ \\t]*/, "="); if ($0 != "" && !(nomtu != "" && tolower($0) ~ /^mtu=/)) print }',
].join('\n');

/**
 * Prints the interface's IPv4 addresses on one line (shell; the snapshot's `addrs=`, compared by revertScript with the
 * same command's output then): one word per address as `ip -4 -o address show dev IFACE` lists it, `LOCAL/LEN`, or
 * `LOCAL+PEER/LEN` for one set with a peer (`inet 10.0.0.1 peer 10.0.0.2/32`), sorted (C locale), one space apart;
 * an empty line when the interface has none or does not exist. IPv6 addresses are left out: `up` sets none live.
 */
const liveAddressesCommand = (iface: string): string =>
  `${sh`ip -4 -o address show dev ${iface}`.text} 2>/dev/null | awk '{ for (i = 1; i < NF; i++) if ($i == "inet") { a = $(i + 1); if ($(i + 2) == "peer") a = a "+" $(i + 3); print a } }' | LC_ALL=C sort | awk '{ printf "%s%s", (NR > 1 ? " " : ""), $0 } END { print "" }'`;

/**
 * Prints a checksum of the interface's live peers and key as wg(8) shows their public parts (shell; the snapshot's
 * `peers=`): each peer's AllowedIPs and keepalive, and the interface's public key, one sorted line each (the order
 * wg lists them in changes with a sync), through cksum(1). Endpoints are left out (a NAT roams them). Never the
 * private key nor preshared keys: only `wg show IFACE allowed-ips|persistent-keepalive|public-key`.
 */
const livePeersDigestCommand = (iface: string): string =>
  `{ ${sh`wg show ${iface} allowed-ips`.text} | awk '{ for (i = 2; i <= NF; i++) print "a", $1, $i }'; ${sh`wg show ${iface} persistent-keepalive`.text} | awk '{ print "k", $1, $2 }'; ${sh`wg show ${iface} public-key`.text} | awk '{ print "p", $1 }'; } 2>/dev/null | LC_ALL=C sort | cksum`;

/**
 * Prints `yes` when meshctl's relay rule for IFACE is on the node, `no` when not, nothing when neither iptables nor nft
 * is there (shell; the snapshot's `relay_rule=`): read where the relay's PostUp writes it (../render/relay.ts), with
 * iptables when the node has it (FORWARD's jump to meshctl-fwd-IFACE in `iptables-save`, which only reads, and only
 * the tables already loaded: no `-t filter`, which may load one), else the nftables table. The FORWARD jump stands for
 * the rule: PostUp adds it last, PreDown removes it first.
 */
const relayRuleStateCommand = (iface: string): string =>
  [
    `if command -v iptables >/dev/null 2>&1; then if ${sh`iptables-save 2>/dev/null | grep -q -x -F -e ${`-A FORWARD -i ${iface} -j ${relayChainName(iface)}`}`.text}; then echo yes; else echo no; fi`,
    `elif command -v nft >/dev/null 2>&1; then if ${sh`nft list table inet ${relayNftTableName(iface)}`.text} >/dev/null 2>&1; then echo yes; else echo no; fi; fi`,
  ].join('; ');

/** What a revert says it did not put back when the live peers or key differ from the snapshot's (`peers=`). */
const keptWords = (iface: string): string =>
  `${iface}'s live peers or key as they were before the run (they differed from ${iface}.conf, set by hand or by an earlier run): they are as this run set them from ${iface}.conf`;

/**
 * The interface state the enable step may set live while the file's [Interface] stays the same (../steps/service.ts
 * liveInterfaceSet: an address by hand put back to the file's one, a relay's forwarding and rule set up again), put back
 * to the snapshot's (RV5 F3: a revert said "back on its ... interface state" and left a hand-set address deleted).
 * Runs after the interface was restored, synced or restarted (revertScript), on a running interface; each part only
 * when the snapshot has its line (an older meshctl's has none) and now differs from it:
 * - addresses (`addrs=`, liveAddressesCommand): the snapshot's missing ones added, then the others deleted (a peer's
 *   address with its peer, `ip -4 address add|del LOCAL peer PEER/LEN`), the missing ones added once more (deleting a
 *   subnet's primary address takes its secondaries with it), then read back: still not the snapshot's fails the revert.
 *   Routes: the kernel's prefix route comes and goes with its address; the peers' /32 routes the enable step made stay
 *   (wg-quick would have made them with a /32 Address; with a wider one they are more specific than its prefix route);
 * - the relay (`fwd=` net.ipv4.conf.IFACE.forwarding, `relay_rule=`, relayRuleStateCommand): a rule gone since is set
 *   up again as the relay's PostUp does, then the forwarding set back, then a rule the run added removed (the order
 *   keeps the forwarding from running without the rule wherever the snapshot had both).
 * What it put back is written to `$d/live` (one line, words), which revertNowScript prints; what fails is added to
 * `$bad` (the revert then fails, and its timer tries again). Live peers and key whose checksum (`peers=`,
 * livePeersDigestCommand) differs from the snapshot's are not put back (the snapshot holds no more of them): `$d/kept`
 * says so (keptWords).
 */
function liveStateRestore(iface: string): string {
  const fwdPath = `/proc/sys/net/ipv4/conf/${iface}/forwarding`;
  const addrIp = (verb: 'add' | 'del') =>
    `case $1 in *+*) ${sh`ip -4 address ${verb} "\${1%%+*}" peer "\${1#*+}" dev ${iface}`.text} ;; *) ${sh`ip -4 address ${verb} "$1" dev ${iface}`.text} ;; esac`;
  return [
    'mc_put=',
    `mc_addrs() { ${liveAddressesCommand(iface)}; }`,
    `mc_add() { ${addrIp('add')}; }`,
    `mc_del() { ${addrIp('del')}; }`,
    `case "\n$S" in *"\naddrs="*)`,
    '  want=$(state addrs); have=$(mc_addrs)',
    '  if [ "$want" != "$have" ]; then',
    '    added=; deleted=',
    '    for a in $want; do case " $have " in *" $a "*) ;; *) mc_add "$a" && added="$added $a" ;; esac; done',
    '    for a in $have; do case " $want " in *" $a "*) ;; *) mc_del "$a" && deleted="$deleted $a" ;; esac; done',
    '    now=$(mc_addrs); for a in $want; do case " $now " in *" $a "*) ;; *) mc_add "$a" ;; esac; done',
    `    if [ "$(mc_addrs)" = "$want" ]; then mc_put="$mc_put; ${iface} addresses \${want:-none} (\${added:+added$added}\${added:+\${deleted:+, }}\${deleted:+deleted$deleted})"; else bad="$bad ${iface} addresses (\${want:-none} wanted, $(mc_addrs) left)"; fi`,
    '  fi ;;',
    'esac',
    `rule_was=$(state relay_rule); fwd_was=$(state fwd)`,
    `rule_now=$(${relayRuleStateCommand(iface)})`,
    `if [ "$rule_was" = yes ] && [ "$rule_now" = no ]; then if ${relayHooks(iface).postUp[0]!}; then mc_put="$mc_put; meshctl's relay rule for ${iface} set up again"; else bad="$bad ${iface}'s relay rule"; fi; fi`,
    `if [ -n "$fwd_was" ] && [ "$(cat ${sh`${fwdPath}`.text} 2>/dev/null)" != "$fwd_was" ]; then if ${sh`sysctl -q -w ${relayForwardingKey(iface)}="$fwd_was"`.text}; then mc_put="$mc_put; ${relayForwardingKey(iface)} $fwd_was"; else bad="$bad ${relayForwardingKey(iface)}"; fi; fi`,
    `if [ "$rule_was" = no ] && [ "$rule_now" = yes ]; then ${relayRuleDownCommand(iface)}; mc_put="$mc_put; meshctl's relay rule for ${iface} removed"; fi`,
    `if [ -n "$mc_put" ]; then echo "put back live: \${mc_put#; }"; echo "\${mc_put#; }" > "$d/live"; fi`,
    // not recorded beyond a checksum, so not put back: said instead (a peer removed by hand before the run stays re-added)
    `case "\n$S" in *"\npeers="*) if [ "$(state peers)" != "$(${livePeersDigestCommand(iface)})" ]; then echo "${keptWords(iface)}" > "$d/kept"; echo "not put back: ${keptWords(iface)}"; fi ;; esac`,
  ].join('\n');
}

/**
 * The revert script kept on the node: restores the files (or removes those that did not exist), the rp_filter
 * values, the unit's enabled state, the re-resolve timer (files, enabled, active: finding 17) and the interface, as
 * gently as the change came (a new user's finding, 2026-12-01: every revert restarted wg-quick, and the pairs the
 * change had not touched went down for seconds):
 * - it ran before and runs now, and only [Peer] content of its config differs (INTERFACE_PART_AWK): the peers are
 *   synced onto the restored file and their routes with them, exactly as the enable step's 'peers' path does
 *   (../render/systemd.ts syncPeersCommand, syncPeerRoutesCommand: only what differs from the live interface is
 *   sent, the private key is kept), so the interface, its ifindex and the untouched peers' sessions stay. When the
 *   live interface already runs as the restored file (a change stopped before its enable step), that changes nothing;
 * - it ran before and runs now, and of its [Interface] part only the MTU line differs (the enable step set the MTU
 *   live: ../steps/service.ts): the snapshot's live MTU is set back (`ip link set dev IFACE mtu N`) and the peers
 *   synced as above (nothing is sent when they did not change), no restart; a snapshot without the live MTU (an older
 *   meshctl's) restarts as below;
 * - it ran before and its [Interface] part changed otherwise (address, port, PostUp...), the file is new or gone:
 *   restarted on the old config after the restore (wg-quick applies those only at start; an Address the enable step
 *   set live, ../steps/service.ts liveInterfaceSet, goes back so too: the old address and wg-quick's routes for it);
 *   not running any more: started; a start or restart that fails twice fails the revert;
 * - then, when it ran before and runs now (none, sync, mtu, restart, start) and this run reached it: what the enable
 *   step may set live while the file's [Interface] stays (an address put back to the file's, deleting one set by
 *   hand; a relay's forwarding and rule set up again) is put back to the snapshot's (liveStateRestore: RV5 F3, such a
 *   revert said "back on its ... interface state" and left the hand-set address deleted), also after a restart,
 *   which brings up only what the restored file says. Not put back: live peers, their routes and the interface's key,
 *   which every act leaves as the restored file says (a peer removed by hand before the run stays re-added); when the
 *   peers or key differ from the snapshot's (`peers=`, a checksum), the revert says so (`$d/kept`, keptWords);
 * - it did not run before: stopped (and the interface deleted, or brought up again by hand when it was up so);
 * - no step of this run reached the interface (no `$d/iface`: INTERFACE_LABELS): only the files go back, the
 *   interface runs on as it did before the change.
 * A file that cannot be put back, an MTU that cannot be set back, or a peer sync that fails (`wg-quick strip`, `wg
 * addconf`, a `wg set ... remove`: a reviewer's finding RV-6, it said `reverted`) fails the revert (exit 1, no
 * `reverted`): the timer tries again. A sync that finds nothing to send is no failure.
 * A unit stopped for good is stopped BEFORE the files are restored, on the file it came up with: `wg-quick down`
 * reads the config and refuses without one (wg-quick(8): "does not exist"); a cold run's revert removed wg0.conf
 * first, its stop failed, and systemd then waited out its stop timeout on the wireguard-go left in the unit (CI,
 * stop 25: a 60 s revert timeout, the unit left enabled).
 * Idempotent: a second run (the timer after a revert by meshctl) does nothing; one cut off midway does what the first
 * decided (`$d/act`).
 */
export function revertScript(iface: string, runId: string, systemd: boolean): string {
  const p = wireguardPaths(iface);
  const r = reresolvePaths(iface);
  const { dir } = revertPaths(runId);
  // fd 9 (the revert lock) closed: a wg-quick up run from here starts wireguard-go, which would keep it for as long
  // as the interface runs (a review's finding)
  const start = systemd ? sh`systemctl start ${p.service}`.text : `${sh`wg-quick up ${iface}`.text} 9>&-`;
  const stop = systemd ? sh`systemctl stop ${p.service}`.text : sh`wg-quick down ${iface}`.text;
  const restart = systemd ? sh`systemctl restart ${p.service}`.text : `${sh`wg-quick down ${iface}`.text}; ${start}`;
  const running = systemd ? sh`systemctl is-active -q ${p.service}`.text : sh`[ -e ${`/sys/class/net/${iface}`} ]`.text;
  // a oneshot wg-quick@ stays active after its interface was deleted by hand: the sync needs the interface itself
  const exists = sh`[ -e ${`/sys/class/net/${iface}`} ]`.text;
  const sync = `{ ${syncPeersCommand(iface, p.privateKey)}; }`;
  // not re-indented: a line break inside its quotes would take the indent with it
  const routes = syncPeerRoutesCommand(iface);
  return [
    sh`d=${dir}`.text,
    'exec >>"$d/log" 2>&1',
    // one revert at a time: meshctl's (revertNowScript keeps the timer armed while it runs) and the timer's, when it
    // fires meanwhile, take turns; nothing removes $d under it (takeRevertLock)
    takeRevertLock('{ echo "not reverted: another revert of this run still runs" >&2; exit 1; }'),
    '[ -e "$d/reverted" ] && exit 0',
    // the snapshot is gone (confirmed, or removed after the other revert finished): nothing to go back to
    '[ -e "$d/state" ] || exit 0',
    // read once: every decision below comes from this copy, never from a file that could go meanwhile (a review's
    // finding: an empty state read as "not active before", and the interface was taken down)
    'S=$(cat "$d/state") || exit 1',
    `case "\n$S" in *"\nactive="*) ;; *) echo "not reverted: the snapshot's state is incomplete" >&2; exit 1 ;; esac`,
    `state() { printf '%s\\n' "$S" | sed -n "s/^$1=//p"; }`,
    // the config changed since the snapshot: the interface must be brought back onto the old one
    // differs NAME PATH: the file is not what the snapshot holds (each reload or restart below only when needed:
    // on a loaded node a daemon-reload alone takes seconds)
    'differs() { if [ -e "$d/$1.absent" ]; then [ -e "$2" ]; else ! cmp -s "$d/$1" "$2"; fi; }',
    'changed=0',
    sh`if differs config ${p.config}; then changed=1; fi`.text,
    // same_iface=1: the file being restored and the one it replaces have the same [Interface] part (comments, blank
    // lines and the spaces around a key's `=` aside), so only [Peer] content changed: what wg-quick applies only at
    // start (Address, MTU, ListenPort, PostUp...) is the same. Read before the restore, builtins and one awk each.
    sh`iface_part() { awk -v nomtu="$2" ${INTERFACE_PART_AWK} "$1"; }`.text,
    'same_iface=0',
    sh`if [ $changed = 1 ] && [ -f "$d/config" ] && [ -f ${p.config} ] && [ "$(iface_part "$d/config")" = "$(iface_part ${p.config})" ]; then same_iface=1; fi`
      .text,
    // mtu_only=1: the [Interface] parts differ in their MTU line alone (what the enable step sets live)
    'mtu_only=0',
    sh`if [ $changed = 1 ] && [ $same_iface = 0 ] && [ -f "$d/config" ] && [ -f ${p.config} ] && [ "$(iface_part "$d/config" 1)" = "$(iface_part ${p.config} 1)" ]; then mtu_only=1; fi`
      .text,
    ...(systemd
      ? [
          'units=0',
          sh`if differs dropin ${p.reloadDropIn}; then units=1; fi`.text,
          // finding 17: the re-resolve timer the config step installs (../remote/reresolve.ts) goes back too; a
          // snapshot of an older meshctl has none of it (no rr= line in state): left as it is then
          'rr=$(state rr)',
          sh`if [ "$rr" = 1 ] && { differs rr_service ${r.service} || differs rr_timer ${r.timer}; }; then units=1; fi`.text,
          // stopped and disabled while its unit files still exist (a disable without them leaves the wants link)
          sh`if [ "$rr" = 1 ] && [ "$(state rr_active)" != active ]; then systemctl stop ${r.timerUnit} 2>/dev/null || true; fi`.text,
          sh`if [ "$rr" = 1 ] && [ "$(state rr_enabled)" != enabled ] && [ "$(systemctl is-enabled ${r.timerUnit} 2>/dev/null)" = enabled ]; then ${raw(systemctlEnablement('disable', r.timerUnit))} 2>/dev/null || true; fi`
            .text,
        ]
      : []),
    // what the interface needs, decided on the live state before anything is restored (act=start|sync|mtu|restart|down),
    // and kept: a revert cut off after the restore finds the files already back (changed=0), and must still finish
    // what the first decided (a review's finding: a peers-only change stayed live, reported reverted)
    'act=none',
    'if [ -s "$d/act" ]; then act=$(cat "$d/act")',
    // no step of this run reached the interface ($d/iface: INTERFACE_LABELS): it runs as before the change
    'elif [ ! -e "$d/iface" ]; then act=none',
    `elif [ "$(state active)" = active ]; then`,
    `  if ! ${running}; then act=start`,
    // as gently back as the change came (a new user's finding): only [Peer] content differs, so the running
    // interface is synced onto the restored file as the enable step's 'peers' path does, keeping its ifindex, key
    // and the sessions of every peer the change did not touch; a restart would cut them all
    `  elif [ $changed = 1 ] && [ $same_iface = 1 ] && ${exists}; then act=sync`,
    // the MTU alone changed: set back live, as the enable step set it (a snapshot of an older meshctl has no mtu=)
    `  elif [ $mtu_only = 1 ] && [ -n "$(state mtu)" ] && ${exists}; then act=mtu`,
    '  elif [ $changed = 1 ]; then act=restart; fi',
    'else act=down; fi',
    // the run set the MTU live with the file's [Interface] part unchanged (../steps/service.ts liveInterfaceSet: an MTU
    // changed by hand, or a file an earlier run wrote but did not apply): the snapshot's live MTU goes back too, or a
    // revert would leave the interface on the MTU this run set (RV4 F3.1)
    `if [ ! -s "$d/act" ] && [ -e "$d/iface" ] && [ "$(state active)" = active ] && [ -n "$(state mtu)" ] && ${exists}; then case $act in none|sync) ${sh`[ "$(cat ${`/sys/class/net/${iface}/mtu`} 2>/dev/null)" = "$(state mtu)" ]`.text} || act=mtu ;; esac; fi`,
    // a kept sync or MTU set of a try that failed, retried after the interface went (RV2 finding 12): only a restart
    // brings it back, on the restored file; without this every retry failed on the missing interface
    `case $act in sync|mtu) if ! ${exists}; then act=restart; fi ;; esac`,
    'echo "$act" > "$d/act"',
    // down on the file it came up with, before that file is restored or removed (see above)
    // a unit to stop for good goes down on the file it came up with, before that file is restored or removed (see
    // above); a restart stays one `systemctl restart` after the restore (a stop, then a start 0.2 s later, failed in
    // the lab's containers: `Failed to attach to cgroup ... status=219/CGROUP`, and wg0 stayed down)
    `case $act in down) ${stop} ;; esac`,
    // a file that cannot be put back (a full disk: a new user's finding) fails the revert, leaves no partial copy, and
    // the timer tries again (revertNowScript); the interface is still brought back up on what is there
    'bad=',
    // a file equal to its snapshot is left alone: the change may never have been written (Q9 F-immutable: an
    // immutable wg0.conf failed the write, and the revert then failed to "restore" the file it had never changed)
    'restore() { if [ -e "$d/$1.absent" ]; then rm -f "$2" || bad="$bad $2"; elif [ -f "$d/$1" ]; then if [ -f "$2" ] && cmp -s "$d/$1" "$2"; then :; else { cp -p "$d/$1" "$2.meshctl-revert" && mv -f "$2.meshctl-revert" "$2"; } || { rm -f "$2.meshctl-revert"; bad="$bad $2"; }; fi; fi; }',
    sh`restore config ${p.config}`.text,
    sh`restore sysctl ${p.sysctl}`.text,
    ...(systemd
      ? [
          sh`restore dropin ${p.reloadDropIn}`.text,
          sh`if [ "$rr" = 1 ]; then restore rr_script ${r.script}; restore rr_service ${r.service}; restore rr_timer ${r.timer}; fi`.text,
          // a directory the change made (absent at the snapshot) goes too, but only while empty: rmdir(2) refuses a
          // directory someone put files in since, in one step (Q5 4a: a cold start's revert left an empty drop-in dir)
          sh`if [ -e "$d/dropin_dir.absent" ]; then rmdir ${posix.dirname(p.reloadDropIn)} 2>/dev/null || true; fi`.text,
          sh`if [ -e "$d/rr_dir.absent" ]; then rmdir ${posix.dirname(r.script)} 2>/dev/null || true; fi`.text,
          'if [ $units = 1 ]; then systemctl daemon-reload; fi',
          sh`if [ "$rr" = 1 ] && [ "$(state rr_enabled)" = enabled ] && [ "$(systemctl is-enabled ${r.timerUnit} 2>/dev/null)" != enabled ]; then ${raw(systemctlEnablement('enable', r.timerUnit))} || true; fi`
            .text,
          sh`if [ "$rr" = 1 ] && [ "$(state rr_active)" = active ] && { [ $units = 1 ] || ! systemctl is-active -q ${r.timerUnit}; }; then systemctl restart ${r.timerUnit} || true; fi`
            .text,
        ]
      : []),
    'v=$(state rp_all); [ -n "$v" ] && echo "$v" > /proc/sys/net/ipv4/conf/all/rp_filter',
    'v=$(state rp_default); [ -n "$v" ] && echo "$v" > /proc/sys/net/ipv4/conf/default/rp_filter',
    'case $act in',
    // checked: an interface that does not come back fails the revert (its timer tries again), never `reverted`
    `  start) ${start} || { sleep 1; ${start}; } || bad="$bad ${p.service}" ;;`,
    `  restart) ${restart} || { sleep 1; ${restart}; } || bad="$bad ${p.service}" ;;`,
    // a sync that fails (not one that finds nothing to send) fails the revert: the live peers may still be the change's
    `  sync|mtu) if [ $act = mtu ]; then ${sh`ip link set dev ${iface} mtu "$(state mtu)"`.text} || bad="$bad ${iface} MTU $(state mtu)"; fi`,
    `    if ${sync}; then echo "the live peers are the restored ${iface}.conf's (only what differed was sent; interface kept)"; else bad="$bad ${iface} peers (the sync failed)"; fi`,
    `${routes} ;;`,
    `  down) if [ "$(state up)" = yes ]; then ${sh`wg-quick up ${iface}`.text} 9>&-; else ${sh`ip link del ${iface}`.text} 2>/dev/null; fi ;;`,
    'esac',
    // the live state the run may have set with the file's [Interface] unchanged (addresses, a relay's forwarding and
    // rule), on an interface this run reached that ran before and runs now: put back as the snapshot has it (RV5 F3)
    `if [ -e "$d/iface" ] && [ "$(state active)" = active ] && [ "$(state up)" = yes ] && ${exists}; then case $act in none|sync|mtu|restart|start)`,
    liveStateRestore(iface),
    ';; esac; fi',
    ...(systemd
      ? [
          sh`was=$(state enabled); now=$(systemctl is-enabled ${p.service} 2>/dev/null)`.text,
          `if [ -n "$was" ] && [ "$was" != "$now" ]; then case "$was" in enabled) ${systemctlEnablement('enable', p.service)} ;; *) ${systemctlEnablement('disable', p.service)} ;; esac; fi`,
        ]
      : []),
    'if [ -n "$bad" ]; then echo "not reverted: could not restore, start or sync$bad" >&2; exit 1; fi',
    'date +%s > "$d/reverted"',
    'echo "reverted at $(date)"',
  ].join('\n');
}

/**
 * A shell test on a run's snapshot directory `$o`: true while its revert can still act, i.e. it has not run and a
 * timer (or its service, a revert running now) or the fallback's background sleep of it is alive. Such a directory of
 * another run holds a change that nobody confirmed yet and that goes back by itself (armScript refuses to arm over
 * it, pendingRollbacksScript reports it, `down` cancels it).
 */
const CAN_STILL_ACT =
  '[ ! -e "$o/reverted" ] && { { [ -s "$o/unit" ] && { systemctl is-active -q "$(cat "$o/unit").timer" || systemctl is-active -q "$(cat "$o/unit").service"; } 2>/dev/null; } || { [ -s "$o/pid" ] && kill -0 "$(cat "$o/pid")" 2>/dev/null; }; }';

/**
 * What the arm says on stderr when another run's change is pending in `$o` (finding 18: name the run that left it and
 * when it goes back, so the next step is clear; `$o/deadline` is missing in a snapshot of an older meshctl).
 */
const PENDING_MESSAGE = [
  'w=$(cat "$o/deadline" 2>/dev/null || true)',
  `if [ -n "$w" ]; then at=" at $(date -u -d "@$w" '+%H:%M:%S UTC') (in $(( w - $(date +%s) )) s)"; else at=" within its deadline"; fi`,
  `echo "not changed: an unconfirmed change of an earlier meshctl run is pending here (\${o##*/}: interrupted, or killed, before it was confirmed); the node starts going back to that run's snapshot by itself$at; run up again after that" >&2`,
].join('; ');

/**
 * Takes the run's revert lock on fd 9 (`$d/revert.lock`, flock(1)): the node's revert (revertScript) holds it while it
 * runs, so a revert never runs twice at once and nothing removes a run's directory under a running revert
 * (disarmScript, revertNowScript, CANCEL_FUNCTION). Waits up to REVERT_LOCK_WAIT_S (where flock has no -w, as
 * busybox's, takes it only when free); on failure runs `orElse`. Without flock: nothing, as before 2026-12.
 * `$d` must exist (the redirection makes the file in it).
 */
const takeRevertLock = (orElse: string): string =>
  `if command -v flock >/dev/null 2>&1; then exec 9>>"$d/revert.lock" || ${orElse}; { flock -w ${REVERT_LOCK_WAIT_S} 9 2>/dev/null || flock -n 9; } || ${orElse}; fi`;

/** Seconds a script waits for another revert of the run to end (a revert's slowest part, a wireguard-go restart, took 15 s on a loaded lab host). */
export const REVERT_LOCK_WAIT_S = 90;

/**
 * The labels (withRevertArmed) of the steps that change the interface itself: the enable step (../steps/service.ts:
 * restart, peers synced, started). The config step only writes files; a run stopped before its enable step (a "no"
 * or Ctrl-C at the config gate, or its timer after a second Ctrl-C) left the interface as it was, and its revert puts
 * the files back and leaves the interface alone (a new user's finding, 2026-12-02: it restarted wg-quick on every
 * node, a 0.3-0.9 s cut of the whole mesh for saying no). The arm of such a step leaves `$d/iface`.
 */
const INTERFACE_LABELS: ReadonlySet<string> = new Set(['enable']);

/**
 * The arm script, run at the start of a changing step's script. The first arm of a run snapshots the node (files
 * and state as they are before any change of this run); a later arm (the enable step after the config step) keeps
 * that snapshot and only restarts the timer, so the window counts from the latest change. Refuses (exit
 * REVERT_FIRED_EXIT) when the revert of this run already ran, e.g. after a long wait at a gate: the node is back on
 * its old config and the step must not change it now. `label` names the unit (one per arming step).
 */
export function armScript(iface: string, options: RollbackOptions, systemd: boolean, label: string): string {
  const p = wireguardPaths(iface);
  const r = reresolvePaths(iface);
  const { dir, unitPrefix } = revertPaths(options.runId);
  const unit = `${unitPrefix}-${label}`;
  const deadline = Math.floor(options.deadlineS);
  const script = revertScript(iface, options.runId, systemd);
  const snapshot = (name: string, path: string) =>
    sh`if [ -f ${path} ]; then cp -p ${path} "$d/"${name}; else : > "$d/"${`${name}.absent`}; fi`.text;
  // a directory the change may create: its absence is kept (revertScript removes it again while it is empty)
  const absentDir = (name: string, path: string) => sh`if [ ! -d ${path} ]; then : > "$d/"${`${name}.absent`}; fi`.text;
  // The new timer starts before the earlier arm's is stopped: this script can be killed between any two lines
  // (Ctrl-C ends a run's remote commands), and the node must never be left changed with no timer at all. Two armed
  // at once are harmless: the first to fire reverts, the other finds `reverted`; a confirmed run removes $d, and a
  // timer left over then finds no revert.sh.
  const timer = systemd
    ? [
        // a finished revert of an earlier run may linger as a failed transient unit: clear those
        "systemctl reset-failed 'meshctl-revert-*' 2>/dev/null || true",
        'old=$(cat "$d/unit" 2>/dev/null || true)',
        // the same step armed again: a unit name is started once, so this one goes first
        sh`if [ "$old" = ${unit} ]; then systemctl stop ${`${unit}.timer`} 2>/dev/null || true; fi`.text,
        sh`systemctl reset-failed ${`${unit}.service`} 2>/dev/null || true`.text,
        // an absolute time (OnCalendar=), not --on-active: systemd re-arms an OnActiveSec= timer at every
        // `systemctl daemon-reload` (systemd 252 in the lab: a reload 5 s in moved the elapse 5 s later), and every
        // config step, down and package install reloads: a pending revert was postponed again and again (finding 18)
        sh`systemd-run --quiet --unit=${unit} --on-calendar="$(date -u -d "@$when" '+%Y-%m-%d %H:%M:%S') UTC" --timer-property=AccuracySec=1s /bin/sh "$d/revert.sh"`
          .text,
        sh`echo ${unit} > "$d/unit"`.text,
        sh`if [ -n "$old" ] && [ "$old" != ${unit} ]; then systemctl stop "$old.timer" 2>/dev/null || true; fi`.text,
      ]
    : [
        'old=$(cat "$d/pid" 2>/dev/null || true)',
        // its own session and without the run's token: neither a lost SSH session nor meshctl's stop script ends it
        `env -u MESHCTL_RUN setsid nohup sh -c 'sleep ${deadline}; exec /bin/sh "$1"' meshctl-revert "$d/revert.sh" </dev/null >/dev/null 2>&1 &`,
        'echo $! > "$d/pid"',
        'if [ -n "$old" ]; then kill "$old" 2>/dev/null || true; fi',
      ];
  return [
    '# arm the rollback (src/engine/revert.ts)',
    sh`d=${dir}`.text,
    `if [ -e "$d/reverted" ]; then echo "the rollback armed by this run already ran (its ${deadline} s window passed): the node is back on its previous config; run again" >&2; exit ${REVERT_FIRED_EXIT}; fi`,
    'if [ ! -e "$d/state" ]; then',
    // another run's unconfirmed change still pending here: snapshotting now would make its state the one to go
    // back to, and its timer would flip the node under this run; refuse, before anything changes
    // finding 33: another run's directory that can no longer act (reverted, or no timer, revert or sleep of it left:
    // a run killed after its revert or its confirmation) is removed; the runs hold the node's run lock, so none is
    // being armed meanwhile
    '  for o in /run/meshctl/revert-*; do',
    '    [ -d "$o" ] && [ "$o" != "$d" ] || continue',
    `    if ${CAN_STILL_ACT}; then`,
    `      if [ -e "$o/state" ]; then ${PENDING_MESSAGE}; exit ${PENDING_OTHER_EXIT}; fi`,
    '      continue',
    '    fi',
    '    rm -rf "$o"',
    '  done',
    '  (umask 077; mkdir -p "$d")',
    `  ${snapshot('config', p.config)}`,
    `  ${snapshot('sysctl', p.sysctl)}`,
    ...(systemd
      ? [
          `  ${snapshot('dropin', p.reloadDropIn)}`,
          `  ${absentDir('dropin_dir', posix.dirname(p.reloadDropIn))}`,
          `  ${absentDir('rr_dir', posix.dirname(r.script))}`,
          `  ${snapshot('rr_script', r.script)}`,
          `  ${snapshot('rr_service', r.service)}`,
          `  ${snapshot('rr_timer', r.timer)}`,
        ]
      : []),
    '  {',
    systemd
      ? `    echo "active=$(systemctl is-active ${sh`${p.service}`.text} 2>/dev/null)"; echo "enabled=$(systemctl is-enabled ${sh`${p.service}`.text} 2>/dev/null)"`
      : `    echo "active=$([ -e ${sh`${`/sys/class/net/${iface}`}`.text} ] && echo active || echo inactive)"`,
    ...(systemd
      ? [
          `    echo rr=1; echo "rr_active=$(systemctl is-active ${sh`${r.timerUnit}`.text} 2>/dev/null)"; echo "rr_enabled=$(systemctl is-enabled ${sh`${r.timerUnit}`.text} 2>/dev/null)"`,
        ]
      : []),
    `    echo "up=$([ -e ${sh`${`/sys/class/net/${iface}`}`.text} ] && echo yes || echo no)"`,
    `    echo "mtu=$(cat ${sh`${`/sys/class/net/${iface}/mtu`}`.text} 2>/dev/null)"`,
    // what the enable step may set live while the file's [Interface] stays (liveStateRestore puts it back: RV5 F3)
    `    echo "addrs=$(${liveAddressesCommand(iface)})"`,
    `    echo "fwd=$(cat ${sh`${`/proc/sys/net/ipv4/conf/${iface}/forwarding`}`.text} 2>/dev/null)"`,
    `    echo "relay_rule=$(${relayRuleStateCommand(iface)})"`,
    `    echo "peers=$(${livePeersDigestCommand(iface)})"`,
    '    echo "rp_all=$(cat /proc/sys/net/ipv4/conf/all/rp_filter)"; echo "rp_default=$(cat /proc/sys/net/ipv4/conf/default/rp_filter)"',
    '  } > "$d/state.tmp" && mv -f "$d/state.tmp" "$d/state"',
    'fi',
    // from here on this run may change the interface itself (INTERFACE_LABELS); written before the step acts
    ...(INTERFACE_LABELS.has(label) ? [': > "$d/iface"'] : []),
    // written whole, then renamed: a timer armed earlier may run it at any moment
    `(umask 077; cat > "$d/revert.sh.tmp") <<'MESHCTL_REVERT_EOF'\n${script}\nMESHCTL_REVERT_EOF`,
    'mv -f "$d/revert.sh.tmp" "$d/revert.sh"',
    // when the revert fires (Unix seconds): the timer's time, and what another run's refusal tells the operator
    sh`when=$(( $(date +%s) + ${raw(String(deadline))} ))`.text,
    'echo "$when" > "$d/deadline"',
    ...timer,
    `echo rollback=armed`,
  ].join('\n');
}

/**
 * Stops every timer this run armed on the node (a glob over its unit prefix: an arm killed between starting its timer
 * and stopping the earlier one leaves two, see armScript), when the run armed any (`$d/unit`).
 */
const stopRunTimers = (unitPrefix: string): string =>
  sh`if [ -s "$d/unit" ]; then systemctl stop ${`${unitPrefix}-*.timer`} 2>/dev/null || true; fi`.text;

/** Stops this run's timer (or background sleep) and removes its snapshot: the change is confirmed. */
export function disarmScript(runId: string): string {
  const { dir, unitPrefix } = revertPaths(runId);
  return [
    sh`d=${dir}`.text,
    stopRunTimers(unitPrefix),
    // the background sleep, not a revert it already became (that one is waited for below: killed half-way it would
    // leave the node half-reverted)
    'if [ -s "$d/pid" ] && [ ! -e "$d/log" ]; then kill "$(cat "$d/pid")" 2>/dev/null || true; fi',
    // no snapshot at all: removed by someone else (or a reboot cleared /run); whether the node went back is unknown
    'if [ ! -d "$d" ]; then echo rollback=gone; exit 0; fi',
    // a revert that fired as the change was being confirmed: waited for, and then reported, never removed under it
    takeRevertLock('{ echo "a revert of this run is still running" >&2; exit 1; }'),
    'if [ -e "$d/reverted" ]; then echo rollback=already-reverted; exit 0; fi',
    'rm -rf "$d"',
    'echo rollback=disarmed',
  ].join('\n');
}

/**
 * Runs the revert now (meshctl decided the change failed) and, once it is done, stops the timer; prints
 * `rollback-live=WORDS` when it put live state back and `rollback-kept=WORDS` for what it did not (liveStateRestore),
 * then rollback=reverted, and removes the run's directory. The timer stays armed until then: a revert cut off midway
 * (the command's deadline, a lost connection, Ctrl-C) or failed is still finished by the node itself when the timer
 * fires (the revert is idempotent; the two take turns: revertScript). Until 2026-12 the timer was stopped first, and
 * a revert that timed out left the node half-reverted with nothing to finish it (CI, stop 25). A failed revert keeps
 * its directory (its log, and the timer that tries again).
 */
export function revertNowScript(runId: string): string {
  const { dir, unitPrefix } = revertPaths(runId);
  return [
    sh`d=${dir}`.text,
    // the arm itself did not happen (the step failed before it): nothing of this run changed here
    'if [ ! -e "$d/revert.sh" ]; then echo rollback=none; exit 0; fi',
    '/bin/sh "$d/revert.sh"',
    'if [ ! -e "$d/reverted" ]; then tail -n 4 "$d/log" >&2; exit 1; fi',
    stopRunTimers(unitPrefix),
    'if [ -s "$d/pid" ]; then kill "$(cat "$d/pid")" 2>/dev/null || true; fi',
    // finding 33: done and reported by the run: nothing of it is left in /run/meshctl (removed under the lock: a
    // timer's revert waiting for it finds `reverted` or nothing, never half a directory)
    takeRevertLock('true'),
    // what the revert put back on the running interface (liveStateRestore), for the run's words
    'if [ -s "$d/live" ]; then echo "rollback-live=$(cat "$d/live")"; fi',
    'if [ -s "$d/kept" ]; then echo "rollback-kept=$(cat "$d/kept")"; fi',
    'rm -rf "$d"',
    'echo rollback=reverted',
  ].join('\n');
}

/**
 * A changing step's action with the rollback armed first, in the same script (one round trip): the arm's lines run
 * before the step's own `set -e` script. Undefined actions stay undefined (nothing changes, nothing is armed).
 */
export function withRevertArmed(
  action: NodeAction | undefined,
  iface: string,
  rollback: RollbackOptions | undefined,
  systemd: boolean,
  label: string,
): NodeAction | undefined {
  if (!action || !rollback) return action;
  const change: Change = {
    kind: 'arm-rollback',
    unit: `${revertPaths(rollback.runId).unitPrefix}-${label}`,
    deadlineS: rollback.deadlineS,
    systemd,
  };
  return {
    ...action,
    changes: [change, ...action.changes],
    script: `set -e\n${armScript(iface, rollback, systemd, label)}\n${action.script}`,
  };
}

/** What the run does with an armed node after a phase (decideRollback). */
export type RollbackDecision = 'revert' | 'disarm' | 'keep';

/**
 * The decision for one armed node after a phase, from its verdicts alone:
 * - it failed (a step error or a failed check): revert now;
 * - the run stops here (another node's STOP): revert now, even a node that passed: a mesh change is a set (a peer
 *   added on one node means something only with its counterpart), so a change is confirmed only by a whole gate
 *   that says GO, and a STOP brings every node changed and not yet confirmed back to the previous, consistent mesh;
 * - it passed a confirming phase (one with a fresh-login check) whose gate is GO: disarm;
 * - else keep the timer running (the confirmation comes in a later phase).
 */
export function decideRollback(node: { failed: boolean }, phase: { confirms: boolean; stopping: boolean }): RollbackDecision {
  if (node.failed || phase.stopping) return 'revert';
  return phase.confirms ? 'disarm' : 'keep';
}

/** The check whose pass, after a change, confirms a node (a fresh SSH login: registry.ts). */
export const CONFIRMING_CHECK = 'ssh-still-reachable';

/** Runs a script on a node over the run's connection (exit code and output); rejects when the node is unreachable. */
export type RunOnNode = (node: string, script: string) => Promise<{ code: number; stdout: string; stderr: string }>;

export interface SettleInput {
  /** the run whose reverts are settled (RollbackOptions.runId) */
  runId: string;
  /** nodes whose revert is armed and not yet settled; settled ones are removed */
  armed: Set<string>;
  /** the phase's node reports: a `rollback` check is added to each settled node */
  reports: NodePhaseReport[];
  /** the phase's checks include the confirming fresh login (CONFIRMING_CHECK) */
  confirms: boolean;
  deadlineS: number;
  run: RunOnNode;
  /** runs a script over a NEW SSH login (the confirmation of a run whose playbook has no confirming phase) */
  runFresh?: RunOnNode;
  /**
   * the confirming check made a fresh SSH login (default true); false when the run changed nothing that takes effect
   * (./plan.ts takesEffect: a comment-only rewrite), where it rests on the run's own login (RV5 F4: the disarm still
   * said "confirmed by a fresh SSH login")
   */
  loginProven?: boolean;
}

const failedReport = (r: NodePhaseReport) => Boolean(r.error) || r.checks.some((c) => c.status === 'fail');
const rollbackCheck = (status: CheckResult['status'], message: string, evidence?: string[]): CheckResult => ({
  id: 'rollback',
  status,
  message,
  ...(evidence?.length ? { evidence } : {}),
});
const lastLines = (text: string) => text.trim().split('\n').slice(-4).filter(Boolean);

/**
 * Reverts one node now; the check says whether it worked, and what happens otherwise. `due` (an interrupted run's
 * revert: "17:28:27 UTC", when its timer fires at the latest) words the outcome as Ctrl-C's notes do: "reverted", or
 * "not reached: it starts rolling back by itself by DUE" (its timer fires by then; the rollback takes seconds more).
 */
async function revertNow(node: string, why: string, failed: boolean, input: SettleInput, due?: string): Promise<CheckResult> {
  try {
    const result = await input.run(node, revertNowScript(input.runId));
    // the step failed before its arm (another run's pending change, a lost connection): nothing here to add to its failure
    if (result.code === 0 && /^rollback=none$/m.test(result.stdout))
      return rollbackCheck('pass', `nothing of this run changed on ${node}: nothing to roll back`);
    if (result.code === 0 && /^rollback=reverted$/m.test(result.stdout)) {
      // what it set back on the running interface besides the files (addresses, a relay's forwarding: RV5 F3)
      const live = /^rollback-live=(.+)$/m.exec(result.stdout)?.[1];
      // and what it did not: the live peers or key, when they differed from the file before the run
      const kept = /^rollback-kept=(.+)$/m.exec(result.stdout)?.[1];
      const tail = `${live ? ` (put back live: ${redactSecrets(live)})` : ''}${kept ? `; not put back: ${redactSecrets(kept)}` : ''}`;
      return rollbackCheck(
        failed ? 'fail' : 'warn',
        due
          ? `reverted: ${why}; ${node} is back on its previous config and interface state${tail}`
          : `${why}: ${node} was ROLLED BACK to its previous config and interface state${tail}`,
      );
    }
    return rollbackCheck(
      'fail',
      `${why}, and the rollback on ${node} failed (exit ${result.code}); its own timer tries it again ${due ? `by ${due}` : `within ${input.deadlineS} s`}, unless that already ran`,
      // the revert's log quotes wg(8), which prints a rejected key's value: never shown as it is
      lastLines(result.stderr || result.stdout).map((line) => redactSecrets(line)),
    );
  } catch (error) {
    return rollbackCheck(
      'fail',
      due
        ? `not reached (${(error as Error).message}): it starts rolling back by itself by ${due}`
        : `${why}, and ${node} could not be told to roll back (${(error as Error).message}): it rolls back by itself within ${input.deadlineS} s`,
    );
  }
}

/** Disarms one node's revert; a revert that already fired (the window passed) or a disarm that fails is a failure. */
async function disarm(node: string, input: SettleInput, run: RunOnNode = input.run): Promise<CheckResult> {
  try {
    const result = await run(node, disarmScript(input.runId));
    if (result.code === 0 && /^rollback=disarmed$/m.test(result.stdout))
      return rollbackCheck(
        'pass',
        input.loginProven === false
          ? 'change confirmed by the checks (a file rewritten with no effect on the interface or the logins): rollback disarmed'
          : 'change confirmed by a fresh SSH login and the checks: rollback disarmed',
      );
    if (/^rollback=already-reverted$/m.test(result.stdout))
      return rollbackCheck(
        'fail',
        `${node} rolled back by itself before it was confirmed (its ${input.deadlineS} s window passed): run again`,
      );
    // a review's finding (stop 25): a missing snapshot was reported "disarmed", though the node may have gone back
    if (/^rollback=gone$/m.test(result.stdout))
      return rollbackCheck(
        'fail',
        `this run's rollback record on ${node} is gone (removed by another run, or /run cleared by a reboot): whether ${node} went back is unknown; run up again`,
      );
    return rollbackCheck(
      'fail',
      `the rollback on ${node} could not be disarmed (exit ${result.code}): it fires within ${input.deadlineS} s`,
      lastLines(result.stderr),
    );
  } catch (error) {
    return rollbackCheck(
      'fail',
      `the rollback on ${node} could not be disarmed (${(error as Error).message}): it fires within ${input.deadlineS} s`,
    );
  }
}

/**
 * After a phase, settles every armed node as decideRollback says: reverts a failed node (and, when the run stops
 * here, every node not yet confirmed), disarms a node that passed a confirming phase, keeps the others armed.
 * Adds a `rollback` check to each settled node's report (fail: the node failed, or its revert/disarm did; warn:
 * rolled back only because the run stops; pass: confirmed). Never throws.
 */
export async function settleRollbacks(input: SettleInput): Promise<void> {
  const stopping = input.reports.some(failedReport);
  await Promise.all(
    input.reports
      .filter((r) => input.armed.has(r.node))
      .map(async (report) => {
        const failed = failedReport(report);
        const decision = decideRollback({ failed }, { confirms: input.confirms, stopping });
        if (decision === 'keep') return;
        input.armed.delete(report.node);
        const why = failed ? `${report.node} failed its checks after the change` : 'the run stops before this change was confirmed';
        report.checks.push(decision === 'revert' ? await revertNow(report.node, why, failed, input) : await disarm(report.node, input));
      }),
  );
}

/** "17:28:27 UTC": the UTC clock time of `ms` (Unix ms). */
export const utcClock = (ms: number): string => `${new Date(ms).toISOString().slice(11, 19)} UTC`;

/**
 * At the end of a run, the nodes still armed. A run that went through every phase with GO (a playbook without a
 * confirming phase) confirms them now: the disarm runs over a NEW SSH login (`runFresh`), so a node that cannot be
 * logged into again is not confirmed and rolls back by itself. A run that a gate ended: reverted now. An interrupted
 * run (Ctrl-C; a new user's finding 4: its nodes stayed half-changed for the whole window and the next `up` was
 * refused until then): reverted now too, all nodes at once over the run's live connections, as a gate answered "no"
 * does; the caller has waited for the step scripts still running (./runner.ts), so no revert races one. A node that
 * cannot be told rolls back by itself: its note says by when (`dueMs`: the latest time its timer fires, Unix ms).
 * One note per node, in words, in the order of `armed`.
 */
export async function settleLeftovers(
  input: Omit<SettleInput, 'reports' | 'confirms'> & { interrupted: boolean; completed: boolean; dueMs?: (node: string) => number },
): Promise<string[]> {
  const nodes = [...input.armed];
  const settled = { ...input, reports: [], confirms: false };
  if (input.interrupted && !input.completed) {
    return Promise.all(
      nodes.map(async (node) => {
        const due = utcClock(input.dueMs?.(node) ?? Date.now() + input.deadlineS * 1000);
        const check = await revertNow(node, 'interrupted before this change was confirmed', false, settled, due);
        input.armed.delete(node);
        return `${node}: ${check.message}`;
      }),
    );
  }
  const notes: string[] = [];
  for (const node of nodes) {
    input.armed.delete(node);
    if (input.completed && input.runFresh) {
      notes.push(`${node}: ${(await disarm(node, { ...settled, confirms: true }, input.runFresh)).message}`);
      continue;
    }
    notes.push(`${node}: ${(await revertNow(node, 'the run ended before this change was confirmed', false, settled)).message}`);
  }
  return notes;
}

/** How long mc_cancel (CANCEL_FUNCTION) waits for a revert already running to end, seconds. */
export const CANCEL_LOCK_WAIT_S = 60;

/**
 * A shell function `mc_cancel DIR` that takes a run's pending revert off the node: its timers stopped (the glob over
 * the run's unit prefix, as stopRunTimers), its background sleep killed, a revert already running waited for (up to
 * CANCEL_LOCK_WAIT_S: killed half-way it would leave half the files restored); prints `cancelled` (the directory removed),
 * `reverted` (the revert ran first: the node is back on that run's snapshot) or `failed` (a revert still running
 * after that wait). A running revert is one that holds the run's lock (revertScript, where the node has flock(1)): a
 * revert that failed and ended is cancelled like a pending one (a review's finding: read from its log, every `down`
 * refused such a node for good). Without flock, as before: a log without `reverted` is a revert still running.
 * Both scripts that cancel a revert (confirmPendingScript, cancelAllRollbacksScript) define it.
 */
const CANCEL_FUNCTION = [
  'mc_cancel() {',
  '  r=${1##*/revert-}',
  '  if [ -s "$1/unit" ]; then systemctl stop "meshctl-revert-$r-*.timer" 2>/dev/null || true; fi',
  '  if [ -s "$1/pid" ] && [ ! -e "$1/log" ]; then kill "$(cat "$1/pid")" 2>/dev/null || true; fi',
  '  if command -v flock >/dev/null 2>&1; then',
  `    ( { flock -w ${CANCEL_LOCK_WAIT_S} 8 2>/dev/null || flock -n 8; } || { echo failed; exit 0; }`,
  '      if [ -e "$1/reverted" ]; then echo reverted; else rm -rf "$1"; echo cancelled; fi ) 8>>"$1/revert.lock"',
  '    return',
  '  fi',
  `  i=0; while [ -e "$1/log" ] && [ ! -e "$1/reverted" ] && [ $i -lt ${CANCEL_LOCK_WAIT_S} ]; do sleep 1; i=$((i + 1)); done`,
  '  if [ -e "$1/reverted" ]; then echo reverted; elif [ -e "$1/log" ]; then echo failed; else rm -rf "$1"; echo cancelled; fi',
  '}',
].join('\n');

/** The facts probe's section (../facts/sections.ts) that lists the pending reverts of earlier runs on a node. */
export const PENDING_SECTION = 'rollback-pending';

/**
 * The section's command: one `pending=RUN DEADLINE` line per snapshot directory of a run whose revert can still act
 * (CAN_STILL_ACT; DEADLINE in Unix seconds, empty for an older meshctl's). Only shell builtins when /run/meshctl holds
 * no snapshot (issue 10: a converged run's probe pays no exec for it).
 */
export function pendingRollbacksScript(): string {
  return [
    'for o in /run/meshctl/revert-*; do',
    '  [ -d "$o" ] && [ -e "$o/state" ] || continue',
    `  if ${CAN_STILL_ACT}; then echo "pending=\${o##*/revert-} $(cat "$o/deadline" 2>/dev/null)"; fi`,
    'done',
  ].join('\n');
}

/** The facts probe's section that lists (and, in a changing run, removes) the reverts that fired by themselves. */
export const FIRED_SECTION = 'rollback-fired';

/**
 * The section's command (a new user's finding 7: a run whose revert fired left /run/meshctl/revert-RUN/ with its
 * `reverted` marker for good, and no run said the node had rolled itself back): one `fired=RUN TIME` line per
 * snapshot directory whose revert ran to its end (`reverted` holds the Unix time it did), and with `remove` that
 * directory removed once listed. Only a directory with the marker: a pending one (no marker) or a revert that started
 * and failed (its `log`, no marker) is never touched. A revert meshctl itself ran removes its directory at once
 * (revertNowScript), so what is found here fired by itself: the run that armed it never confirmed its change.
 * `remove` only under the run lock (a changing run's facts probe; a dry run reports and leaves them). With `lockRun`
 * (the run's lock token, ./lock.ts LockHolder.run) the shell checks that: a directory is removed only when the lock
 * file holds `run=lockRun`, since the lock's section runs in a subshell and the probe goes on after a refusal (a new
 * user's finding, 2026-12-01: an `up` refused by another run's lock deleted the record, and the rollback was never
 * reported); without it (a caller that passes no token) it is removed as before. Only shell builtins (`read`, `case`)
 * when nothing fired, so a converged run's probe pays no exec for it (issue 10).
 */
export function firedRollbacksScript(remove: boolean, lockRun?: string): string {
  if (lockRun !== undefined && !/^[0-9a-f]{8,64}$/.test(lockRun)) throw new Error(`bad lock token ${lockRun}`);
  const removal = !remove
    ? []
    : lockRun === undefined
      ? ['  rm -rf "$o"']
      : [
          // read once, when the first fired one is found: builtins only (read, case)
          `  if [ -z "$mc_ours" ]; then mc_ours=no; [ -f ${LOCK_FILE} ] && while IFS= read -r mc_l || [ -n "$mc_l" ]; do case $mc_l in *" run=${lockRun}"|*" run=${lockRun} "*) mc_ours=yes;; esac; done < ${LOCK_FILE}; fi`,
          '  if [ "$mc_ours" = yes ]; then rm -rf "$o"; fi',
        ];
  return [
    ...(removal.length > 1 ? ['mc_ours='] : []),
    'for o in /run/meshctl/revert-*; do',
    '  [ -d "$o" ] && [ -f "$o/reverted" ] || continue',
    '  t=; read -r t < "$o/reverted" || true',
    '  echo "fired=${o##*/revert-} $t"',
    ...removal,
    'done',
  ].join('\n');
}

/** A revert that fired by itself on a node: the run that armed it, and when it ran (Unix seconds, when known). */
export interface FiredRollback {
  runId: string;
  at?: number;
}

/**
 * Reads the `KEY=RUN [TIME]` lines of a section (pendingRollbacksScript's `pending=`, firedRollbacksScript's
 * `fired=`; TIME in Unix seconds); every other line, and a run id that is not [0-9a-f]{8,32}, is ignored.
 */
function parseRunLines(body: string | undefined, key: 'pending' | 'fired'): { runId: string; time?: number }[] {
  const found: { runId: string; time?: number }[] = [];
  const shape = new RegExp(`^${key}=([0-9a-f]{8,32})(?: (\\d+))?\\s*$`);
  for (const line of (body ?? '').split('\n')) {
    const m = shape.exec(line.trim());
    if (m) found.push({ runId: m[1]!, ...(m[2] ? { time: Number(m[2]) } : {}) });
  }
  return found;
}

/** Reads firedRollbacksScript's output; lines that are not a well-formed `fired=` line are ignored. */
export const parseFiredRollbacks = (body: string | undefined): FiredRollback[] =>
  parseRunLines(body, 'fired').map(({ runId, time }) => ({ runId, ...(time !== undefined ? { at: time } : {}) }));

/** A pending revert of an earlier run on a node: its run id and when it fires (Unix seconds, when known). */
export interface PendingRollback {
  runId: string;
  deadline?: number;
}

/** Reads pendingRollbacksScript's output; lines that are not a well-formed `pending=` line are ignored. */
export const parsePendingRollbacks = (body: string | undefined): PendingRollback[] =>
  parseRunLines(body, 'pending').map(({ runId, time }) => ({ runId, ...(time !== undefined ? { deadline: time } : {}) }));

/** "at 17:02:09 UTC" (or "within its deadline" when the snapshot does not say). */
export const describeDue = (p: PendingRollback): string =>
  p.deadline === undefined ? 'within its deadline' : `at ${new Date(p.deadline * 1000).toISOString().slice(11, 19)} UTC`;

/**
 * Confirms the pending reverts of earlier runs on one node: each cancelled (CANCEL_FUNCTION); prints
 * `pending RUN=cancelled|reverted|failed|gone` per run.
 */
export function confirmPendingScript(runIds: readonly string[]): string {
  const lines = [CANCEL_FUNCTION];
  for (const runId of runIds) {
    const { dir } = revertPaths(runId);
    lines.push(sh`if [ -d ${dir} ]; then echo "pending ${runId}=$(mc_cancel ${dir})"; else echo ${`pending ${runId}=gone`}; fi`.text);
  }
  return lines.join('\n');
}

/**
 * `down`'s first command on a node: every revert meshctl left there cancelled (pending or not) and its snapshot
 * removed, so no timer brings the interface back after it was taken down. Idempotent: nothing left, nothing done.
 * A revert still running after mc_cancel's wait (`failed`) keeps its directory and fails the script (exit 1) before
 * anything else of `down` runs: it may still start the interface again, so the node is not taken down under it.
 */
export function cancelAllRollbacksScript(): string {
  return [
    CANCEL_FUNCTION,
    'mc_busy=',
    'for o in /run/meshctl/revert-*; do',
    '  [ -d "$o" ] || continue',
    '  mc_s=$(mc_cancel "$o")',
    '  echo "rollback ${o##*/revert-}: $mc_s"',
    '  if [ "$mc_s" = failed ]; then mc_busy="$mc_busy ${o##*/}"; else rm -rf "$o"; fi',
    'done',
    'if [ -n "$mc_busy" ]; then echo "a rollback of an interrupted up is still running here ($mc_busy: see its log under /run/meshctl): not taking the interface down under it; run down again" >&2; exit 1; fi',
  ].join('\n');
}

/**
 * Finding of a new user (2026-12-01): an `up` after an interrupted run found every node as the design says (the
 * interrupted run had made the change) and said "converged", while that run's unconfirmed revert was still pending:
 * the nodes flipped back when its timer fired. Now the run reads each node's pending reverts in its facts probe
 * (one more section, no round trip) and, like a `commit` after Junos' `commit confirmed`, CONFIRMS them at the
 * confirming gate (the one with the fresh login, CONFIRMING_CHECK) when that gate is GO: every node then passed a fresh
 * SSH login and the checks with its files and interface as the design says (a node that differed would have been
 * changed by this run, whose arm refuses while another run's change is pending: PENDING_OTHER_EXIT), so the revert
 * could only undo the design. A run that ends before that (a STOP, Ctrl-C, a dry run) confirms nothing and says, per
 * node, that the revert is pending and when it fires (`notes`).
 */
export class PendingRollbacks {
  /** pending reverts found by the facts probe, by node */
  readonly found = new Map<string, PendingRollback[]>();
  /** reverts that fired by themselves, found (and, with `removeFired`, removed) by the facts probe, by node */
  readonly fired = new Map<string, FiredRollback[]>();

  /**
   * `removeFired`: the facts probe removes the directories of reverts that fired (firedRollbacksScript); only for a
   * run that takes the run lock (a changing run), never a dry run, which only reports them. `lockRun`: that run's
   * lock token (./lock.ts RunLocks.holder.run): the probe then removes them only on a node whose lock file holds it,
   * so a run refused by another run's lock leaves the record for a run that reports it.
   */
  constructor(private readonly options: { removeFired: boolean; lockRun?: string } = { removeFired: false }) {}

  /** `registry` with the pending-revert and fired-revert sections prepended to the facts probe of `gather-facts`. */
  registry(registry: Registry): Registry {
    return {
      check: (name) => registry.check(name),
      step: (name) => {
        const step = registry.step(name);
        return name === 'gather-facts' && step?.scope === 'node' ? this.factsStep(step) : step;
      },
    };
  }

  private factsStep(step: NodeStep): NodeStep {
    return {
      ...step,
      plan: (input) => {
        const planned = step.plan(input);
        this.found.delete(input.node.name);
        if (!planned.action) return planned;
        const script = [
          sectionScript(PENDING_SECTION, pendingRollbacksScript()),
          sectionScript(FIRED_SECTION, firedRollbacksScript(this.options.removeFired, this.options.lockRun)),
          planned.action.script,
        ].join('\n');
        return { ...planned, action: { ...planned.action, script } };
      },
      outputs: (input, action, result) => {
        if (result?.ran) {
          const sections = splitSections(result.stdout);
          const pending = parsePendingRollbacks(sections.get(PENDING_SECTION)?.body);
          if (pending.length) this.found.set(input.node.name, pending);
          // a second pass (relay: auto) finds them removed: the first pass's findings stay
          const fired = parseFiredRollbacks(sections.get(FIRED_SECTION)?.body);
          if (fired.length) this.fired.set(input.node.name, fired);
        }
        return step.outputs(input, action, result);
      },
    };
  }

  /**
   * In the confirming phase, after its checks and BEFORE this run's own nodes are settled (./runner.ts
   * RunContext.confirmEarlier): when `confirms` (the phase's checks include CONFIRMING_CHECK; a playbook without one
   * confirms nothing and leaves the notes) and no node of the phase failed, cancels every pending revert found on
   * the phase's nodes, over `run` (a NEW SSH login, so the login is proven since the change it confirms), within
   * `timeoutMs` (ms: mc_cancel waits up to CANCEL_LOCK_WAIT_S for a revert already running, per run id), and adds a `rollback`
   * check to each such node's report: pass when cancelled; fail when the revert ran first or failed, since the node
   * is then no longer as the design says. That failure comes before this run's own nodes are disarmed, so the phase
   * STOPs and they are reverted, not confirmed beside a node that went back (review of 2026-12-01: the confirm ran at
   * the gate, after the disarms). Never throws.
   */
  async confirm(
    reports: NodePhaseReport[],
    confirms: boolean,
    run: (node: string, script: string, timeoutMs: number) => Promise<{ code: number; stdout: string }>,
  ): Promise<void> {
    if (!confirms || reports.some(failedReport)) return;
    await Promise.all(
      reports.map(async (node) => {
        const pending = this.found.get(node.node);
        if (!pending) return;
        this.found.delete(node.node);
        const named = pending.map((p) => `revert-${p.runId}, due ${describeDue(p)}`).join('; ');
        let outcome: string[];
        try {
          const result = await run(
            node.node,
            confirmPendingScript(pending.map((p) => p.runId)),
            (CANCEL_LOCK_WAIT_S * pending.length + 30) * 1000,
          );
          outcome = pending.map((p) => new RegExp(`^pending ${p.runId}=(\\w+)$`, 'm').exec(result.stdout)?.[1] ?? `exit ${result.code}`);
        } catch (error) {
          outcome = pending.map(() => (error as Error).message);
        }
        // a revert neither cancelled, gone nor fired (the confirm failed, or its answer was lost) may still go back:
        // it stays pending, so up --json's pendingReverts and plan's exit 4 still name it (RV4 F3.4)
        const still = pending.filter((_, i) => !['cancelled', 'gone', 'reverted'].includes(outcome[i]!));
        if (still.length) this.found.set(node.node, still);
        if (outcome.every((o) => o === 'cancelled' || o === 'gone'))
          node.checks.push(
            rollbackCheck(
              'pass',
              `confirmed the change an earlier run left unconfirmed (${named}): the node is as the design says and passed the checks, and its revert was cancelled over a new SSH login`,
            ),
          );
        else
          node.checks.push(
            rollbackCheck(
              'fail',
              outcome.includes('reverted')
                ? `the change an earlier run left unconfirmed (${named}) went back by itself before this run could confirm it: ${node.node} is on that run's snapshot now; run up again`
                : `the change an earlier run left unconfirmed (${named}) could not be confirmed (${outcome.join(', ')}): it may still go back; run up again`,
            ),
          );
      }),
    );
  }

  /** One note per node whose pending revert this run did not confirm: what happens, and when. */
  notes(): string[] {
    return [...this.found].map(
      ([node, pending]) =>
        `${node}: an earlier run's change is still unconfirmed and goes back by itself (${pending.map((p) => `revert-${p.runId} ${describeDue(p)}`).join('; ')}); an up that goes through its enable gate before then confirms it`,
    );
  }

  /**
   * One note per node on which a revert fired by itself since the last run looked (a new user's finding 7): when,
   * and which run's change it undid; and whether its directory was removed (a dry run leaves it for the next up).
   */
  firedNotes(): string[] {
    return [...this.fired].map(
      ([node, fired]) =>
        `${fired
          .map(
            (f) => `${node} rolled itself back ${f.at === undefined ? '' : `at ${utcClock(f.at * 1000)} `}(run ${f.runId}: not confirmed)`,
          )
          .join('; ')}${this.options.removeFired ? '' : ' (a dry run: its record stays in /run/meshctl, the next up removes it)'}`,
    );
  }
}
