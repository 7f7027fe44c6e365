/**
 * `meshctl plan`'s text (src/ui/plan-view.ts): node content in it (the old side of a wg0.conf diff is the node's
 * own file; summaries and warnings quote node output) is shown with its control characters escaped, as `up
 * --dry-run`'s gate report shows the same plan. A hand-edited wg0.conf holding an escape sequence must not drive
 * the operator's terminal (set its title, rewrite the clipboard, hide lines) when plan prints the diff.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Chalk } from 'chalk';
import type { Plan } from '../../src/engine/plan.js';
import { renderPlan } from '../../src/ui/plan-view.js';

const OSC_TITLE = '\u001b]0;pwned\u0007';
const CSI_CLEAR = '\u001b[2J';

function planWithNodeText(): Plan {
  return {
    version: 1,
    inventory: 'inventories/homelab.yaml',
    playbook: 'playbooks/up.yaml',
    dryRun: true,
    phases: [
      {
        id: 'config',
        title: 'config',
        nodes: [
          {
            node: 'ms-1',
            actions: [
              {
                step: 'render-config',
                summary: `write /etc/wireguard/wg0.conf${CSI_CLEAR}`,
                script: 'true',
                changes: [
                  {
                    kind: 'write-file',
                    path: '/etc/wireguard/wg0.conf',
                    role: 'config',
                    beforeSha256: 'a'.repeat(64),
                    afterSha256: 'b'.repeat(64),
                    diff: [` [Interface]`, `-# hand edit ${OSC_TITLE}`, '+# managed by meshctl', 'x\u202eevil'],
                  },
                ],
              },
            ],
            warnings: [`a later sysctl file ${CSI_CLEAR} sets rp_filter`],
          },
        ],
      },
    ],
  };
}

describe('plan text', () => {
  const text = renderPlan(planWithNodeText(), new Chalk({ level: 0 }));

  it('holds no control character but its own newlines', () => {
    assert.doesNotMatch(text.replaceAll('\n', ''), /[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/);
  });

  it('shows them escaped, where they were', () => {
    assert.match(text, /^ {6}-# hand edit \\x1b\]0;pwned\\x07$/m);
    assert.match(text, /^ {2}ms-1 {2}write \/etc\/wireguard\/wg0\.conf\\x1b\[2J$/m);
    assert.match(text, /warning: a later sysctl file \\x1b\[2J sets rp_filter/);
    assert.match(text, /x\\u202eevil/);
    assert.match(text, /^ {6}\+# managed by meshctl$/m);
  });
});

describe('plan text: the last line says how to apply', () => {
  it('`meshctl up` for plan, what the caller says otherwise (down --dry-run: up would not do a down)', () => {
    const chalk = new Chalk({ level: 0 });
    assert.match(renderPlan(planWithNodeText(), chalk), /1 change planned on 1 node; run `meshctl up` to apply\n$/);
    assert.match(
      renderPlan(planWithNodeText(), chalk, 'run this down without --dry-run to apply'),
      /1 change planned on 1 node; run this down without --dry-run to apply\n$/,
    );
  });
});
