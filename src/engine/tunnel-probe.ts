/**
 * Read-only probe of a running tunnel for `up`'s last gate: routes on the interface and the latest handshake per
 * peer. `wg show IFACE latest-handshakes` prints public keys and times only (never the private key).
 */
import type { Connection } from '../transport/types.js';
import { shellQuote } from '../transport/types.js';

export function tunnelProbeScript(iface: string): string {
  const i = shellQuote(iface);
  return `ip -4 route show dev ${i} 2>/dev/null | cut -d' ' -f1\necho @@handshakes\nwg show ${i} latest-handshakes 2>/dev/null`;
}

export function parseTunnelProbe(stdout: string): { routes: string[]; handshakes: Map<string, number> } {
  const [routePart = '', handshakePart = ''] = stdout.split('@@handshakes\n');
  const routes = routePart.split('\n').map((l) => l.trim()).filter(Boolean);
  const handshakes = new Map<string, number>();
  for (const line of handshakePart.split('\n')) {
    const [key, at] = line.trim().split(/\s+/);
    if (key && at) handshakes.set(key, Number(at));
  }
  return { routes, handshakes };
}

export async function probeTunnel(connection: Connection, iface: string, signal?: AbortSignal) {
  const result = await connection.run(tunnelProbeScript(iface), { signal, timeoutMs: 15_000 });
  return parseTunnelProbe(result.stdout);
}
