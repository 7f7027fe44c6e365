/**
 * firstByName (src/inventory/types.ts): the one name index siteOf and the renderer's node lookups share (issue 10).
 * It must answer exactly what `items.find((x) => x.name === name)` answers, at O(1) per lookup after one pass.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { firstByName } from '../../src/inventory/types.js';

describe('firstByName', () => {
  it('finds the first item of a name, as find would (duplicates: the first wins), and undefined for none', () => {
    const items = [
      { name: 'a', n: 1 },
      { name: 'b', n: 2 },
      { name: 'a', n: 3 },
    ];
    for (const name of ['a', 'b', 'c', '', '__proto__', 'constructor'])
      assert.equal(
        firstByName(items, name),
        items.find((x) => x.name === name),
        name,
      );
  });

  it('an array grown after its index was built is indexed again on a miss', () => {
    const items = [{ name: 'a' }];
    assert.equal(firstByName(items, 'a'), items[0]);
    items.push({ name: 'b' });
    assert.equal(firstByName(items, 'b'), items[1]);
  });

  it('reads the array once for many lookups (a scan per lookup read it n^2/2 times)', () => {
    let reads = 0;
    const base = Array.from({ length: 1000 }, (_, i) => ({ name: `n-${i}` }));
    const items = new Proxy(base, {
      get(target, key, receiver) {
        if (typeof key === 'string' && /^\d+$/.test(key)) reads++;
        return Reflect.get(target, key, receiver);
      },
    });
    for (const item of base) assert.equal(firstByName(items, item.name), item);
    assert.ok(reads <= 2 * base.length, `${reads} reads for ${base.length} lookups`);
  });
});
