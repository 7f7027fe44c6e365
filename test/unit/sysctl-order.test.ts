/** Issue 8, kind 10: systemd-sysctl's file order (sysctl.d(5)) and the files that undo meshctl's rp_filter file. */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { orderSysctlFiles, rpFilterOverrides, describeOverride, type SysctlFileSettings } from '../../src/facts/sysctl-order.js';
import { parseRpFilterSysctlFiles } from '../../src/facts/definitions.js';
import { combineRpFilter, judgeRpFilter, judgeRpFilterLasting } from '../../src/checks/judge.js';

const OURS = '/etc/sysctl.d/99-wireguard.conf';
const all = (value: number) => ({ key: 'net.ipv4.conf.all.rp_filter', value });
const dflt = (value: number) => ({ key: 'net.ipv4.conf.default.rp_filter', value });

/** The `rpfiles` section in the shape a lab node (Debian 12) with the hardening file prints it. */
const CAPTURE = [
  '/etc/sysctl.d/99-sysctl.conf\t',
  '/etc/sysctl.d/99-wireguard.conf\t',
  '/etc/sysctl.d/99-wireguard.conf\tnet.ipv4.conf.all.rp_filter = 2',
  '/etc/sysctl.d/99-wireguard.conf\tnet.ipv4.conf.default.rp_filter = 2',
  '/etc/sysctl.d/99-zz-hardening.conf\t',
  '/etc/sysctl.d/99-zz-hardening.conf\tnet.ipv4.conf.all.rp_filter=1',
  '/etc/sysctl.d/99-zz-hardening.conf\tnet.ipv4.conf.default.rp_filter = 1',
  '/usr/lib/sysctl.d/50-default.conf\t',
  '/usr/lib/sysctl.d/50-default.conf\tnet.ipv4.conf.default.rp_filter = 2',
  '/usr/lib/sysctl.d/50-default.conf\t-net.ipv4.conf.all.rp_filter = 2',
  '/etc/sysctl.conf\t',
].join('\n');

describe('orderSysctlFiles (sysctl.d(5))', () => {
  it('sorts by file name across directories, the /etc copy of a name wins, /etc/sysctl.conf last', () => {
    const order = orderSysctlFiles([
      '/etc/sysctl.conf',
      '/usr/lib/sysctl.d/50-default.conf',
      '/usr/lib/sysctl.d/99-zz-hardening.conf',
      '/etc/sysctl.d/99-zz-hardening.conf',
      '/lib/sysctl.d/10-a.conf',
      '/run/sysctl.d/60-b.conf',
      '/usr/local/lib/sysctl.d/60-b.conf',
      '/etc/sysctl.d/99-wireguard.conf',
      '/etc/sysctl.d/README',
    ]);
    assert.deepEqual(order, [
      '/lib/sysctl.d/10-a.conf',
      '/usr/lib/sysctl.d/50-default.conf',
      '/run/sysctl.d/60-b.conf',
      '/etc/sysctl.d/99-wireguard.conf',
      '/etc/sysctl.d/99-zz-hardening.conf',
      '/etc/sysctl.conf',
    ]);
  });
});

describe('rpFilterOverrides', () => {
  const q = { ours: OURS, iface: 'wg0', mode: 2 };
  it('names a later file with another value, not an earlier one', () => {
    const files = parseRpFilterSysctlFiles(CAPTURE, 'wg0');
    assert.deepEqual(rpFilterOverrides(files, q), [
      { path: '/etc/sysctl.d/99-zz-hardening.conf', key: 'net.ipv4.conf.all.rp_filter', value: 1 },
      { path: '/etc/sysctl.d/99-zz-hardening.conf', key: 'net.ipv4.conf.default.rp_filter', value: 1 },
    ]);
    assert.equal(
      describeOverride(rpFilterOverrides(files, q)[0]!, OURS),
      '/etc/sysctl.d/99-zz-hardening.conf sets net.ipv4.conf.all.rp_filter = 1 after 99-wireguard.conf: rp_filter will be strict again after a reboot',
    );
    assert.deepEqual(
      rpFilterOverrides(
        files.filter((f) => !f.path.includes('zz')),
        q,
      ),
      [],
    );
  });
  it('a same-named (even empty) file in /etc masks the one in /usr/lib; /etc/sysctl.conf counts last', () => {
    const usr: SysctlFileSettings = { path: '/usr/lib/sysctl.d/99-zz.conf', settings: [all(1)] };
    assert.equal(rpFilterOverrides([usr], q).length, 1);
    assert.deepEqual(rpFilterOverrides([usr, { path: '/etc/sysctl.d/99-zz.conf', settings: [] }], q), []);
    const conf = { path: '/etc/sysctl.conf', settings: [dflt(1)] };
    assert.deepEqual(rpFilterOverrides([{ path: '/etc/sysctl.d/zz.conf', settings: [dflt(2)] }, conf], q), [
      { path: '/etc/sysctl.conf', key: 'net.ipv4.conf.default.rp_filter', value: 1 },
    ]);
  });
  it('the last file decides; our file counts when not written yet; an interface key above the mode counts', () => {
    const later = { path: '/etc/sysctl.d/99-zz.conf', settings: [all(1), all(2)] };
    assert.deepEqual(rpFilterOverrides([later], q), []);
    const own = { path: '/etc/sysctl.d/10-wg.conf', settings: [{ key: 'net.ipv4.conf.wg0.rp_filter', value: 1 }] };
    assert.deepEqual(rpFilterOverrides([own], { ...q, mode: 0 }), [{ path: own.path, key: 'net.ipv4.conf.wg0.rp_filter', value: 1 }]);
    assert.deepEqual(rpFilterOverrides([own], q), []);
  });
  it('parses slashes and a leading dash, and ignores other interfaces', () => {
    const files = parseRpFilterSysctlFiles(
      '/etc/sysctl.d/a.conf\t-net/ipv4/conf/all/rp_filter=1\n/etc/sysctl.d/a.conf\tnet.ipv4.conf.eth0.rp_filter = 1\n',
      'wg0',
    );
    assert.deepEqual(files, [{ path: '/etc/sysctl.d/a.conf', settings: [all(1)] }]);
  });
});

describe('judgeRpFilterLasting', () => {
  const e = { iface: 'wg0', mode: 2, ours: OURS };
  it('warns on a strict default and names a later file; passes when nothing overrides', () => {
    const files = parseRpFilterSysctlFiles(CAPTURE, 'wg0');
    const j = judgeRpFilterLasting(e, { default: 1, files });
    assert.equal(j.status, 'warn');
    assert.match(j.message, /^\/etc\/sysctl\.d\/99-zz-hardening\.conf sets net\.ipv4\.conf\.all\.rp_filter = 1 .*\(\+2 more\)$/);
    assert.match(j.evidence?.[2] ?? '', /default\.rp_filter is strict \(1\): a re-created wg0 would start strict/);
    assert.match(judgeRpFilterLasting(e, { default: 1 }).message, /default\.rp_filter is strict \(1\)/);
    assert.equal(judgeRpFilterLasting(e, { default: 2, files: files.filter((f) => !f.path.includes('zz')) }).status, 'pass');
    assert.equal(judgeRpFilterLasting({ ...e, mode: 1 }, { default: 1 }).status, 'pass');
  });
  it('combined with rp_filter now: a pass becomes the lasting warning, a fail stays a fail', () => {
    const lasting = judgeRpFilterLasting(e, { default: 1 });
    const now = judgeRpFilter({ iface: 'wg0', mode: 2 }, { all: 1, default: 1, iface: 2, effective: 2 });
    assert.equal(now.status, 'pass');
    assert.equal(combineRpFilter(now, lasting).status, 'warn');
    const strict = judgeRpFilter({ iface: 'wg0', mode: 2 }, { all: 1, default: 1, iface: 1, effective: 1 });
    assert.equal(combineRpFilter(strict, lasting).status, 'fail');
  });
});
