/** The JSON Schemas under schema/ are what their specs produce, and each is closed and fully described. */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { PUBLISHED_SCHEMAS } from '../../src/schema/published.js';

/** Every schema that describes a field (a property, a record value, a list item), with its path. */
function fieldSchemas(schema: Record<string, unknown>, path: string, out: [string, Record<string, unknown>][] = []) {
  out.push([path, schema]);
  const properties = schema.properties as Record<string, Record<string, unknown>> | undefined;
  for (const [name, child] of Object.entries(properties ?? {})) fieldSchemas(child, `${path}.${name}`, out);
  if (schema.additionalProperties && typeof schema.additionalProperties === 'object') {
    fieldSchemas(schema.additionalProperties as Record<string, unknown>, `${path}.*`, out);
  }
  if (schema.items) fieldSchemas(schema.items as Record<string, unknown>, `${path}[]`, out);
  return out;
}

describe('published JSON Schemas', () => {
  it('are the three of inventory, playbook and verify report', () => {
    assert.deepEqual(
      PUBLISHED_SCHEMAS.map((s) => s.path),
      ['schema/inventory.schema.json', 'schema/playbook.schema.json', 'schema/verify-report.schema.json'],
    );
  });
  for (const { path, text } of PUBLISHED_SCHEMAS) {
    it(`${path} is up to date (regenerate with: node --import tsx scripts/gen-schema.ts)`, () => {
      assert.equal(readFileSync(path, 'utf8'), text());
    });
    it(`${path} is draft 2020-12, closed, and describes every field`, () => {
      const schema = JSON.parse(text()) as Record<string, unknown>;
      assert.equal(schema.$schema, 'https://json-schema.org/draft/2020-12/schema');
      assert.equal(schema.additionalProperties, false);
      for (const [field, child] of fieldSchemas(schema, '$')) {
        assert.equal(typeof child.description, 'string', `${field} has no description`);
        // the inventory's descriptions are what editors show people: more than a word
        if (path.endsWith('inventory.schema.json'))
          assert.ok((child.description as string).length > 10, `${field} has a too short description`);
      }
    });
  }
});
