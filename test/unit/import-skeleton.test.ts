/**
 * Q6/Q7 finding 4: the hosts file `meshctl import` reads (an inventory, or a skeleton of one with nodes.NAME.ssh) was
 * read with its own checks: an error carried no line:column, and an unknown key was ignored silently (a misspelt
 * `usr: ops` and the import logged in as root). Now it is checked as the inventory loader checks (the inventory's
 * format, every field optional), every problem at file:line:col with the field's path, as `meshctl validate` says it.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { MeshctlError } from '../../src/errors.js';
import { targetsFromSkeleton } from '../../src/import/targets.js';

/** The error's message and detail lines, as main prints them. */
function refusal(text: string): string[] {
  try {
    targetsFromSkeleton(text, 'hosts.yaml');
  } catch (error) {
    assert.ok(error instanceof MeshctlError, String(error));
    assert.equal(error.exitCode, 2);
    return [error.message, ...error.details];
  }
  assert.fail('accepted');
}

describe('import: the hosts file is checked as an inventory is, with file:line:col (Q6/Q7)', () => {
  it('an unknown key is named at its line and column, with a did-you-mean', () => {
    const said = refusal(['nodes:', '  ms-1:', '    ssh:', '      host: 192.168.15.2', '      usr: ops', ''].join('\n'));
    assert.deepEqual(said, ['hosts.yaml:5:7: nodes.ms-1.ssh.usr: unknown field; did you mean user?']);
  });
  it('a wrong value: at the value, with what was expected', () => {
    const [message] = refusal('nodes:\n  ms-1:\n    ssh: { host: 192.168.15.2, port: "22x" }\n');
    assert.match(message!, /^hosts\.yaml:3:\d+: nodes\.ms-1\.ssh\.port: expected /);
  });
  it('a node with no way to reach it: at its key', () => {
    assert.deepEqual(refusal('nodes:\n  ms-1: { site: home }\n'), [
      'hosts.yaml:2:3: nodes.ms-1: no ssh.host and no address to reach it at',
    ]);
  });
  it('several problems: all of them, in file order, as details', () => {
    const said = refusal(['mesh:', '  interfce: wg0', 'nodes:', '  a:', '    adress: 10.0.0.1', ''].join('\n'));
    assert.match(said[0]!, /^hosts\.yaml: 3 problems/);
    assert.deepEqual(said.slice(1), [
      'hosts.yaml:2:3: mesh.interfce: unknown field; did you mean interface?',
      'hosts.yaml:4:3: nodes.a: no ssh.host and no address to reach it at',
      'hosts.yaml:5:5: nodes.a.adress: unknown field; did you mean address?',
    ]);
  });
  it('a YAML syntax error and no nodes: map are located too', () => {
    assert.match(refusal('nodes:\n  a: { ssh: { host: x }\n')[0]!, /^hosts\.yaml:\d+:\d+: /);
    assert.match(refusal('mesh: { interface: wg0 }\n')[0]!, /^hosts\.yaml:1:1: nodes: no nodes: map/);
  });
  it('defaults.ssh is applied as the loader applies it; a whole inventory still reads', () => {
    const { targets } = targetsFromSkeleton(
      'defaults: { ssh: { user: ops, become: sudo } }\nnodes:\n  a: { address: 10.0.0.1 }\n',
      'h.yaml',
    );
    assert.deepEqual(targets, [{ name: 'a', ssh: { host: '10.0.0.1', port: 22, user: 'ops', become: 'sudo' } }]);
    for (const file of ['homelab.yaml', 'four-sites.yaml'])
      assert.ok(targetsFromSkeleton(readFileSync(`inventories/${file}`, 'utf8'), file).targets.length > 0);
  });
});
