/**
 * The benches' loopback farm of real OpenSSH sshd (test/integration/sshd-harness.ts): COUNT sshd on 127.0.0.1, each
 * with `ForceCommand true` (logins are real, no command of meshctl's runs here), one client key, a known_hosts of
 * their ED25519 host keys (hashed `|1|salt|hash` lines with `hashed`, as HashKnownHosts yes writes them), an empty
 * ssh_config, and the environment that points meshctl at them. Used by first-login.ts and login-cpu.ts.
 * Throws when sshd cannot run here (sshdSkipReason: needs root and openssh-server).
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { hashHostName } from '../../src/transport/known-hosts.js';
import { keygen, killAll, sshdSkipReason, startSshd, type Sshd } from '../../test/integration/sshd-harness.js';

/** A started farm: its directory, sshds, client key, and the environment for meshctl; `stop()` removes it all. */
export interface LoopbackSshds {
  root: string;
  sshds: Sshd[];
  client: { privateFile: string; publicLine: string };
  env: NodeJS.ProcessEnv;
  stop(): Promise<void>;
}

/** Starts the farm under a new temporary directory named `prefix` (see the module doc). */
export async function startLoopbackSshds(count: number, prefix: string, hashed = false): Promise<LoopbackSshds> {
  const skip = sshdSkipReason();
  if (skip) throw new Error(`cannot measure: ${skip}`);
  const root = mkdtempSync(join(tmpdir(), prefix));
  const sshds: Sshd[] = [];
  const stop = async () => {
    for (const s of sshds) await s.stop();
    killAll();
    rmSync(root, { recursive: true, force: true });
  };
  try {
    const home = join(root, 'home');
    mkdirSync(home);
    const client = keygen(join(root, 'id_client'));
    for (let i = 0; i < count; i++)
      sshds.push(await startSshd({ dir: join(root, `sshd${i}`), authorizedKeys: [client.publicLine], extraConfig: ['ForceCommand true'] }));
    const knownHosts = join(root, 'known_hosts');
    const name = (port: number) => (hashed ? hashHostName(`[127.0.0.1]:${port}`) : `[127.0.0.1]:${port}`);
    writeFileSync(knownHosts, sshds.map((s) => `${name(s.port)} ${s.hostKeys.ed25519!.split(' ').slice(0, 2).join(' ')}\n`).join(''));
    writeFileSync(join(root, 'ssh_config'), '');
    const env = { PATH: process.env.PATH, HOME: home, MESHCTL_KNOWN_HOSTS: knownHosts, MESHCTL_SSH_CONFIG: join(root, 'ssh_config') };
    return { root, sshds, client, env, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}
