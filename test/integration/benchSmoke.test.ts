import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import type { Row } from '../../bench/runReport.js';

const RUNNER = fileURLToPath(new URL('../../bench/run.js', import.meta.url));
const DEADLINE_MS = 90_000;

test('the benchmark harness in --smoke mode measures the ceiling and one pod, with slow consumers, and writes a side-by-side report', { timeout: DEADLINE_MS + 10_000 }, async () => {
  const out = mkdtempSync(join(tmpdir(), 'bench-smoke-'));
  const child = spawn(process.execPath, [RUNNER, '--smoke', `--out=${out}`], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr = (stderr + chunk.toString()).slice(-4000)));
  child.stdout.resume();
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  // SIGINT lets the runner stop every process its scenarios started.
  const timer = setTimeout(() => child.kill('SIGINT'), DEADLINE_MS);
  try {
    assert.equal(await exited, 0, `the harness failed:\n${stderr}`);
    const report = JSON.parse(readFileSync(join(out, 'report.json'), 'utf8')) as { rows: Row[]; failures: Record<string, string> };
    assert.deepEqual(report.failures, {});
    const figure = (prefix: string) => report.rows.find((r) => r.figure.startsWith(prefix));
    const fanout = figure('fan-out, one pod: events/s');
    assert.ok(fanout !== undefined && (fanout.ceiling ?? 0) > 0, `the ceiling delivered: ${JSON.stringify(fanout)}`);
    const p50 = figure('latency p50, one pod');
    assert.ok(p50?.switchboard !== undefined && p50.switchboard > 0 && p50.ceiling !== undefined, `latency measured for both: ${JSON.stringify(p50)}`);
    const held = figure('idle: connections held');
    assert.ok(held?.switchboard !== undefined && held.switchboard > 0 && held.switchboard === held.ceiling, `idle connections held by both: ${JSON.stringify(held)}`);
    const readersWhileStalled = figure("slow consumers: readers' p99 while stalled");
    assert.ok(readersWhileStalled?.switchboard !== undefined && readersWhileStalled.ceiling !== undefined, `slow consumers measured for both: ${JSON.stringify(readersWhileStalled)}`);
    const rssPeak = figure('slow consumers: server RSS peak');
    assert.ok(rssPeak?.switchboard !== undefined && rssPeak.switchboard > 0, `server memory sampled: ${JSON.stringify(rssPeak)}`);
    const markdown = readFileSync(join(out, 'report.md'), 'utf8');
    assert.match(markdown, /\| figure \| Switchboard \| ceiling/);
    assert.match(markdown, /a Node process woken 300 times a second through a pipe spent [1-9]\d* µs of CPU/, "the report gives the machine's wake-up cost");
  } finally {
    clearTimeout(timer);
    if (child.exitCode === null) child.kill('SIGINT');
    await exited;
    rmSync(out, { recursive: true, force: true });
  }
});
