/**
 * Verify's view of a hand-built wg-quick file (issue 9): where the private key sits is a style, not a fault. A file
 * that holds its key on a `PrivateKey` line (the reference runbook's way) instead of loading /etc/wireguard/IFACE.key
 * with PostUp, or that lets wg-quick save the live state over it (`SaveConfig = true`), runs a healthy mesh; verify
 * reports these as warnings (config-drift stays "warn", the run passes) and names `meshctl import`, which moves the
 * key into the key file on the node. Pure.
 */
import type { DriftItem } from '../render/drift.js';
import type { ParsedWgQuickConfig } from '../render/wgquick.js';
import { loadsKeyFile } from './restart.js';

/**
 * The drift items with the key location and SaveConfig lowered to warnings: `postUp` when the file carries the key
 * itself (PrivateKey line) and has no other PostUp than one loading the key file, and `saveConfig`.
 */
export function keyLocationAsStyle(items: DriftItem[], parsed: ParsedWgQuickConfig, iface: string): DriftItem[] {
  const own = parsed.interface;
  if (!own) return items;
  const keyInFile = own.hasPrivateKey && own.postUp.every((p) => loadsKeyFile(p, iface));
  return items.map((item) => {
    if (item.peer !== undefined) return item;
    if (item.field === 'postUp' && keyInFile)
      return {
        ...item,
        severity: 'warn',
        message: `the private key sits in ${iface}.conf (PrivateKey line), not loaded by PostUp from /etc/wireguard/${iface}.key: a style, not a fault (\`meshctl import\` moves it)`,
      };
    if (item.field === 'privateKey' || item.field === 'saveConfig')
      return {
        ...item,
        severity: 'warn',
        ...(item.field === 'saveConfig'
          ? {
              message: `SaveConfig = true: wg-quick saves the live interface over ${iface}.conf at every stop (\`meshctl up\` writes false)`,
            }
          : {}),
      };
    return item;
  });
}
