/**
 * Keeping the private key through a reload.
 *
 * meshctl's wg-quick file holds no PrivateKey (PostUp loads it from the key file on the node). `wg syncconf` given a
 * config without PrivateKey clears the interface's key, and the stock wg-quick@.service reloads with exactly that
 * (`wg syncconf %i <(wg-quick strip %i)`): one `systemctl reload wg-quick@wg0`, the usual advice after editing the
 * file, would silently cut the node off the mesh. So the key is appended on the node, inside a pipe (never in argv),
 * both when meshctl syncs peers and in a drop-in that replaces the unit's ExecReload.
 */
import { sh } from '../remote/shell.js';
import { privateKeyPathFor } from '../topology/desired.js';

/**
 * The shell command that syncs the interface with its file plus the key file. It stops before `wg syncconf` when
 * `wg-quick strip` fails, as syncconf given only the key would remove every peer.
 */
export function syncconfKeepingKeyCommand(iface: string, privateKeyPath: string): string {
  // the drop-in passes %i and /etc/wireguard/%i.key: words the quoting leaves bare, so systemd still expands them
  return sh`stripped=$(wg-quick strip ${iface}) && { echo "$stripped"; echo "[Interface]"; printf "PrivateKey = "; cat ${privateKeyPath}; } | wg syncconf ${iface} /dev/stdin`
    .text;
}

export { reloadDropInPath } from '../remote/wireguard.js';

/**
 * The drop-in for wg-quick@IFACE.service. Written for the one interface meshctl manages; the command uses the
 * unit's %i so it reads the same on every node. systemd expands `$$` to `$`, and the command has no `%` of its own.
 */
export function renderReloadDropIn(iface: string): string {
  const command = syncconfKeepingKeyCommand('%i', privateKeyPathFor('%i')).replaceAll('$', '$$$$');
  return [
    `# Managed by meshctl: a reload of ${iface} keeps its private key, which ${iface}.conf does not carry.`,
    '# The stock reload syncs from `wg-quick strip` alone, and that would clear the key.',
    '[Service]',
    'ExecReload=',
    `ExecReload=/bin/bash -c '${command}'`,
    '',
  ].join('\n');
}
