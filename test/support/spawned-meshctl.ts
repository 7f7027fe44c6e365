/**
 * meshctl started in a lab's operator namespace as a child the test can watch and kill (the rollback lab tests kill
 * it mid-change): its stdout and stderr gathered in one string as they come, and its end.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { meshctlInOperator } from '../../src/lab/index.js';

export interface SpawnedMeshctl {
  child: ChildProcess;
  /** everything it printed so far, stdout and stderr interleaved as they came */
  output(): string;
  /** its exit code once it ended; -1 when a signal ended it */
  exited: Promise<number | null>;
}

/** Starts `meshctl ARGS` in lab `lab`'s operator namespace, without a terminal. */
export function spawnMeshctl(lab: string, args: string[]): SpawnedMeshctl {
  const { argv, env } = meshctlInOperator(lab, args);
  const child = spawn(argv[0]!, argv.slice(1), { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout!.on('data', (c: Buffer) => (output += c.toString()));
  child.stderr!.on('data', (c: Buffer) => (output += c.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('close', (code, signal) => resolve(signal ? -1 : code)));
  return { child, output: () => output, exited };
}
