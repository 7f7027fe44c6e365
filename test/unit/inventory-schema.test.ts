/** The published JSON Schema: up to date with the spec, helpful in editors, referenced by the example inventory. */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { inventoryJsonSchema, inventoryJsonSchemaText } from '../../src/inventory/jsonSchema.js';

const SCHEMA_PATH = 'schema/inventory.schema.json';

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

describe('schema/inventory.schema.json', () => {
  it('is up to date (regenerate with: node --import tsx scripts/gen-schema.ts)', () => {
    assert.equal(readFileSync(SCHEMA_PATH, 'utf8'), inventoryJsonSchemaText());
  });
  it('is draft 2020-12 and closed (unknown fields are flagged by editors too)', () => {
    const schema = inventoryJsonSchema();
    assert.equal(schema.$schema, 'https://json-schema.org/draft/2020-12/schema');
    assert.equal(schema.additionalProperties, false);
    assert.deepEqual(schema.required, ['mesh', 'sites', 'nodes']);
  });
  it('describes every field', () => {
    const fields = fieldSchemas(inventoryJsonSchema(), '$');
    assert.ok(fields.length > 25);
    for (const [path, schema] of fields) {
      assert.equal(typeof schema.description, 'string', `${path} has no description`);
      assert.ok((schema.description as string).length > 10, `${path} has a too short description`);
    }
  });
  it('carries the loader defaults', () => {
    const mesh = (inventoryJsonSchema().properties as Record<string, { properties: Record<string, { default?: unknown }> }>).mesh
      .properties;
    assert.deepEqual(Object.fromEntries(Object.entries(mesh).map(([name, field]) => [name, field.default])), {
      interface: 'wg0',
      network: undefined,
      listenPort: 51820,
      mtu: 1420,
      persistentKeepalive: 25,
      rpFilter: 'loose',
      reservedCidrs: [],
    });
  });
  it('inventories/homelab.yaml points editors at it', () => {
    const firstLine = readFileSync('inventories/homelab.yaml', 'utf8').split('\n')[0];
    assert.equal(firstLine, '# yaml-language-server: $schema=../schema/inventory.schema.json');
  });
});
