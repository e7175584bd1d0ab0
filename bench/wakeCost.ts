// What waking a Node process costs on this machine, measured beside the fan-out figures. Every
// process an event passes through is woken for it, and a virtual machine can make a wake-up
// costly: on the nested-virtualization sandboxes these figures were taken on, a Node process
// woken by a pipe spent 130–170 µs of CPU per wake, while a Python one spent about 20 µs. The
// higher this figure, the more each extra process on a path (the consuming pod, Redis) costs it.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';

const ECHO_SCRIPT = fileURLToPath(new URL('./wakeEcho.js', import.meta.url));
/** Wakes per second: about the rate at which the fan-out sweeps reach their limit here. */
const RATE = 300;
const WAKES = 600;
/** Unmeasured wakes first, so the child's code is compiled and its start-up is not counted. */
const WARM_UP_WAKES = 50;
const ANSWER_TIMEOUT_MS = 5000;

export interface WakeCost {
  /** CPU the woken process spent per wake-up, µs. */
  readonly cpuMicrosPerWake: number;
  /** Write → answer between two processes, µs. */
  readonly roundTripP50Micros: number;
  readonly roundTripP99Micros: number;
  /** Wakes per second it was measured at. */
  readonly rate: number;
}

/** Wakes an idle Node child RATE times a second through a pipe and measures what each wake costs it. */
export async function measureWakeCost(): Promise<WakeCost> {
  const child = spawn(process.execPath, [ECHO_SCRIPT], { stdio: ['pipe', 'pipe', 'inherit'] });
  const answers = new AnswerReader(child.stdout);
  try {
    const ask = async (byte: 'p' | 'c', complete: (text: string) => boolean): Promise<string> => {
      answers.clear();
      child.stdin.write(byte);
      return answers.waitFor(complete);
    };
    const wake = () => ask('p', (text) => text.length > 0);
    const cpuMicros = async () => Number((await ask('c', (text) => text.endsWith('\n'))).trim());
    for (let i = 0; i < WARM_UP_WAKES; i++) {
      await wake();
      await sleep(1000 / RATE);
    }
    const cpuBefore = await cpuMicros();
    const roundTrips: number[] = [];
    const startedAt = performance.now();
    for (let i = 0; i < WAKES; i++) {
      const sentAt = performance.now();
      await wake();
      roundTrips.push((performance.now() - sentAt) * 1000);
      // Paced by the clock since the start, so a slow answer does not lower the rate.
      const untilNext = startedAt + ((i + 1) * 1000) / RATE - performance.now();
      if (untilNext > 0) await sleep(untilNext);
    }
    const cpuAfter = await cpuMicros();
    roundTrips.sort((a, b) => a - b);
    return {
      cpuMicrosPerWake: (cpuAfter - cpuBefore) / WAKES,
      roundTripP50Micros: roundTrips[Math.floor(WAKES * 0.5)] ?? 0,
      roundTripP99Micros: roundTrips[Math.floor(WAKES * 0.99)] ?? 0,
      rate: RATE,
    };
  } finally {
    child.stdin.end();
    answers.close();
  }
}

/** Collects a child's answers and resolves a wait once what arrived completes it. */
class AnswerReader {
  #text = '';
  #waiter: { readonly complete: (text: string) => boolean; readonly resolve: (text: string) => void } | undefined;
  #timer: NodeJS.Timeout | undefined;

  constructor(private readonly stream: NodeJS.ReadableStream) {
    stream.setEncoding('latin1');
    stream.on('data', (chunk: string) => {
      this.#text += chunk;
      const waiter = this.#waiter;
      if (waiter === undefined || !waiter.complete(this.#text)) return;
      this.#waiter = undefined;
      clearTimeout(this.#timer);
      waiter.resolve(this.#text);
    });
  }

  clear(): void {
    this.#text = '';
  }

  waitFor(complete: (text: string) => boolean): Promise<string> {
    if (complete(this.#text)) return Promise.resolve(this.#text);
    return new Promise((resolve, reject) => {
      this.#waiter = { complete, resolve };
      this.#timer = setTimeout(() => reject(new Error(`the wake-up probe did not answer within ${ANSWER_TIMEOUT_MS} ms`)), ANSWER_TIMEOUT_MS);
    });
  }

  close(): void {
    clearTimeout(this.#timer);
    this.stream.removeAllListeners('data');
  }
}
