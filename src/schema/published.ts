/**
 * The JSON Schemas meshctl publishes under schema/, each derived from the spec its loader or producer checks
 * against. scripts/gen-schema.ts writes them; test/unit/schema-published.test.ts fails when a committed file
 * differs from what this produces.
 */
import { verifyReportJsonSchemaText } from '../checks/report-schema.js';
import { playbookJsonSchemaText } from '../engine/playbook.js';
import { inventoryJsonSchemaText } from '../inventory/jsonSchema.js';

export interface PublishedSchema {
  /** path from the repository root */
  path: string;
  /** the exact file text */
  text: () => string;
}

export const PUBLISHED_SCHEMAS: readonly PublishedSchema[] = [
  { path: 'schema/inventory.schema.json', text: inventoryJsonSchemaText },
  { path: 'schema/playbook.schema.json', text: playbookJsonSchemaText },
  { path: 'schema/verify-report.schema.json', text: verifyReportJsonSchemaText },
];
