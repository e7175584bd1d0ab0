// Child of bench/wakeCost.ts: answers each byte on stdin with one byte on stdout, and the byte
// `c` with its own CPU time so far (µs, one line). Nothing else runs in it, so its CPU per answer
// is what one wake-up of a Node process costs on this machine.
const CPU_QUERY = 0x63;

process.stdin.on('data', (chunk: Buffer) => {
  for (const byte of chunk) {
    if (byte !== CPU_QUERY) {
      process.stdout.write('.');
      continue;
    }
    const { user, system } = process.cpuUsage();
    process.stdout.write(`${user + system}\n`);
  }
});
