/**
 * The inventory's JSON Schema: closed, with the loader's defaults, referenced by the example inventory (that every
 * published schema is up to date and describes every field is test/unit/schema-published.test.ts).
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { inventoryJsonSchema } from '../../src/inventory/jsonSchema.js';

describe('schema/inventory.schema.json', () => {
  it('is draft 2020-12 and closed (unknown fields are flagged by editors too)', () => {
    const schema = inventoryJsonSchema();
    assert.equal(schema.$schema, 'https://json-schema.org/draft/2020-12/schema');
    assert.equal(schema.additionalProperties, false);
    assert.deepEqual(schema.required, ['mesh', 'sites', 'nodes']);
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
      relay: 'auto', // the loader leaves it out; src/topology/paths.ts reads absent as auto
    });
  });
  it('inventories/homelab.yaml points editors at it', () => {
    const firstLine = readFileSync('inventories/homelab.yaml', 'utf8').split('\n')[0];
    assert.equal(firstLine, '# yaml-language-server: $schema=../schema/inventory.schema.json');
  });
});
