import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { openClient } from '../support/client.js';
import { waitFor } from '../support/wait.js';

const TOOL = fileURLToPath(new URL('../../tools/cluster.js', import.meta.url));

test('npm run cluster starts three pods on local Redis and NATS, prints working commands, and Ctrl-C stops it all', async () => {
  const child = spawn(process.execPath, [TOOL], { stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  let out = '';
  child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
  try {
    await waitFor(() => out.includes('Ctrl-C stops'), 30_000, 'the cluster to print its instructions');
    assert.equal((out.match(/^ {2}pod \d/gm) ?? []).length, 3);
    const url = /-c '(ws:\/\/[^']+)'/.exec(out)?.[1];
    const publish = /curl -s -X POST (\S+) -H 'X-API-Key: (\w+)'/.exec(out);
    assert.ok(url !== undefined && publish !== null, 'a WebSocket URL and a publish command');
    const client = await openClient(url);
    await client.expect('ready');
    const res = await fetch(publish[1] ?? '', {
      method: 'POST',
      headers: { 'x-api-key': publish[2] ?? '', 'content-type': 'application/json' },
      body: JSON.stringify({ subject: 'websocket.acme.support.chats', payload: { event_id: 'e1' } }),
    });
    assert.equal(res.status, 202);
    assert.deepEqual((await client.expect('event', 10_000)).payload, { event_id: 'e1' });
    client.close();
  } finally {
    child.kill('SIGINT');
  }
  assert.equal(await exited, 0);
});
