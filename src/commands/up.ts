import type { Command } from 'commander';
import { MeshctlError } from '../errors.js';

export function registerUp(program: Command): void {
  program
    .command('up')
    .description('(not built yet)')
    .action(() => {
      throw new MeshctlError('up is not built yet');
    });
}
