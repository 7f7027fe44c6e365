/**
 * Writes the benchmark inventory for N nodes (./inventory.ts) to FILE, or to stdout.
 *   node --import tsx scripts/bench/gen-inventory.ts N [FILE]
 */
import { writeFileSync } from 'node:fs';
import { benchInventory } from './inventory.js';

const [size, file] = process.argv.slice(2);
const text = benchInventory(Number(size));
if (file) writeFileSync(file, text);
else process.stdout.write(text);
