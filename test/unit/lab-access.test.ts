/** Small pure pieces of the lab's access files. */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { knownHostsName } from '../../src/lab/lab.js';
import { nspawnArgv } from '../../src/lab/sys.js';

describe('lab access', () => {
  it('names known_hosts entries the way OpenSSH looks them up', () => {
    assert.equal(knownHostsName('192.168.15.2', 22), '192.168.15.2');
    assert.equal(knownHostsName('198.51.100.26', 2222), '[198.51.100.26]:2222');
  });

  it('boots nodes the way lab.md says works here', () => {
    const argv = nspawnArgv({
      root: '/r',
      machine: 'm',
      hostname: 'ms-1',
      netnsPath: '/run/netns/ml-lab.node.ms-1',
      binds: ['/dev/net/tun'],
      bindsReadOnly: ['/c/repo:/srv/meshctl-apt'],
    });
    for (const flag of [
      '-b',
      '--register=no',
      '--keep-unit',
      '--capability=CAP_NET_ADMIN',
      '--bind=/dev/net/tun',
      '--network-namespace-path=/run/netns/ml-lab.node.ms-1',
      '--hostname=ms-1',
      '--bind-ro=/c/repo:/srv/meshctl-apt',
    ]) {
      assert.ok(argv.includes(flag), flag);
    }
  });
});
