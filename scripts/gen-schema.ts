/**
 * Writes schema/inventory.schema.json from the inventory spec (src/inventory/spec.ts).
 *   node --import tsx scripts/gen-schema.ts
 * test/unit/inventory-schema.test.ts fails when the committed file differs from what this writes.
 */
import { writeFileSync } from 'node:fs';
import { inventoryJsonSchemaText } from '../src/inventory/jsonSchema.js';

const target = new URL('../schema/inventory.schema.json', import.meta.url);
writeFileSync(target, inventoryJsonSchemaText());
process.stdout.write(`wrote ${target.pathname}\n`);
