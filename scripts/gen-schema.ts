/**
 * Writes the published JSON Schemas (schema/inventory.schema.json, schema/playbook.schema.json,
 * schema/verify-report.schema.json) from their specs (src/schema/published.ts lists them).
 *   node --import tsx scripts/gen-schema.ts
 * test/unit/schema-published.test.ts fails when a committed file differs from what this writes.
 */
import { writeFileSync } from 'node:fs';
import { PUBLISHED_SCHEMAS } from '../src/schema/published.js';

for (const schema of PUBLISHED_SCHEMAS) {
  const target = new URL(`../${schema.path}`, import.meta.url);
  writeFileSync(target, schema.text());
  process.stdout.write(`wrote ${target.pathname}\n`);
}
