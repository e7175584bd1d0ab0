import { readFileSync } from 'node:fs';

/** Resident set (VmRSS) of a live process in bytes, read from /proc (0 once it is gone). */
export function residentBytes(pid: number): number {
  try {
    const match = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return Number(match?.[1] ?? 0) * 1024;
  } catch {
    return 0;
  }
}
