/**
 * `meshctl rotate-keys` (issue 9): a new key pair on a node, every peer updated, the old key gone, with no packet
 * lost. Per rotated node, in this order:
 * 1. every other node prints its public key and the public keys its interface and its config hold for peers; then
 *    the rotated node makes IFACE.key.new on the node (umask 077, in a temp file made with noclobber, checked root's
 *    0600) and prints only its public half (../steps/keys.ts rotateReadScript): the private key never leaves the
 *    node. A IFACE.key.new already there is used again only when it is root's 0600 and its public half is one the
 *    peers hold that is no node's current key (the record of an interrupted rotation: meshctl put it on them), else
 *    it is removed and the report says so (Q10 F2: a key another user planted was run as "a pending key");
 * 2. the rotated node runs the new key (`wg set IFACE private-key IFACE.key.new`, no file changed). WireGuard then
 *    sends nothing on its old sessions but still receives on them (the kernel expires only their sending halves),
 *    and queues what it sends until a handshake with the new key;
 * 3. every peer gets its config rendered with the new public key (the file `up` would write) and is synced from
 *    it as `wg syncconf` would (../render/systemd.ts syncPeersCommand: only what differs is sent), keeping its key,
 *    its interface and its other peers' sessions, keeps the endpoint it had for the node when the config gives
 *    none, and pings the node once: the handshake with the new key starts at once and both sides' queues go out;
 * 4. the rotated node makes it permanent: rename over IFACE.key (the old key file is gone), IFACE.pub rewritten.
 * The order 2-3 loses no packet in either direction (a new user's finding 7: the earlier order, peers first, lost
 * what the node sent between the peers' update and its swap, encrypted for sessions the peers had dropped); the
 * pairs' packets wait from 2 until 3 is done: `windowMs`. A queue holds at most 128 packets per peer (WireGuard's
 * MAX_STAGED_PACKETS): beyond that, heavy traffic loses its oldest.
 * Every rotation ends in one consistent state (RotationOutcome): a peer that cannot be updated, a step that fails
 * or Ctrl-C before step 4 rolls back (the node runs its old key again, every peer gets its old config back,
 * IFACE.key.new removed only then); Ctrl-C during step 4 completes it. A changing step is never cut by Ctrl-C: it is
 * waited for (bounded by its timeout), as `up` waits for its changing steps. Nodes are rotated one after another;
 * the ping matrix afterwards is the proof.
 */
import type { Inventory, Node } from '../inventory/types.js';
import { checkDeadlineMs, type Connection, type ExecResult } from '../transport/types.js';
import { desiredNodeConfig } from '../topology/desired.js';
import { renderWgQuickConfig } from '../render/wgquick.js';
import { syncPeersStep } from '../render/systemd.js';
import { wireguardPaths } from '../remote/wireguard.js';
import { atomicWriteScript } from '../steps/action.js';
import {
  describeLeftover,
  discardNewKeyScript,
  liveKeyScript,
  parseRotateRead,
  peerHandshakeScript,
  rotateReadScript,
  swapKeyScript,
  type LeftoverKeyFile,
  type RotateRead,
} from '../steps/keys.js';
import { describeFileMode, judgeWireGuardFiles } from '../checks/file-modes.js';
import type { WireGuardFileMode } from '../facts/definitions.js';
import { redactSecrets } from '../remote/redact.js';
import { onForcedExit } from '../interrupt.js';
import { sh } from '../remote/shell.js';

/**
 * How a rotation ended on the nodes, never a mix:
 * - `rotated`: the node runs its new key from its key file, every peer holds the new public key;
 * - `not-rotated`: given up before any peer was changed: the node keeps its key, IFACE.key.new is removed (kept
 *   only when it was a pending key of an earlier rotation: peers may hold its public half);
 * - `rolled-back`: given up after peers were (maybe) changed: every peer got the old public key back (config and
 *   live), the node keeps its old key, IFACE.key.new is removed;
 * - `incomplete`: a rollback or the swap could not be finished on some node: `error` says what is true where
 *   (`peersHoldingNewKey`), and IFACE.key.new stays on the node while any peer may hold its public half; the next
 *   `rotate-keys NODE` uses that key again and completes.
 */
export type RotationOutcome = 'rotated' | 'not-rotated' | 'rolled-back' | 'incomplete';

/** What happened to one rotated node. */
export interface RotationReport {
  node: string;
  /** outcome `rotated` */
  ok: boolean;
  outcome: RotationOutcome;
  /** Ctrl-C (or SIGTERM/SIGHUP) came during this rotation: the changing steps were waited for, then finished or undone */
  interrupted: boolean;
  /** public keys, before and after (after = before when the rotation was given up) */
  oldPublicKey?: string;
  newPublicKey?: string;
  /** a IFACE.key.new left by an interrupted rotation was used */
  reusedPendingKey: boolean;
  /**
   * a IFACE.key.new (or its temp file) found on the node and removed rather than used, in words (../steps/keys.ts
   * describeLeftover); also said in `error` (a note when the outcome is `rotated`)
   */
  leftoversDiscarded?: string[];
  /** peers whose config and live interface now carry the new key */
  peersUpdated: string[];
  /** outcome `incomplete`: peers whose old config could not be given back: they may hold the new public key */
  peersHoldingNewKey?: string[];
  /** ms from the new key sent to the node (live) to every peer updated with it: the pairs' packets waited meanwhile */
  windowMs?: number;
  error?: string;
}

export interface RotateContext {
  inventory: Inventory;
  connections: ReadonlyMap<string, Connection>;
  /** Ctrl-C: stops a rotation between its steps; a changing step already sent is waited for, never cut */
  signal: AbortSignal;
}

/**
 * Runs `script`; `signal` only for reads: a changing step is not stopped by Ctrl-C (killing it half-way would leave
 * a config written but not live, or the reverse) and is bounded by its timeout instead, as `up`'s changing steps are
 * (../engine/runner.ts).
 * @throws Error naming `what`, the exit status and the last lines of output (secrets redacted) when it fails
 */
const run = async (connection: Connection, script: string, signal: AbortSignal | undefined, what: string): Promise<ExecResult> => {
  const result = await connection.run(script, { timeoutMs: checkDeadlineMs(60_000), ...(signal ? { signal } : {}) });
  if (result.code !== 0) {
    const said = redactSecrets((result.stderr || result.stdout).trim().split('\n').slice(-3).join(' | '));
    // wg's errno text for an interface that does not run, said in words first (Q8 F-rot-down; describeWgError)
    const down = /Unable to (access|modify) interface: (Protocol not supported|No such device)/.test(said)
      ? `the WireGuard interface is not up there (its wg-quick unit stopped, or it failed to start); wg said: `
      : '';
    throw new Error(`${what} failed (exit ${result.code}): ${down}${said}`);
  }
  return result;
};

/**
 * Read-only, on a peer whose rollback failed: which of the rotated node's public keys its config holds now
 * (`file=new|old|none`) and whether its interface runs (`live=up|down`). Public keys only; nothing is changed.
 */
function peerStateScript(iface: string, oldKey: string, newKey: string): string {
  const p = wireguardPaths(iface);
  return [
    sh`if grep -qF -- ${newKey} ${p.config}; then echo file=new; elif grep -qF -- ${oldKey} ${p.config}; then echo file=old; else echo file=none; fi`
      .text,
    sh`if wg show ${iface} public-key >/dev/null 2>&1; then echo live=up; else echo live=down; fi`.text,
  ].join('\n');
}

/**
 * The script that writes a peer's rendered config (keeping .bak) and syncs its live interface from it, then starts
 * the handshake with the rotated node's key `move.to` (../steps/keys.ts peerHandshakeScript).
 */
function peerUpdateScript(
  inventory: Inventory,
  peer: string,
  keys: ReadonlyMap<string, string>,
  move: { from: string; to: string; overlayIp: string },
): string {
  const iface = inventory.mesh.interface;
  const p = wireguardPaths(iface);
  const text = renderWgQuickConfig(desiredNodeConfig(inventory, peer, keys));
  const handshake = peerHandshakeScript(iface, move.from, move.to, move.overlayIp);
  return [
    'set -e',
    handshake.before,
    atomicWriteScript(p.config, text, { backup: true, label: 'config' }),
    syncPeersStep(iface, p.privateKey),
    handshake.after,
  ].join('\n');
}

const short = (key?: string) => (key ? `${key.slice(0, 10)}…` : '?');
const message = (reason: unknown) => (reason instanceof Error ? reason.message : String(reason));

/**
 * The public keys the peers hold that may be a pending key of `rotated`: every key a peer's interface runs or its
 * config names for a peer, except every peer's own current key (the rotated node's current key is told apart on the
 * node). A key meshctl's rotation put on a peer and did not take back is among them; a key another user planted on
 * the rotated node is not (the peers' files are root's). Pure.
 */
export function pendingKeyCandidates(peerReads: ReadonlyMap<string, RotateRead>): string[] {
  const own = new Set([...peerReads.values()].map((r) => r.current));
  return [...new Set([...peerReads.values()].flatMap((r) => r.peerKeys ?? []))].filter((key) => !own.has(key)).sort();
}

/**
 * Reads every node's public key and makes the rotated node's new key: the other nodes first (their key, and the
 * keys they hold for peers: pendingKeyCandidates), then the rotated node makes its key, given those candidates. Not
 * stopped by Ctrl-C once the rotated node's script is sent (it makes IFACE.key.new: what it did must be known to be
 * undone); Ctrl-C or a failed read before that sends it not at all. `keys` has every node read; `failures` names
 * every node whose read failed.
 */
async function readKeys(ctx: RotateContext, rotated: string) {
  const iface = ctx.inventory.mesh.interface;
  const keys = new Map<string, RotateRead>();
  const failures: string[] = [];
  const others = ctx.inventory.nodes.filter((node) => node.name !== rotated);
  const results = await Promise.allSettled(
    others.map(async (node) => {
      const result = await run(
        ctx.connections.get(node.name)!,
        rotateReadScript(iface, { generate: false, listPeers: true }),
        undefined,
        `reading the keys of ${node.name}`,
      );
      return parseRotateRead(result.stdout);
    }),
  );
  others.forEach((node, i) => {
    const r = results[i]!;
    if (r.status === 'fulfilled') keys.set(node.name, r.value);
    else failures.push(message(r.reason));
  });
  if (failures.length > 0 || ctx.signal.aborted) return { keys, failures };
  try {
    const result = await run(
      ctx.connections.get(rotated)!,
      rotateReadScript(iface, { generate: true, pendingKeys: pendingKeyCandidates(keys) }),
      undefined,
      `reading the keys of ${rotated}`,
    );
    keys.set(rotated, parseRotateRead(result.stdout));
  } catch (error) {
    failures.push(message(error));
  }
  // the inventory's order, as before
  const ordered = new Map(ctx.inventory.nodes.flatMap((node) => (keys.has(node.name) ? [[node.name, keys.get(node.name)!] as const] : [])));
  return { keys: ordered, failures };
}

/** The leftovers a rotation removed, in one sentence (undefined when none). */
const leftoverNote = (node: string, leftovers: readonly LeftoverKeyFile[] | undefined): string | undefined =>
  leftovers?.length
    ? `a leftover ${leftovers.length === 1 ? 'file' : 'files'} on ${node} that ${leftovers.length === 1 ? 'was' : 'were'} not meshctl's pending key ${leftovers.length === 1 ? 'was' : 'were'} discarded and a new key made: ${leftovers.map(describeLeftover).join('; ')}`
    : undefined;

/** `file` (a stat line of IFACE.key) is a regular file of root's with mode 0600. */
const rootOnlyKeyFile = (file: WireGuardFileMode) => file.type === 'regular file' && file.uid === 0 && file.mode === '600';

/**
 * Rotates one node's key (see the module doc) and ends it in one consistent state (RotationOutcome): after Ctrl-C
 * the step in flight is waited for, then a rotation not yet swapped is rolled back and a swap sent is completed.
 * Never throws for a node's failure: reports it.
 */
export async function rotateNode(ctx: RotateContext, node: Node): Promise<RotationReport> {
  const { inventory, connections, signal } = ctx;
  const iface = inventory.mesh.interface;
  const keyNew = `${wireguardPaths(iface).privateKey}.new`;
  const self = connections.get(node.name)!;
  const base: RotationReport = {
    node: node.name,
    ok: false,
    outcome: 'not-rotated',
    interrupted: false,
    reusedPendingKey: false,
    peersUpdated: [],
  };
  const interruptedWhy = () => message(signal.reason ?? 'interrupted');

  const read = await readKeys(ctx, node.name);
  const mine = read.keys.get(node.name);
  const note = leftoverNote(node.name, mine?.leftovers);
  const discarded = mine?.leftovers?.length ? { leftoversDiscarded: mine.leftovers.map(describeLeftover) } : {};
  // every report of this rotation says what was discarded (a note beside a rotation's success)
  const done = (report: RotationReport): RotationReport => ({
    ...report,
    ...discarded,
    ...(note ? { error: report.error ? `${report.error}; ${note}` : note } : {}),
    interrupted: signal.aborted,
  });
  const discard = async (): Promise<string> => {
    try {
      await run(self, discardNewKeyScript(iface), undefined, `removing ${keyNew} on ${node.name}`);
      return `${keyNew} removed`;
    } catch (error) {
      return `${keyNew} is left on ${node.name} (${message(error)}): no peer holds its public key`;
    }
  };
  if (!mine?.next || read.failures.length > 0 || signal.aborted) {
    const why =
      read.failures.length > 0 ? read.failures.join('; ') : !mine?.next ? `${node.name} printed no new public key` : interruptedWhy();
    // a pending key of an earlier rotation may be on peers already: kept for the next rotation
    const left = !mine?.next ? '' : mine.reused ? `; ${keyNew} (a pending key of an earlier rotation) is kept` : `; ${await discard()}`;
    return done({
      ...base,
      ...(mine ? { oldPublicKey: mine.current, newPublicKey: mine.current, reusedPendingKey: mine.reused } : {}),
      error: `not rotated: ${why}; no peer was changed${left}`,
    });
  }
  const next = mine.next;
  const report: RotationReport = { ...base, oldPublicKey: mine.current, reusedPendingKey: mine.reused };
  const oldKeys = new Map([...read.keys].map(([name, r]) => [name, r.current]));
  const newKeys = new Map(oldKeys).set(node.name, next);
  const peers = inventory.nodes.filter((n) => n.name !== node.name).map((n) => n.name);

  const keyFile = wireguardPaths(iface).privateKey;
  const overlayIp = node.overlayIp;

  // from here the node may run its new key and peers may hold it: a second Ctrl-C (exit at once) says what it leaves
  const forget = onForcedExit(
    () =>
      `${node.name}: its key rotation was cut short: it or its peers may already use its new public key ${short(next)} while the others still use the old one; ${keyNew} stays on it: run meshctl rotate-keys ${node.name} again`,
  );
  try {
    /**
     * The node back on its old key (live) and every peer an update was sent to back on the old public key (all of
     * them: a failed update may have written its file); the new key removed only then. A peer no update reached is
     * left alone (a review's finding: rewriting it applied inventory edits that no `up` had planned).
     */
    let sentTo: readonly string[] = [];
    const rollBack = async (why: string): Promise<RotationReport> => {
      const peers = sentTo;
      const [liveBack, ...restores] = await Promise.allSettled([
        run(self, liveKeyScript(iface, keyFile), undefined, `giving ${node.name} its old key back`),
        ...peers.map((peer) =>
          run(
            connections.get(peer)!,
            peerUpdateScript(inventory, peer, oldKeys, { from: next, to: mine.current, overlayIp }),
            undefined,
            `giving ${peer} the old key back`,
          ),
        ),
      ]);
      const stuck = peers.filter((_, i) => restores[i]!.status === 'rejected');
      // every outcome of a rollback: the node on its old public key, no peer counted as updated
      const notRotated = (outcome: 'incomplete' | 'rolled-back', error: string) =>
        done({
          ...report,
          outcome,
          peersUpdated: [],
          newPublicKey: mine.current,
          ...(outcome === 'incomplete' ? { peersHoldingNewKey: stuck } : {}),
          error,
        });
      const nodeBack =
        liveBack!.status === 'fulfilled' && parseRotateRead(`current=${mine.current}\n${liveBack!.value.stdout}`).live === mine.current;
      if (!nodeBack)
        return notRotated(
          'incomplete',
          `not rotated: ${why}; ${node.name} could not be put back on its old key (${liveBack!.status === 'rejected' ? message(liveBack!.reason) : 'its interface runs another key'}) while ${stuck.length ? `${stuck.join(', ')} may hold the new key and the others` : 'every peer'} hold${stuck.length ? '' : 's'} the old one; ${keyNew} stays on ${node.name}: run meshctl rotate-keys ${node.name} again (it uses that key)`,
        );
      if (stuck.length === 0)
        return notRotated(
          'rolled-back',
          `not rotated: ${why}; rolled back: every peer has its old public key again, ${node.name} keeps it, ${await discard()}`,
        );
      const errors = restores.flatMap((r) => (r.status === 'rejected' ? [message(r.reason)] : []));
      // what the failed restores left (Q8 F-rot-down: the file was given back, only the live part failed, as the
      // peer's interface was down): a peer whose file has the old key and whose interface does not run holds the new
      // key nowhere, and starts on the old one
      const states = await Promise.allSettled(
        stuck.map((peer) => run(connections.get(peer)!, peerStateScript(iface, mine.current, next), undefined, `reading ${peer}'s state`)),
      );
      const downWithOldFile = states.every(
        (st) => st.status === 'fulfilled' && /^file=old$/m.test(st.value.stdout) && /^live=down$/m.test(st.value.stdout),
      );
      if (downWithOldFile)
        return notRotated(
          'rolled-back',
          `not rotated: ${why}; rolled back: every peer has its old public key again (${stuck.join(', ')} in ${wireguardPaths(iface).config} only: ${stuck.length === 1 ? 'its' : 'their'} ${iface} is not up), ${node.name} keeps it, ${await discard()}; run meshctl up (it starts ${wireguardPaths(iface).service} on ${stuck.join(', ')}), then meshctl rotate-keys ${node.name}`,
        );
      return notRotated(
        'incomplete',
        `not rotated: ${why}; the rollback did not reach ${stuck.join(', ')} (${errors.join('; ')}): ${stuck.length === 1 ? 'it' : 'they'} may hold the new public key ${short(next)} while ${node.name} runs its old key, so ${keyNew} stays on ${node.name}: run meshctl rotate-keys ${node.name} again (it uses that key)`,
      );
    };

    // the node runs the new key first: its old sessions still receive, what it sends waits for the new handshakes
    const started = Date.now();
    try {
      const live = parseRotateRead(
        `current=${next}\n${(await run(self, liveKeyScript(iface, keyNew), undefined, `running the new key on ${node.name}`)).stdout}`,
      ).live;
      if (live !== next) return await rollBack(`${node.name} runs with ${live ?? 'no key'} after taking the new key`);
    } catch (error) {
      return await rollBack(message(error));
    }
    if (signal.aborted) return await rollBack(`${interruptedWhy()} before the peers were updated`);
    sentTo = peers;
    const updates = await Promise.allSettled(
      peers.map((peer) =>
        run(
          connections.get(peer)!,
          peerUpdateScript(inventory, peer, newKeys, { from: mine.current, to: next, overlayIp }),
          undefined,
          `updating ${peer}`,
        ),
      ),
    );
    report.windowMs = Date.now() - started;
    report.peersUpdated = peers.filter((_, i) => updates[i]!.status === 'fulfilled');
    const failed = updates.flatMap((u) => (u.status === 'rejected' ? [message(u.reason)] : []));
    if (failed.length > 0) return await rollBack(failed.join('; '));
    if (signal.aborted) return await rollBack(`${interruptedWhy()} before the swap`);

    let swapError: string;
    try {
      const swapped = await run(
        self,
        swapKeyScript(
          iface,
          inventory.nodes.filter((n) => n.name !== node.name).map((n) => n.overlayIp),
        ),
        undefined,
        `swapping the key on ${node.name}`,
      );
      const live = parseRotateRead(`current=${next}\n${swapped.stdout}`).live;
      if (live === next) return done({ ...report, ok: true, outcome: 'rotated', newPublicKey: next });
      swapError = `${node.name} runs with ${live ?? 'no key'} after the swap, not the new key`;
    } catch (error) {
      swapError = message(error);
    }
    // the swap failed or did not take: what is true on the node decides
    let after: ReturnType<typeof parseRotateRead> | undefined;
    let readError = '';
    try {
      after = parseRotateRead(
        (await run(self, rotateReadScript(iface, { generate: false }), undefined, `reading ${node.name}'s key`)).stdout,
      );
    } catch (error) {
      readError = message(error);
    }
    const keyFileStat = after?.files?.find((f) => f.path === keyFile);
    if (after?.current === next && after.live === next && keyFileStat && !rootOnlyKeyFile(keyFileStat))
      return done({
        ...report,
        outcome: 'incomplete',
        newPublicKey: next,
        peersHoldingNewKey: peers,
        error: `${swapError}; ${node.name} runs the new key and every peer holds it, but its key file is not root's 0600 (${describeFileMode(keyFileStat)}): its key may be known to another user: fix it as root (chown root:root ${keyFile}; chmod 600 ${keyFile}), then run meshctl rotate-keys ${node.name} again`,
      });
    if (after?.current === next && after.live === next)
      return done({
        ...report,
        ok: true,
        outcome: 'rotated',
        newPublicKey: next,
        error: `${swapError}; yet ${node.name} runs the new key from its key file`,
      });
    if (after?.current === mine.current) return await rollBack(swapError);
    return done({
      ...report,
      outcome: 'incomplete',
      peersHoldingNewKey: peers,
      error: `${swapError}; every peer holds the new public key ${short(next)}, ${
        after
          ? `${node.name}'s key file holds ${short(after.current)} and its interface runs ${short(after.live)}`
          : `${node.name} could not be read (${readError})`
      }: run meshctl rotate-keys ${node.name} again`,
    });
  } finally {
    forget();
  }
}

/**
 * What rotateReadScript (without `generate`) printed on one node, or why it could not be read: `files` the owner and
 * mode of its WireGuard files (absent: not printed), `confHoldsKey` IFACE.conf has a PrivateKey or PresharedKey line.
 */
export type PreflightRead = { current: string; live?: string; files?: WireGuardFileMode[]; confHoldsKey?: boolean } | { error: string };

/**
 * Q8 F-rot-down: whether every node can take part in a rotation, judged before anything is changed. Every node
 * takes part (the rotated ones run a new key, every other one is a peer that gets it live), so each must be read
 * (`current`: its key file's public key) and its interface must be up (`live`: `wg show IFACE public-key` printed a
 * key): a peer whose interface is down cannot take the new key live, and its rollback fails the same way. A node
 * not rotated must run the key of its key file (a node running another key is left by an interrupted rotation or a
 * hand edit: `up` puts it right). A rotated node may run another key: a pending key of an interrupted rotation,
 * which its rotation uses again. And (Q10 F2) every node's WireGuard files must pass up's baseline judgement
 * (../checks/file-modes.ts judgeWireGuardFiles: /etc/wireguard, the key, the .pub and the wg-quick file root's and
 * written by root alone, the key read by root alone): else another user could swap the new key or read it, and the
 * line is the baseline's message (the fix, to run after checking the content). Returns the lines of every node that
 * cannot, each naming the node and what to run; [] when all can. Pure.
 */
export function judgeRotationPreflight(
  inventory: Inventory,
  reads: ReadonlyMap<string, PreflightRead>,
  rotated: ReadonlySet<string>,
): string[] {
  const iface = inventory.mesh.interface;
  const p = wireguardPaths(iface);
  return inventory.nodes.flatMap((node) => {
    const read = reads.get(node.name);
    if (!read) return [`${node.name}: its keys could not be read`];
    if ('error' in read) return [`${node.name}: ${read.error}`];
    const files = judgeWireGuardFiles(iface, read.files, () => read.confHoldsKey === true);
    const modes = files.status === 'fail' ? [`${node.name}: ${files.message}`] : [];
    if (!read.live)
      return [
        ...modes,
        `${node.name}: ${iface} is not up (wg show ${iface} public-key printed no key: ${p.service} stopped, or it failed to start), so it cannot take a new public key live: run meshctl up first (it starts ${p.service} on ${node.name})`,
      ];
    if (read.live !== read.current && !rotated.has(node.name))
      return [
        ...modes,
        `${node.name}: ${iface} runs the public key ${short(read.live)}, not ${short(read.current)} of its key file ${p.privateKey}: run meshctl up first (or meshctl rotate-keys ${node.name}, when an interrupted rotation of ${node.name} left it)`,
      ];
    return modes;
  });
}

/**
 * Reads every node's key file and live key (rotateReadScript without `generate`: read-only, one round trip, all
 * nodes at once) and judges them (judgeRotationPreflight): [] when every node can take part in rotating `rotated`.
 */
export async function rotationPreflight(ctx: RotateContext, rotated: ReadonlySet<string>): Promise<string[]> {
  const iface = ctx.inventory.mesh.interface;
  const reads = new Map<string, PreflightRead>();
  await Promise.all(
    ctx.inventory.nodes.map(async (node) => {
      try {
        const result = await run(
          ctx.connections.get(node.name)!,
          rotateReadScript(iface, { generate: false }),
          ctx.signal,
          `reading the keys of ${node.name}`,
        );
        const r = parseRotateRead(result.stdout);
        reads.set(node.name, {
          current: r.current,
          ...(r.live ? { live: r.live } : {}),
          ...(r.files ? { files: r.files } : {}),
          ...(r.confHoldsKey ? { confHoldsKey: true } : {}),
        });
      } catch (error) {
        reads.set(node.name, { error: message(error) });
      }
    }),
  );
  return judgeRotationPreflight(ctx.inventory, reads, rotated);
}

/** Every node's public key as its key file holds it now (one round trip per node, all at once). */
export async function currentPublicKeys(ctx: RotateContext): Promise<Map<string, string>> {
  const iface = ctx.inventory.mesh.interface;
  const entries = await Promise.all(
    ctx.inventory.nodes.map(async (node) => {
      const result = await run(
        ctx.connections.get(node.name)!,
        rotateReadScript(iface, { generate: false }),
        ctx.signal,
        `reading the key of ${node.name}`,
      );
      return [node.name, parseRotateRead(result.stdout).current] as const;
    }),
  );
  return new Map(entries);
}
