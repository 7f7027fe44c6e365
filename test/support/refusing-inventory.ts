/**
 * An inventory of two public nodes whose sshd ports nothing listens on (bound, then closed): every connection is
 * refused at once. For tests of what `up` does before and around connecting, with no sshd.
 */
import { writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';

/** A loopback port nothing listens on now. */
export async function closedPort(): Promise<number> {
  const closed = createServer();
  const port = await new Promise<number>((resolve) =>
    closed.listen(0, '127.0.0.1', () => resolve((closed.address() as { port: number }).port)),
  );
  await new Promise((resolve) => closed.close(resolve)); // nothing listens there now: refused at once
  return port;
}

/** Writes `dir/mesh.yaml`: nodes n1 and n2 on 127.0.0.1, each on a closed port of its own; returns its path. */
export async function writeRefusingInventory(dir: string): Promise<string> {
  const ports = [await closedPort(), await closedPort()];
  const inventory = join(dir, 'mesh.yaml');
  writeFileSync(
    inventory,
    [
      'mesh: { interface: wg0, network: 172.27.30.0/24, listenPort: 51820 }',
      'sites: { edge: { public: true } }',
      'nodes:',
      ...ports.map(
        (port, i) =>
          `  n${i + 1}: { site: edge, address: 198.51.100.${i + 1}, overlayIp: 172.27.30.${i + 1}, ssh: { host: 127.0.0.1, port: ${port}, user: root } }`,
      ),
      '',
    ].join('\n'),
  );
  return inventory;
}
