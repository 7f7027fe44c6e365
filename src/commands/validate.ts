import type { Command } from 'commander';
import { MeshctlError } from '../errors.js';

export function registerValidate(program: Command): void {
  program
    .command('validate')
    .description('(not built yet)')
    .action(() => {
      throw new MeshctlError('validate is not built yet');
    });
}
