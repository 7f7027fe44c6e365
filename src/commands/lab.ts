import type { Command } from 'commander';
import { MeshctlError } from '../errors.js';

export function registerLab(program: Command): void {
  program
    .command('lab')
    .description('(not built yet)')
    .action(() => {
      throw new MeshctlError('lab is not built yet');
    });
}
