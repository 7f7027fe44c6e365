/** `meshctl lab ...`: thin wrappers over src/lab (a sealed local replica of an inventory). */
import type { Command } from 'commander';
import type { CommandResult } from '../errors.js';
import chalk from 'chalk';
import { DEFAULT_LAB, labDown, labExecInherit, labRunMeshctlInherit, labStatus, labUp } from '../lab/lab.js';
import { labPaths } from '../lab/paths.js';

const progress = (message: string) => process.stderr.write(chalk.dim(`${message}\n`));

export function registerLab(program: Command, finish: (result: CommandResult) => void): void {
  const lab = program
    .command('lab')
    .description('a sealed local replica of an inventory: containers, NAT routers, an operator namespace (root only)')
    // lets exec/run pass everything after their target through untouched
    .enablePositionalOptions();

  lab
    .command('up')
    .description('build a lab for INVENTORY and wait until every node answers SSH')
    .argument('<inventory>', 'inventory file')
    .option('--name <name>', 'lab name (a-z, 0-9, -)', DEFAULT_LAB)
    .action(async (inventory: string, options: { name: string }) => {
      const state = await labUp(inventory, { name: options.name, progress });
      const op = state.plan.operator.namespace;
      process.stdout.write(`lab ${state.name} is up: ${state.nodes.length} nodes\n`);
      for (const node of state.nodes)
        process.stdout.write(`  ${node.name.padEnd(14)} ${node.sshUser}@${node.sshHost}:${node.sshPort}  overlay ${node.overlayIp}\n`);
      process.stdout.write(
        `try:  ip netns exec ${op} ssh -F ${state.sshConfig} ${state.nodes[0]!.name} hostname\n` +
          `      meshctl lab run --name ${state.name} -- up ${state.inventory}\n` +
          `      meshctl lab down --name ${state.name}\n`,
      );
    });

  lab
    .command('down')
    .description('remove everything a lab made (also after a failed up); the base cache stays')
    .option('--name <name>', 'lab name', DEFAULT_LAB)
    .action(async (options: { name: string }) => {
      const report = await labDown(options.name);
      process.stdout.write(
        report.found
          ? `lab ${report.name} removed: ${report.containers} containers, ${report.namespaces} namespaces, ${report.mounts} mounts\n`
          : `lab ${report.name}: nothing to remove\n`,
      );
    });

  lab
    .command('exec')
    .description('run a command in a node, or in a lab namespace: router:SITE, carrier:SITE, internet, operator')
    .option('--name <name>', 'lab name', DEFAULT_LAB)
    .argument('<target>', 'node name, router:SITE, carrier:SITE (a carrier NAT site), internet or operator')
    .argument('<command...>', 'command and its arguments (after --)')
    .passThroughOptions()
    .action(async (target: string, command: string[], options: { name: string }) => {
      finish({ passthrough: await labExecInherit(options.name, target, afterDashes(command)) });
    });

  lab
    .command('run')
    .description("run meshctl inside the lab's operator namespace, with the lab's known_hosts and key")
    .option('--name <name>', 'lab name', DEFAULT_LAB)
    .argument('<args...>', 'meshctl arguments (after --)')
    .passThroughOptions()
    .action(async (args: string[], options: { name: string }) => {
      finish({ passthrough: await labRunMeshctlInherit(options.name, afterDashes(args)) });
    });

  lab
    .command('move-site')
    .description('give a nat site a new public address and point its nat.publicHost names there (dynamic DNS rehearsal)')
    .option('--name <name>', 'lab name', DEFAULT_LAB)
    .argument('<site>', 'a nat site of the inventory')
    .argument('<address>', 'the new public IPv4 address')
    .action(async (site: string, address: string, options: { name: string }) => {
      const { labMoveSite } = await import('../lab/dns.js');
      const report = await labMoveSite(options.name, site, address);
      process.stdout.write(
        `site ${report.site} moved from ${report.from} to ${report.to}${report.names.length ? `; ${report.names.join(', ')} now resolve${report.names.length === 1 ? 's' : ''} to ${report.to}` : ''}\n`,
      );
    });

  lab
    .command('status')
    .description('labs, their nodes and addresses')
    .option('--name <name>', 'only this lab')
    .option('--json', 'machine-readable output')
    .action((options: { name?: string; json?: boolean }) => {
      const labs = labStatus(options.name);
      if (options.json) {
        process.stdout.write(JSON.stringify(labs, null, 2) + '\n');
        return;
      }
      if (labs.length === 0) {
        process.stdout.write(options.name ? `no lab named ${options.name}\n` : 'no labs\n');
        return;
      }
      for (const l of labs) {
        process.stdout.write(
          `${chalk.bold(`lab ${l.name}`)} (${l.phase}) ${l.inventory ?? ''}\n  dir ${labPaths(l.name).dir}, operator namespace ${l.operatorNamespace ?? '?'}\n`,
        );
        for (const n of l.nodes) {
          const running = n.running ? chalk.green('running') : chalk.red('stopped');
          process.stdout.write(
            `  ${n.name.padEnd(14)} ${n.site.padEnd(8)} ssh ${n.ssh.padEnd(26)} overlay ${n.overlayIp.padEnd(15)} sudo ${n.sudoUser.padEnd(10)} ${running}\n`,
          );
        }
      }
    });
}

/** With passThroughOptions commander keeps the `--` that separates meshctl's options from the command: drop it. */
const afterDashes = (args: string[]) => (args[0] === '--' ? args.slice(1) : args);
