/**
 * Temporary directories of a test file, removed when its tests are done (an `after` hook of node:test on the file's
 * root, registered when this module is first imported; node's runner runs each test file in a process of its own).
 * The suites used to leave every directory they made in /tmp (~60 per unit run).
 */
import { after } from 'node:test';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const made: string[] = [];
after(() => {
  for (const dir of made.splice(0)) rmSync(dir, { recursive: true, force: true });
});

/** A new directory under the system's temporary directory, named `prefix` and six random characters (mkdtemp). */
export function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  made.push(dir);
  return dir;
}
