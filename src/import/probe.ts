/**
 * `meshctl import` on the node: one read-only probe (up's facts probe, ../facts/node-facts.ts, plus the underlay
 * addresses), then one adopting script that keeps the node's key pair and marks the interface as meshctl's:
 * - a `PrivateKey` line in IFACE.conf is moved into /etc/wireguard/IFACE.key (umask 077) by awk ON THE NODE, and the
 *   line replaced by meshctl's `PostUp = wg set %i private-key /etc/wireguard/%i.key`. The key is never printed,
 *   read back or sent: only `wg pubkey` of it is compared with `wg show IFACE public-key`, on the node, and the move
 *   is refused unless they are equal (so the interface keeps its identity after any later restart);
 * - IFACE.pub is (re)written from `wg pubkey`;
 * - `SaveConfig = true` becomes `SaveConfig = false` (saveConfigOffScript): wg-quick would otherwise save the live
 *   interface over IFACE.conf at its next stop, private key included (`wg showconf`), undoing the key move before
 *   `up` ever ran (Q3 finding 9); false is wg-quick's default and what `up` renders, so nothing else changes;
 * - meshctl's wg-quick@ drop-in (../render/systemd.ts) is installed: a `systemctl reload` then keeps the key, and the
 *   drop-in with the key file is how `up` recognises the interface as its own (./ownership.ts).
 * The running interface is not touched: no restart, no reload, no `wg set`.
 */
import { judgeWireGuardFiles } from '../checks/file-modes.js';
import type { FactDef } from '../facts/definitions.js';
import { factsScript, readFact } from '../facts/definitions.js';
import { SECRET_LINE_ERE_AWK } from '../facts/lean.js';
import { factsProbeScript, parseFactsProbe, type NodeFacts } from '../facts/node-facts.js';
import { linesOf, splitSections } from '../facts/sections.js';
import { raw, sh } from '../remote/shell.js';
import { wireguardPaths } from '../remote/wireguard.js';
import { renderReloadDropIn } from '../render/systemd.js';
import { atomicWriteScript } from '../steps/action.js';
import { looksLikeWireGuardKey } from '../topology/desired.js';
import type { UnderlayFacts } from './infer.js';
import { freshRootFile, rootOnlyFileCondition } from '../remote/root-file.js';

/** IPv4 addresses of every interface (scope global) and the default route's gateway and device. */
export const UNDERLAY_FACT: FactDef<UnderlayFacts> = {
  name: 'underlay',
  command: () =>
    [
      `ip -4 -o addr show scope global 2>/dev/null | awk '{ print "addr=" $2 " " $4 }'`,
      `ip -4 route show default 2>/dev/null | awk '{ g = ""; d = ""; for (i = 1; i < NF; i++) { if ($i == "via") g = $(i + 1); if ($i == "dev") d = $(i + 1) } print "gw=" g " " d; exit }'`,
      'true',
    ].join('\n'),
  parse: (s) => parseUnderlay(linesOf(s)),
};

/** Reads the `underlay` section's lines: `addr=DEV CIDR`, `gw=GATEWAY DEV`. */
export function parseUnderlay(lines: readonly string[]): UnderlayFacts {
  const result: UnderlayFacts = { addresses: [] };
  for (const line of lines) {
    const [key, rest] = [line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1)];
    const [a, b] = rest.trim().split(/\s+/);
    if (key === 'addr' && a && b && /^\d+\.\d+\.\d+\.\d+\/\d+$/.test(b)) result.addresses.push({ dev: a.replace(/@.*$/, ''), cidr: b });
    if (key === 'gw' && a && /^\d+\.\d+\.\d+\.\d+$/.test(a)) {
      result.gateway = a;
      if (b) result.gatewayDev = b;
    }
  }
  return result;
}

/**
 * The lines of IFACE.conf that the facts probe's secret filter drops (SECRET_LINE_ERE, and SECRET_FILTER_AWK's
 * `(private|preshared)[_-]*key=` lines), by line number and kind only: `NR presharedkey` (an active PresharedKey
 * line), `NR privatekey`, `NR other` (commented out, or a line naming a key next to a key-shaped value); last
 * `lines N`. No value leaves the node. With it the filtered text's lines are numbered as in the file, and a
 * PresharedKey line is seen without being read (./losses.ts).
 */
export interface SecretLines {
  /** line number (1-based, in the whole file) -> kind */
  dropped: Map<number, 'presharedkey' | 'privatekey' | 'other'>;
  /** lines in the file */
  total: number;
}

/** SecretLines of IFACE.conf; undefined when the file does not exist (or the section is missing: an older probe). */
export const SECRET_LINES_FACT: FactDef<SecretLines | undefined> = {
  name: 'secretlines',
  command: (ctx) => {
    const conf = wireguardPaths(ctx.interface).config;
    const awk = `{ l = tolower($0); s = l; gsub(/[ \t\r]/, "", s); if (s ~ /^[#;]*(private|preshared)[_-]*key=/ || l ~ mc_re) { k = "other"; if (s ~ /^presharedkey=/) k = "presharedkey"; else if (s ~ /^privatekey=/) k = "privatekey"; print NR " " k } } END { print "lines " NR }`;
    return sh`if [ -f ${conf} ]; then awk -v mc_re=${SECRET_LINE_ERE_AWK} ${awk} ${conf}; fi`.text;
  },
  parse: (s) => {
    const lines = linesOf(s);
    const total = lines.map((l) => /^lines (\d+)$/.exec(l)).find((m) => m)?.[1];
    if (total === undefined) return undefined;
    const dropped = new Map<number, 'presharedkey' | 'privatekey' | 'other'>();
    for (const line of lines) {
      const m = /^(\d+) (presharedkey|privatekey|other)$/.exec(line);
      if (m) dropped.set(Number(m[1]), m[2] as 'presharedkey' | 'privatekey' | 'other');
    }
    return { dropped, total: Number(total) };
  },
};

/** awk: prints the path of each active `PostUp = wg set %i private-key PATH` line as `LINE PATH` (%i replaced). */
const POSTUP_KEY_FILES_AWK = `{ s = $0; sub(/#.*/, "", s); gsub(/\r/, "", s); if (tolower(s) ~ /^[ \t]*postup[ \t]*=[ \t]*wg[ \t]+set[ \t]+%i[ \t]+private-key[ \t]+[^ \t<]+[ \t]*$/) { n = split(s, w, /[ \t=]+/); p = w[n]; gsub(/%i/, iface, p); print NR " " p } }`;

/**
 * The adopting script's refusals, checked read-only (no file written, no temp file: the key goes through a pipe to
 * `wg pubkey`), so that every node is checked before any is changed (Q6 finding 2: a late refusal on one node left
 * the others taken over). Prints `refused=REASON`, the same words adoptScript prints, or nothing. When there is no
 * key where meshctl keeps it but a PostUp loads one from another file (the tutorial's `wg genkey | tee privatekey`
 * layout, Q6 finding 7), the refusal names that file and line and how to move it. What cannot be foreseen stays the
 * adopting script's to refuse: a write that fails (full disk, immutable file) or a key changed meanwhile.
 */
export function adoptCheckScript(iface: string): string {
  const p = wireguardPaths(iface);
  return sh`live=$(wg show ${iface} public-key 2>/dev/null || true)
n=$(awk ${PRIVATE_KEY_VALUES_AWK} ${p.config} 2>/dev/null | wc -l)
if [ "$n" -gt 1 ]; then echo "refused=${p.config} has $n PrivateKey lines"
elif [ "$n" -eq 1 ]; then
  if ! inconf=$(awk ${PRIVATE_KEY_VALUES_AWK} ${p.config} | wg pubkey 2>/dev/null); then echo "refused=the PrivateKey line of ${p.config} is not a WireGuard key"
  elif [ -n "$live" ] && [ "$inconf" != "$live" ]; then echo "refused=${iface} does not run with the key of its ${p.config}"
  elif [ -s ${p.privateKey} ] && [ "$(wg pubkey < ${p.privateKey} 2>/dev/null)" != "$inconf" ]; then echo "refused=${p.privateKey} and the PrivateKey line of ${p.config} hold different keys"
  fi
elif [ ! -s ${p.privateKey} ]; then
  awk -v iface=${iface} ${POSTUP_KEY_FILES_AWK} ${p.config} 2>/dev/null | { hint=""
    while read -r line path; do
      if [ -s "$path" ] && [ -n "$live" ] && [ "$(wg pubkey < "$path" 2>/dev/null)" = "$live" ]; then
        hint="; ${iface} loads its key from $path (PostUp, line $line of ${p.config}): copy it where meshctl keeps it (install -m 600 $path ${p.privateKey}) and import again; up then replaces that PostUp line with its own, and $path can go"
        break
      fi
    done
    echo "refused=no key: neither ${p.privateKey} nor a PrivateKey line in ${p.config}$hint"; }
elif [ -n "$live" ] && [ "$(wg pubkey < ${p.privateKey} 2>/dev/null)" != "$live" ]; then echo "refused=${iface} does not run with the key of ${p.privateKey}"
fi
true`.text;
}

/** The adopting script's refusal foreseen by adoptCheckScript; undefined when it foresees none. */
export const ADOPT_CHECK_FACT: FactDef<string | undefined> = {
  name: 'adoptcheck',
  command: (ctx) => adoptCheckScript(ctx.interface),
  parse: (s) => parseAdoptOutput(s?.body ?? '').refused,
};

/** The import probe of one node: up's facts probe, then the underlay, the secret lines and the adoption check. */
export function importProbeScript(iface: string, listenPort: number): string {
  const ctx = { interface: iface, listenPort };
  return `${factsProbeScript(ctx)}\n${factsScript([UNDERLAY_FACT, SECRET_LINES_FACT, ADOPT_CHECK_FACT], ctx, 'importend')}`;
}

/**
 * Reads the import probe. The underlay excludes the WireGuard interfaces (the overlay is not where peers dial).
 * @throws Error when the output stops before its end (a cut connection)
 */
export function parseImportProbe(
  stdout: string,
  iface: string,
  listenPort: number,
): { facts: NodeFacts; underlay: UnderlayFacts; secretLines?: SecretLines; adoptRefusal?: string; fileModeRefusal?: string } {
  const ctx = { interface: iface, listenPort };
  const facts = parseFactsProbe(stdout, ctx);
  const sections = splitSections(stdout);
  if (sections.get('importend')?.rc !== 0) throw new Error('import probe output is incomplete');
  const underlay = readFact(UNDERLAY_FACT, sections, ctx);
  const secretLines = readFact(SECRET_LINES_FACT, sections, ctx);
  const adoptRefusal = readFact(ADOPT_CHECK_FACT, sections, ctx);
  const wireguard = new Set([iface, ...facts.wireguardInterfaces]);
  const fileModeRefusal = judgeImportFileModes(facts, iface);
  return {
    facts,
    underlay: { ...underlay, addresses: underlay.addresses.filter((a) => !wireguard.has(a.dev)) },
    ...(secretLines ? { secretLines } : {}),
    ...(adoptRefusal ? { adoptRefusal } : {}),
    ...(fileModeRefusal ? { fileModeRefusal } : {}),
  };
}

/**
 * Q10 F15: the owner and mode of the node's WireGuard files (FACTS.wireguardFiles, in the import probe through up's
 * facts probe) judged as up's baseline judges them (../checks/file-modes.ts judgeWireGuardFiles: /etc/wireguard,
 * IFACE.key, IFACE.pub, IFACE.conf and meshctl's programs and units root's and written by root alone; the key, and
 * IFACE.conf while it holds a PrivateKey or PresharedKey line, read by root alone). Returns the baseline's message
 * (what is wrong, why, the fix to run after checking the content) when it fails, else undefined: a node whose files
 * another user could write or read is not taken over, since the adopting script would move its private key among
 * them. Not read (an older capture without the stat lines): undefined, as up's baseline only warns then. Pure.
 */
export function judgeImportFileModes(facts: NodeFacts, iface: string): string | undefined {
  const judgement = judgeWireGuardFiles(
    iface,
    facts.wireguardFiles,
    () => facts.config.hasPrivateKeyLine || facts.config.hasPresharedKeyLine === true,
  );
  return judgement.status === 'fail' ? judgement.message : undefined;
}

/** awk: prints the value of every active `PrivateKey =` line (any spacing or case wg accepts), comments cut. */
const PRIVATE_KEY_VALUES_AWK = `{ s = $0; sub(/#.*/, "", s); gsub(/[ \\t\\r]/, "", s); if (tolower(s) ~ /^privatekey=/) print substr(s, index(s, "=") + 1) }`;
/** awk: the file with each active `PrivateKey =` line replaced by meshctl's PostUp (dropped when one is there). */
const REPLACE_PRIVATE_KEY_AWK = `BEGIN { has = 0 } { s = $0; sub(/#.*/, "", s); gsub(/[ \\t\\r]/, "", s); l = tolower(s); if (l ~ /^postup=wgset%iprivate-key/) has = 1; lines[NR] = $0; keep[NR] = (l !~ /^privatekey=/) } END { for (i = 1; i <= NR; i++) { if (keep[i]) print lines[i]; else if (!has) { print "PostUp = wg set %i private-key /etc/wireguard/%i.key"; has = 1 } } }`;

/** awk: exits 0 when the file has an active `SaveConfig = true` line (any spacing or case wg-quick accepts). */
const SAVES_CONFIG_AWK = `{ s = $0; sub(/#.*/, "", s); gsub(/[ \\t\\r]/, "", s); if (tolower(s) == "saveconfig=true") f = 1 } END { exit !f }`;
/** awk: the file with each active `SaveConfig = true` line replaced by `SaveConfig = false`, every other line kept. */
const SAVE_CONFIG_OFF_AWK = `{ s = $0; sub(/#.*/, "", s); gsub(/[ \\t\\r]/, "", s); if (tolower(s) == "saveconfig=true") print "SaveConfig = false"; else print }`;

/**
 * Sets `SaveConfig = true` in `config` to false, atomically (a fresh temp file of root's, mode 600, made by
 * freshRootFile; rename), and prints
 * `saveconfig=off`; does nothing (prints nothing) when the file has no such line. The running interface is not
 * touched: wg-quick reads SaveConfig only when it stops it. When the rewrite fails (full disk, read-only /etc) it
 * removes its temp file, prints `refused=REASON` and exits 3, as adoptScript's other refusals do: `set -e` alone
 * would not stop it, since the failing command sits inside an `&&` list within `if` (RV2 finding S3-6).
 */
export function saveConfigOffScript(config: string): string {
  const tmp = `${config}.meshctl-tmp`;
  return `${sh`if awk ${SAVES_CONFIG_AWK} ${config}; then`.text} ${freshRootFile(tmp, sh`awk ${SAVE_CONFIG_OFF_AWK} ${config}`.text)} && ${sh`mv -f ${tmp} ${config} && echo saveconfig=off || { rm -f -- ${tmp}; echo "refused=could not turn SaveConfig off in ${config}: wg-quick would write the private key back in at its next stop"; exit 3; }; fi`.text}`;
}

/**
 * The adopting script for one node (see the module comment). Prints `key=moved|kept`, `conf=rewritten|kept`,
 * `saveconfig=off` when it turned SaveConfig off, `dropin=...`, and last `public=KEY`. Exits 3 with `refused=REASON` when the key cannot be kept safely.
 * The key moves to the key file first, then the file loses its PrivateKey line, each checked: a failure of either
 * (an immutable file, an SELinux denial, a full disk) removes its temp file, refuses and stops, so the key is never
 * in neither place (RV3 F6: `set -e` does not stop at a failing command inside an `&&` list, and the run went on to
 * rewrite the file while the key sat only in the temp file). The first copy of the key into its temp file is
 * checked the same way: `set -e` would stop there, but with part of the key left in the temp file (RV4 F4.2).
 * Every temp file (the key's, IFACE.conf's, IFACE.pub's) is made by freshRootFile: removed first, created with
 * noclobber under umask 077, checked root's 0600 before its rename; the key file is checked root's 0600 after it,
 * else the node is refused (exit 3) with the key still in IFACE.conf (Q10 F15: a planted IFACE.key.meshctl-tmp of
 * nobody's became the key file). The import probe refused beforehand a node whose files another user could write
 * or read (judgeImportFileModes).
 */
export function adoptScript(iface: string, systemd: boolean): string {
  const p = wireguardPaths(iface);
  const tmp = `${p.privateKey}.meshctl-tmp`;
  const confTmp = `${p.config}.meshctl-tmp`;
  const pubTmp = `${p.publicKey}.meshctl-tmp`;
  return [
    'set -e',
    'umask 077',
    sh`live=$(wg show ${iface} public-key 2>/dev/null || true)`.text,
    sh`n=$(awk ${PRIVATE_KEY_VALUES_AWK} ${p.config} | wc -l)`.text,
    sh`if [ "$n" -gt 1 ]; then echo "refused=${p.config} has $n PrivateKey lines"; exit 3; fi`.text,
    sh`if [ "$n" -eq 1 ]; then
  ${raw(freshRootFile(tmp, sh`awk ${PRIVATE_KEY_VALUES_AWK} ${p.config}`.text))} || { rm -f -- ${tmp}; echo "refused=could not copy the key of ${p.config} aside to a fresh ${tmp} of root's with mode 0600: nothing changed"; exit 3; }
  inconf=$(wg pubkey < ${tmp} 2>/dev/null) || { rm -f ${tmp}; echo "refused=the PrivateKey line of ${p.config} is not a WireGuard key"; exit 3; }
  if [ -n "$live" ] && [ "$inconf" != "$live" ]; then rm -f ${tmp}; echo "refused=${iface} does not run with the key of its ${p.config}"; exit 3; fi
  if [ -s ${p.privateKey} ] && [ "$(wg pubkey < ${p.privateKey})" != "$inconf" ]; then rm -f ${tmp}; echo "refused=${p.privateKey} and the PrivateKey line of ${p.config} hold different keys"; exit 3; fi
  if [ -s ${p.privateKey} ]; then rm -f ${tmp}; echo key=kept; else
    { ${raw(rootOnlyFileCondition(tmp))} && mv -f ${tmp} ${p.privateKey}; } || { rm -f -- ${tmp}; echo "refused=could not move the key to ${p.privateKey}: it stays in ${p.config}, untouched"; exit 3; }
    if ! ${raw(rootOnlyFileCondition(p.privateKey))}; then echo "refused=${p.privateKey} is not a regular file of root's with mode 0600 after the move ($(stat -c '%U %a %F' -- ${p.privateKey})): its key may be known to another user; the key stays in ${p.config} too"; exit 3; fi
    echo key=moved
  fi
  { ${raw(freshRootFile(confTmp, sh`awk ${REPLACE_PRIVATE_KEY_AWK} ${p.config}`.text))} && mv -f ${confTmp} ${p.config}; } || { rm -f -- ${confTmp}; echo "refused=could not rewrite ${p.config} without its PrivateKey line: the key is in ${p.privateKey} and still in ${p.config}"; exit 3; }
  echo conf=rewritten
else
  if [ ! -s ${p.privateKey} ]; then echo "refused=no key: neither ${p.privateKey} nor a PrivateKey line in ${p.config}"; exit 3; fi
  if [ -n "$live" ] && [ "$(wg pubkey < ${p.privateKey})" != "$live" ]; then echo "refused=${iface} does not run with the key of ${p.privateKey}"; exit 3; fi
  echo key=kept; echo conf=kept
fi`.text,
    saveConfigOffScript(p.config),
    sh`chmod 600 ${p.privateKey}`.text,
    // the key file root's 0600 whichever way it came (moved now, or there before): else this node fails
    sh`if ! ${raw(rootOnlyFileCondition(p.privateKey))}; then echo "refused=${p.privateKey} is not a regular file of root's with mode 0600 ($(stat -c '%U %a %F' -- ${p.privateKey})): its key may be known to another user"; exit 3; fi`
      .text,
    sh`${raw(freshRootFile(pubTmp, sh`wg pubkey < ${p.privateKey}`.text))} || { rm -f -- ${pubTmp}; echo "refused=could not write the public key into a fresh ${pubTmp} of root's"; exit 3; }`
      .text,
    sh`if cmp -s ${pubTmp} ${p.publicKey}; then rm -f -- ${pubTmp}; else chmod 644 -- ${pubTmp} && mv -f ${pubTmp} ${p.publicKey}; fi`.text,
    ...(systemd
      ? [
          atomicWriteScript(p.reloadDropIn, renderReloadDropIn(iface), { mode: '644', dirMode: '755', label: 'dropin' }),
          'systemctl daemon-reload',
        ]
      : []),
    sh`echo "public=$(cat ${p.publicKey})"`.text,
  ].join('\n');
}

export interface AdoptOutcome {
  key?: 'moved' | 'kept';
  confRewritten: boolean;
  /** `SaveConfig = true` was set to false in IFACE.conf */
  saveConfigOff?: boolean;
  publicKey?: string;
  refused?: string;
}

/**
 * What adoptScript will do on a node, foreseen from its import probe, for `import --dry-run` (Q6/Q7 finding 2: the
 * dry run said nothing of the key's move or of SaveConfig): `key` 'moved' when IFACE.conf has a PrivateKey line and
 * there is no key file yet, else 'kept'; `confRewritten` when it has a PrivateKey line (the line goes either way);
 * `saveConfigOff` when it has an active `SaveConfig = true` line (read as SAVES_CONFIG_AWK reads it: comments cut,
 * blanks and case ignored). `publicKey`: the key the interface runs with, which the script keeps. A refusal is not
 * foreseen here: adoptCheckScript's (ImportedHost.adoptRefusal) stops the import before this is asked.
 */
export function foreseeAdoption(facts: NodeFacts, publicKey: string): AdoptOutcome {
  const moves = facts.config.hasPrivateKeyLine;
  const savesConfig = (facts.config.text ?? '').split('\n').some(
    (line) =>
      line
        .replace(/#.*/, '')
        .replace(/[ \t\r]/g, '')
        .toLowerCase() === 'saveconfig=true',
  );
  return {
    key: moves && !facts.keys.privateKeyExists ? 'moved' : 'kept',
    confRewritten: moves,
    ...(savesConfig ? { saveConfigOff: true } : {}),
    publicKey,
  };
}

/**
 * One node's line of what the adopting script did (`done`) or would do (a dry run: `not done (dry run): would ...`):
 * where the private key is kept, the PrivateKey line leaving IFACE.conf, SaveConfig turned off, meshctl's reload
 * drop-in (with systemd). The same words for both, so that a dry run says everything a real run then reports.
 */
export function describeAdoption(node: string, outcome: AdoptOutcome, iface: string, systemd: boolean, done: boolean): string {
  const p = wireguardPaths(iface);
  const conf = `${iface}.conf`;
  const key =
    outcome.key === 'moved'
      ? done
        ? `PrivateKey line moved from ${conf} into ${p.privateKey} on the node`
        : `would move the PrivateKey line of ${conf} into ${p.privateKey} on the node`
      : `already in ${p.privateKey}${outcome.confRewritten ? (done ? `; the PrivateKey line of ${conf} removed` : `; would remove the PrivateKey line of ${conf}`) : ''}`;
  const saveConfig = outcome.saveConfigOff
    ? `; SaveConfig = true ${done ? 'set' : 'would be set'} to false in ${conf} (wg-quick would save the live interface over it at its next stop, private key included)`
    : '';
  const dropIn = systemd ? `; ${done ? 'wrote' : 'would write'} ${p.reloadDropIn} (a reload keeps the key)` : '';
  return `${node}: ${done ? 'key pair kept' : 'not done (dry run): key pair would be kept'} (${key}), public ${outcome.publicKey}${saveConfig}${dropIn}`;
}

/** Reads the adopting script's output (only public keys and words are in it). */
export function parseAdoptOutput(stdout: string): AdoptOutcome {
  const value = (k: string) => stdout.match(new RegExp(`^${k}=(.*)$`, 'm'))?.[1]?.trim();
  const key = value('key');
  const publicKey = value('public');
  const refused = value('refused');
  return {
    ...(key === 'moved' || key === 'kept' ? { key } : {}),
    confRewritten: value('conf') === 'rewritten',
    ...(value('saveconfig') === 'off' ? { saveConfigOff: true } : {}),
    ...(publicKey && looksLikeWireGuardKey(publicKey) ? { publicKey } : {}),
    ...(refused ? { refused } : {}),
  };
}
