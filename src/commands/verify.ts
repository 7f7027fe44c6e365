import type { Command } from 'commander';
import { MeshctlError } from '../errors.js';

export function registerVerify(program: Command): void {
  program
    .command('verify')
    .description('(not built yet)')
    .action(() => {
      throw new MeshctlError('verify is not built yet');
    });
}
