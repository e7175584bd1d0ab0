// `npm run bench`: every benchmark scenario in one run on this machine, with the peers (the bare
// uWebSockets.js ceiling and Socket.IO 4) measured in the same run, side by side.
//
//   node dist/bench/run.js            fan-out + latency (one pod, across pods), connect storm and
//                                     takeover, idle capacity, slow consumers (6½–9 minutes)
//   node dist/bench/run.js --quick    the same with shorter windows and fewer connections (70–95 s)
//   node dist/bench/run.js --smoke    a check that the harness runs (bare + one pod, tiny), not a measurement
//   --out=dir                         where the results go (default bench/results)
//   --rounds=N                        sweep the fan-out paths N times and report the median (fanout.js)
//
// Each scenario runs as its own process (fanout.js, cluster.js, idle.js, slowConsumers.js),
// which starts and stops everything it measures and writes its JSON; this one merges them into
// report.json and report.md: figure | Switchboard | ceiling | Socket.IO | Switchboard ÷ ceiling. A scenario that
// fails leaves its rows empty and its reason in the report rather than ending the run.
import { spawn, type ChildProcess } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { renderTable, type ScenarioFiles } from './runReport.js';

const { values: flags } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    smoke: { type: 'boolean', default: false },
    out: { type: 'string' },
    rounds: { type: 'string' },
  },
});
const DEFAULT_OUT = fileURLToPath(new URL('../../bench/results/', import.meta.url));
const outDir = flags.out ?? DEFAULT_OUT;
const mode = flags.smoke ? 'smoke' : flags.quick ? 'quick' : 'full';
const modeFlag = mode === 'full' ? [] : [`--${mode}`];

// bare-send is a diagnostic of Switchboard's delivery technique, not a peer: `npm run bench:fanout`
// keeps it. Quick mode leaves out Socket.IO across nodes to stay near a minute.
const FANOUT_SCENARIOS: Readonly<Record<typeof mode, string>> = {
  smoke: 'bare,one-pod',
  quick: 'bare,socketio,one-pod,cross-pod',
  full: 'bare,socketio,socketio-cross,one-pod,cross-pod',
};

/** One scenario process: its script, arguments and the JSON file it leaves in the results folder. */
interface Step {
  readonly name: keyof ScenarioFiles;
  readonly script: string;
  readonly args: readonly string[];
  readonly file: string;
}

const steps: Step[] = [
  {
    name: 'fanout',
    script: 'fanout.js',
    args: [...modeFlag, `--scenarios=${FANOUT_SCENARIOS[mode]}`, `--out=${outDir}`, ...(flags.rounds === undefined ? [] : [`--rounds=${flags.rounds}`])],
    file: 'fanout.json',
  },
  // cluster.js always writes to bench/results and has no smoke size; it is copied to --out when that differs.
  ...(mode === 'smoke' ? [] : [{ name: 'cluster' as const, script: 'cluster.js', args: modeFlag, file: 'cluster.json' }]),
  {
    name: 'idle',
    script: 'idle.js',
    args: [...modeFlag, `--targets=${mode === 'smoke' ? 'switchboard,bare' : 'switchboard,bare,socketio'}`, `--out=${outDir}`],
    file: 'idle.json',
  },
  { name: 'slowConsumers', script: 'slowConsumers.js', args: [...modeFlag, `--out=${outDir}`], file: 'slow-consumers.json' },
];

let current: ChildProcess | undefined;
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    // The scenario process stops what it started on SIGINT; wait for it, then leave.
    process.stderr.write(`\n${signal}: stopping the running scenario\n`);
    if (current === undefined || current.exitCode !== null) process.exit(130);
    current.kill('SIGINT');
    current.once('exit', () => process.exit(130));
  });
}

mkdirSync(outDir, { recursive: true });
const startedAt = Date.now();
const files: ScenarioFiles = {};
const failures: Record<string, string> = {};
for (const step of steps) {
  process.stderr.write(`== ${step.name} (${mode})\n`);
  const stepStartedAt = Date.now();
  const code = await runScenario(step);
  const writtenTo = step.name === 'cluster' ? DEFAULT_OUT : outDir;
  const path = join(writtenTo, step.file);
  if (code !== 0) failures[step.name] = `exited with ${code}`;
  else if (!existsSync(path)) failures[step.name] = `wrote no ${step.file}`;
  else {
    if (writtenTo !== outDir) copyFileSync(path, join(outDir, step.file));
    files[step.name] = JSON.parse(readFileSync(path, 'utf8')) as never;
  }
  process.stderr.write(`== ${step.name}: ${((Date.now() - stepStartedAt) / 1000).toFixed(0)} s${failures[step.name] === undefined ? '' : `, ${failures[step.name]}`}\n`);
}

const { rows, markdown } = renderTable(files, failures, mode);
const report = { mode, startedAt: new Date(startedAt).toISOString(), seconds: (Date.now() - startedAt) / 1000, failures, rows, scenarios: files };
writeFileSync(join(outDir, 'report.json'), `${JSON.stringify(report, null, 2)}\n`);
writeFileSync(join(outDir, 'report.md'), markdown);
process.stdout.write(markdown);
process.exitCode = Object.keys(failures).length === 0 ? 0 : 1;

/** Runs one scenario process with its output passed through; answers its exit code. */
function runScenario(step: Step): Promise<number> {
  const script = fileURLToPath(new URL(`./${step.script}`, import.meta.url));
  const child = spawn(process.execPath, [script, ...step.args], { stdio: ['ignore', 'inherit', 'inherit'] });
  current = child;
  return new Promise((resolve) => {
    child.once('error', () => resolve(-1));
    child.once('exit', (code, signal) => resolve(code ?? (signal === null ? -1 : 128)));
  });
}
