import { loadInventory } from '../src/inventory/load.ts';
for (const f of process.argv.slice(2)) {
  const t = Date.now();
  try { loadInventory(f); console.log(f, 'LOADED'); } catch (e: any) { console.log(f, e.exitCode, e.message, '\n  ' + (e.details ?? [e.stack]).join('\n  ')); }
  console.log('ms', Date.now() - t);
}
