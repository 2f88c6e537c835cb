// The embedded default: PGlite (Postgres compiled to WebAssembly) persisted in DATA_DIR and served
// on a loopback port, so the very same driver, migrations and SQL run as against a real server.
// PGlite is one process's database: a lock file keeps a second process (another server, or the
// command line while the server runs) from opening the same files and corrupting them.
import { mkdir, open, readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import { PGLiteSocketServer } from '@electric-sql/pglite-socket';

export interface EmbeddedDatabase {
  url: string;
  close(): Promise<void>;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

async function acquireLock(file: string): Promise<void> {
  for (let tries = 0; tries < 2; tries += 1) {
    try {
      const handle = await open(file, 'wx', 0o600);
      await handle.writeFile(String(process.pid));
      await handle.close();
      return;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const owner = Number((await readFile(file, 'utf8').catch(() => '')).trim());
      if (Number.isInteger(owner) && owner > 0 && alive(owner)) {
        throw new Error(
          `the embedded database in ${path.dirname(file)} is in use by process ${owner}; stop it first (or use DATABASE_URL)`,
        );
      }
      // Left behind by a process that is gone: take it over.
      await rm(file, { force: true });
    }
  }
  throw new Error(`could not lock ${file}`);
}

export async function startEmbeddedDatabase(dataDir: string): Promise<EmbeddedDatabase> {
  const dir = path.resolve(dataDir, 'pgdata');
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const lock = path.resolve(dataDir, 'pgdata.lock');
  await acquireLock(lock);
  try {
    const db = await PGlite.create(dir);
    const server = new PGLiteSocketServer({ db, host: '127.0.0.1', port: 0, maxConnections: 4 });
    await server.start();
    const conn = server.getServerConn();
    return {
      url: `postgresql://postgres:postgres@${conn}/postgres?sslmode=disable`,
      async close() {
        await server.stop();
        await db.close();
        await rm(lock, { force: true });
      },
    };
  } catch (err) {
    await rm(lock, { force: true });
    throw err;
  }
}
