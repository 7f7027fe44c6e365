import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { RP_FILTER_SYSCTL_PATH, renderRpFilterSysctl } from '../../src/render/sysctl.js';

describe('renderRpFilterSysctl', () => {
  it('sets all and default to the mode, nothing else', () => {
    const text = renderRpFilterSysctl(2);
    const settings = text.split('\n').filter((line) => line !== '' && !line.startsWith('#'));
    assert.deepEqual(settings, ['net.ipv4.conf.all.rp_filter = 2', 'net.ipv4.conf.default.rp_filter = 2']);
    assert.ok(text.endsWith('\n'));
    assert.match(text, /max\(/, 'explains that the kernel takes the maximum');
    assert.match(text, /Managed by meshctl/);
    assert.equal(RP_FILTER_SYSCTL_PATH, '/etc/sysctl.d/99-wireguard.conf');
  });

  it('is deterministic and follows the mode', () => {
    assert.equal(renderRpFilterSysctl(2), renderRpFilterSysctl(2));
    assert.match(renderRpFilterSysctl(1), /^net\.ipv4\.conf\.all\.rp_filter = 1$/m);
    assert.match(renderRpFilterSysctl(0), /cannot lower/);
    assert.doesNotMatch(renderRpFilterSysctl(2), /cannot lower/);
  });
});
