/** Reads /proc to find a lab's processes and mounts (no commands: plain files). */
import { readdirSync, readFileSync, readlinkSync, statSync } from 'node:fs';

const numeric = (entry: string) => /^\d+$/.test(entry);

export function listPids(): number[] {
  return readdirSync('/proc').filter(numeric).map(Number);
}

export function cmdline(pid: number): string[] {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
  } catch {
    return [];
  }
}

/** Children of a process (all threads). */
export function children(pid: number): number[] {
  try {
    return readdirSync(`/proc/${pid}/task`).flatMap((tid) =>
      readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').split(' ').filter(Boolean).map(Number),
    );
  } catch {
    return [];
  }
}

/** The process that is PID 1 of a new PID namespace below `pid` (a node's systemd under systemd-nspawn). */
export function findContainerInit(pid: number, depth = 3): number | undefined {
  for (const child of children(pid)) {
    if (isNamespaceInit(child)) return child;
    if (depth > 1) {
      const found = findContainerInit(child, depth - 1);
      if (found) return found;
    }
  }
  return undefined;
}

function isNamespaceInit(pid: number): boolean {
  try {
    const line = readFileSync(`/proc/${pid}/status`, 'utf8')
      .split('\n')
      .find((l) => l.startsWith('NSpid:'));
    const ids = line?.split(/\s+/).slice(1) ?? [];
    return ids.length > 1 && ids[ids.length - 1] === '1';
  } catch {
    return false;
  }
}

/** Inode of a named network namespace (`/run/netns/NAME`), comparable with /proc/PID/ns/net. */
export function netnsInode(name: string): number | undefined {
  try {
    return statSync(`/run/netns/${name}`).ino;
  } catch {
    return undefined;
  }
}

export function processNetnsInode(pid: number): number | undefined {
  try {
    const match = /^net:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/ns/net`));
    return match ? Number(match[1]) : undefined;
  } catch {
    return undefined;
  }
}

/** Mount points of the host's mount namespace at or below `dir`, deepest first. */
export function mountsBelow(dir: string): string[] {
  const text = readFileSync('/proc/self/mountinfo', 'utf8');
  const points = text
    .split('\n')
    .filter(Boolean)
    .map((line) => line.split(' ')[4]!.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8))))
    .filter((point) => point === dir || point.startsWith(`${dir}/`));
  return [...new Set(points)].sort((a, b) => b.length - a.length);
}
