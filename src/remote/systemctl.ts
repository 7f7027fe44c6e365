/**
 * `systemctl enable` and `systemctl disable` as meshctl's scripts run them: always with `--no-reload`.
 *
 * Why: after changing a unit's symlinks, systemctl reloads the whole manager by itself (systemctl(1): "--no-reload:
 * When used with enable and disable, do not implicitly reload daemon configuration after executing the changes").
 * That reload re-reads every unit file and reruns the generators: measured on a lab node (Debian 12, systemd 252,
 * 2026-12-01), `systemctl enable UNIT` took 150-180 ms of PID 1's CPU (with its generators) and 180-330 ms of wall,
 * `systemctl enable --no-reload UNIT` ~0 ms and ~15 ms. A cold `up` ran it twice per node (the re-resolve timer in
 * the config step, wg-quick@ in the enable step) on top of the one explicit `daemon-reload` the config step runs
 * after writing unit files; on 32 nodes sharing 2 cores that is ~10 CPU-seconds.
 *
 * What the reload would add is the manager's in-memory view of the new `Wants=` symlink, which nothing here needs:
 * the unit is started or stopped explicitly (`--now`, `restart`), its files were loaded by the explicit reload that
 * follows every unit-file write (or are loaded on first use), and `systemctl is-enabled` reads the symlinks on disk.
 * The next boot, or any later reload, reads the symlink as usual.
 */
import { sh } from './shell.js';

/**
 * The command text: `systemctl enable --now --no-reload 'UNIT'` (`--now` only when asked). `verb` is `enable` or
 * `disable`; `now` also starts (enable) or stops (disable) the unit.
 */
export const systemctlEnablement = (verb: 'enable' | 'disable', unit: string, now = false): string =>
  now ? sh`systemctl ${verb} --now --no-reload ${unit}`.text : sh`systemctl ${verb} --no-reload ${unit}`.text;
