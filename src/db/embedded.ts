// The embedded default: PGlite (Postgres compiled to WebAssembly) persisted in DATA_DIR and served
// over the Postgres protocol, so the very same driver, migrations and SQL run as against a real
// server. PGlite is one process's database: a lock file keeps a second process (another server, or
// the command line while the server runs) from opening the same files and corrupting them.
//
// PGlite asks for no password, so whoever reaches its socket has the whole database. It is served
// on a Unix socket, never a TCP port (any local user could reach that): the socket is made in a
// directory of mode 0700 in DATA_DIR, so no other user can reach it even before it is given mode
// 0600 itself, and only this process's user can connect.
import { chmod, mkdir, mkdtemp, open, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import { PGLiteSocketServer } from '@electric-sql/pglite-socket';

export interface EmbeddedDatabase {
  url: string;
  /** The Unix socket the database is served on. */
  socketPath: string;
  close(): Promise<void>;
}

// pg finds a server's socket as <directory>/.s.PGSQL.<port>, 5432 unless the URL says otherwise.
const SOCKET_NAME = '.s.PGSQL.5432';
// Unix socket paths are limited to 107 bytes on Linux (103 on macOS).
const MAX_SOCKET_PATH = 100;

/** A directory only this user may enter, for the socket: in DATA_DIR unless its path is too long. */
async function socketDirectory(dataDir: string): Promise<{ dir: string; temporary: boolean }> {
  const inDataDir = path.resolve(dataDir, 'pgsocket');
  if (Buffer.byteLength(path.join(inDataDir, SOCKET_NAME)) <= MAX_SOCKET_PATH) {
    await mkdir(inDataDir, { recursive: true, mode: 0o700 });
    // mkdir leaves an existing directory as it is.
    await chmod(inDataDir, 0o700);
    return { dir: inDataDir, temporary: false };
  }
  return { dir: await mkdtemp(path.join(tmpdir(), 'infraaudit-gateway-')), temporary: true };
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
    }
    // The lock file exists: its process either still runs or is gone.
    const owner = Number((await readFile(file, 'utf8').catch(() => '')).trim());
    if (Number.isInteger(owner) && owner > 0 && alive(owner)) {
      throw new Error(
        `the embedded database in ${path.dirname(file)} is in use by process ${owner}; stop it first (or use DATABASE_URL)`,
      );
    }
    // Left behind by a process that is gone: take it over.
    await rm(file, { force: true });
  }
  throw new Error(`could not lock ${file}`);
}

export async function startEmbeddedDatabase(dataDir: string): Promise<EmbeddedDatabase> {
  const dir = path.resolve(dataDir, 'pgdata');
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const lock = path.resolve(dataDir, 'pgdata.lock');
  await acquireLock(lock);
  try {
    const { dir: socketDir, temporary } = await socketDirectory(dataDir);
    const socketPath = path.join(socketDir, SOCKET_NAME);
    // Left behind by a process that ended without closing it (the lock says none runs now).
    await rm(socketPath, { force: true });
    const db = await PGlite.create(dir);
    const server = new PGLiteSocketServer({ db, path: socketPath, maxConnections: 4 });
    await server.start();
    await chmod(socketPath, 0o600);
    return {
      url: `postgresql://postgres@localhost/postgres?host=${encodeURIComponent(socketDir)}`,
      socketPath,
      async close() {
        await server.stop();
        await db.close();
        await rm(temporary ? socketDir : socketPath, { recursive: true, force: true });
        await rm(lock, { force: true });
      },
    };
  } catch (err) {
    await rm(lock, { force: true });
    throw err;
  }
}
