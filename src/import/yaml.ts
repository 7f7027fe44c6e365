/**
 * The inventory `meshctl import` writes: YAML in the shape of docs/inventory.md, with every note (a guess, or what
 * could not be inferred) as a `# meshctl import:` comment right above the field it is about. Deterministic (no
 * dates), so importing an unchanged mesh twice writes the same file. Pure.
 */
import type { SshTarget } from '../inventory/types.js';
import type { DraftInventory, ImportNote } from './infer.js';
import { safeText } from '../ui/safe-text.js';

/** The marker of every comment the import adds; `grep 'meshctl import:'` lists what to check. */
export const NOTE_MARK = 'meshctl import:';

const PLAIN = /^[A-Za-z0-9_][A-Za-z0-9_./:@-]*$/;
/** A scalar as YAML: plain when it is a plain word, else a JSON string (valid YAML). */
const scalar = (value: string | number | boolean) =>
  typeof value === 'string' && !PLAIN.test(value) ? JSON.stringify(value) : String(value);
/** A comment's text on one line, control characters shown escaped (../ui/safe-text.ts). */
const oneLine = (text: string) => safeText(text.replace(/\s+/g, ' '));

function sshFields(ssh: SshTarget, address: string): string[] {
  const fields: string[] = [];
  if (ssh.host !== address) fields.push(`host: ${scalar(ssh.host)}`);
  if (ssh.port !== 22) fields.push(`port: ${ssh.port}`);
  if (ssh.user !== 'root') fields.push(`user: ${scalar(ssh.user)}`);
  if (ssh.identityFile) fields.push(`identityFile: ${scalar(ssh.identityFile)}`);
  if (ssh.become !== 'none') fields.push(`become: ${ssh.become}`);
  return fields;
}

/** Renders the draft; notes go above the line whose path they name (unplaced ones at the top). */
export function renderImportedInventory(draft: DraftInventory, notes: readonly ImportNote[], sources: { hosts: string[] }): string {
  const placed = new Set<ImportNote>();
  const out: string[] = [];
  const line = (indent: number, text: string, path?: string) => {
    for (const note of notes)
      if (path !== undefined && note.at === path) {
        out.push(`${'  '.repeat(indent)}# ${NOTE_MARK} ${oneLine(note.text)}`);
        placed.add(note);
      }
    out.push(`${'  '.repeat(indent)}${text}`);
  };
  const body: string[] = [];
  const { mesh } = draft;
  line(0, 'mesh:', 'mesh');
  line(1, `interface: ${scalar(mesh.interface)}`, 'mesh.interface');
  line(1, `network: ${mesh.network}`, 'mesh.network');
  line(1, `listenPort: ${mesh.listenPort}`, 'mesh.listenPort');
  line(1, `mtu: ${mesh.mtu}`, 'mesh.mtu');
  line(1, `persistentKeepalive: ${mesh.persistentKeepalive}`, 'mesh.persistentKeepalive');
  line(
    1,
    "rpFilter: loose   # meshctl's default (the import does not read it); up applies it with /etc/sysctl.d/99-wireguard.conf",
    'mesh.rpFilter',
  );
  out.push('');
  line(0, 'sites:', 'sites');
  for (const site of draft.sites) {
    const at = `sites.${site.name}`;
    if (site.kind === 'public') {
      line(1, `${scalar(site.name)}:`, at);
      line(2, 'public: true');
      continue;
    }
    line(1, `${scalar(site.name)}:`, at);
    line(2, `lan: ${site.lan}`, `${at}.lan`);
    if (site.router !== undefined) line(2, `router: ${site.router}`, `${at}.router`);
    if (site.kind === 'nat') {
      line(2, 'nat:', `${at}.nat`);
      line(3, `publicIp: ${site.publicIp}`, `${at}.nat.publicIp`);
    }
  }
  out.push('');
  line(0, 'nodes:', 'nodes');
  for (const node of draft.nodes) {
    const at = `nodes.${node.name}`;
    line(1, `${scalar(node.name)}:   # public key ${node.publicKey} (kept)`, at);
    line(2, `site: ${scalar(node.site)}`, `${at}.site`);
    line(2, `address: ${node.address}`, `${at}.address`);
    line(2, `overlayIp: ${node.overlayIp}`, `${at}.overlayIp`);
    if (node.listenPort !== undefined) line(2, `listenPort: ${node.listenPort}`, `${at}.listenPort`);
    if (node.forwardedPort !== undefined) line(2, `forwardedPort: ${node.forwardedPort}`, `${at}.forwardedPort`);
    const ssh = sshFields(node.ssh, node.address);
    if (ssh.length) line(2, `ssh: { ${ssh.join(', ')} }`, `${at}.ssh`);
    // notes about the node's fields that were not written (e.g. a forwardedPort that is unknown)
    for (const note of notes)
      if (!placed.has(note) && note.at.startsWith(`${at}.`)) {
        out.push(`    # ${NOTE_MARK} ${note.at.slice(at.length + 1)}: ${oneLine(note.text)}`);
        placed.add(note);
      }
  }
  const header = [
    `# Written by \`meshctl import\` from the running ${mesh.interface} mesh on ${sources.hosts.join(', ')}.`,
    `# Every node keeps its key pair. Comments marked "${NOTE_MARK}" are guesses or what could not be inferred: check them,`,
    '# then `meshctl plan` shows what `meshctl up` would change (it restarts nothing that already runs as designed).',
    ...notes.filter((n) => !placed.has(n)).map((n) => `# ${NOTE_MARK} ${n.at}: ${oneLine(n.text)}`),
  ];
  body.push(...header, ...out);
  return `${body.join('\n')}\n`;
}
