import type { Command } from 'commander';
import { MeshctlError } from '../errors.js';

export function registerDebug(program: Command): void {
  program
    .command('debug')
    .description('(not built yet)')
    .action(() => {
      throw new MeshctlError('debug is not built yet');
    });
}
