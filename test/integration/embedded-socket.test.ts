// The embedded database accepts connections from this gateway's user only: it is served on a Unix
// socket of mode 0600 in a directory of mode 0700 in DATA_DIR, and on no TCP port at all.
import { readdir, readFile, readlink, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { onRealPostgres } from '../helpers/database.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';

/** The TCP ports this process listens on, from /proc: its socket inodes in LISTEN state. */
async function listeningPorts(): Promise<Set<number>> {
  const inodes = new Set<string>();
  for (const fd of await readdir('/proc/self/fd')) {
    const target = await readlink(path.join('/proc/self/fd', fd)).catch(() => '');
    const match = /^socket:\[(\d+)\]$/.exec(target);
    if (match) inodes.add(match[1]!);
  }
  const ports = new Set<number>();
  for (const table of ['/proc/self/net/tcp', '/proc/self/net/tcp6']) {
    const text = await readFile(table, 'utf8').catch(() => '');
    for (const line of text.split('\n').slice(1)) {
      const fields = line.trim().split(/\s+/);
      // local_address is HEXIP:HEXPORT, st 0A is LISTEN, inode is the 10th field.
      if (fields.length < 10 || fields[3] !== '0A' || !inodes.has(fields[9]!)) continue;
      ports.add(parseInt(fields[1]!.split(':')[1]!, 16));
    }
  }
  return ports;
}

describe.skipIf(onRealPostgres)('the embedded database’s socket (embedded database only)', () => {
  let gw: TestGateway;
  let before: Set<number>;

  beforeAll(async () => {
    before = await listeningPorts();
    gw = await startTestGateway();
  });
  afterAll(async () => {
    await gw?.close();
  });

  it('is a Unix socket of mode 0600 in a directory of mode 0700 inside DATA_DIR', async () => {
    const host = new URL(gw.gateway.db.url).searchParams.get('host')!;
    expect(path.dirname(host)).toBe(path.resolve(gw.database.dataDir));
    const socket = await stat(path.join(host, '.s.PGSQL.5432'));
    expect(socket.isSocket()).toBe(true);
    expect(socket.mode & 0o777).toBe(0o600);
    expect(socket.uid).toBe(process.getuid!());
    const dir = await stat(host);
    expect(dir.mode & 0o777).toBe(0o700);
    // And it is the way in: a client of this user connects through it.
    const c = new pg.Client({ connectionString: gw.gateway.db.url });
    await c.connect();
    try {
      expect((await c.query<{ n: number }>('select 1 as n')).rows).toEqual([{ n: 1 }]);
    } finally {
      await c.end();
    }
  });

  it('opens no TCP port besides the HTTP one', async () => {
    const after = await listeningPorts();
    const opened = [...after].filter((port) => !before.has(port));
    expect(opened).toEqual([Number(new URL(gw.url).port)]);
  });

  it('a restart finds the socket left by a process that ended without closing it, and replaces it', async () => {
    const socketPath = path.join(new URL(gw.gateway.db.url).searchParams.get('host')!, '.s.PGSQL.5432');
    await gw.stop();
    // What a killed process leaves behind: the socket file (here, an empty file in its place).
    await writeFile(socketPath, '');
    gw = await gw.restart();
    expect((await stat(socketPath)).isSocket()).toBe(true);
    expect((await stat(socketPath)).mode & 0o777).toBe(0o600);
  });
});
