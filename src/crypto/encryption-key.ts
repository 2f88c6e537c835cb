import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { generateEncryptionKeyHex } from './secrets.js';

/**
 * The key that encrypts webhook secrets at rest. With a real database it must be given
 * (ENCRYPTION_KEY), because losing it makes every stored secret unreadable; the embedded default
 * keeps one of its own in DATA_DIR, readable by its owner only.
 */
export async function resolveEncryptionKey(options: {
  configured: string | undefined;
  embedded: boolean;
  dataDir: string;
}): Promise<string> {
  if (options.configured) return options.configured;
  if (!options.embedded) {
    throw new Error(
      'ENCRYPTION_KEY is required with DATABASE_URL: set it to 64 hex characters (for example: openssl rand -hex 32)',
    );
  }
  const file = path.resolve(options.dataDir, 'encryption.key');
  try {
    const existing = (await readFile(file, 'utf8')).trim();
    if (/^[0-9a-f]{64}$/.test(existing)) return existing;
    throw new Error(`${file} does not hold a 64-hex-character key`);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  await mkdir(options.dataDir, { recursive: true, mode: 0o700 });
  const key = generateEncryptionKeyHex();
  await writeFile(file, `${key}\n`, { mode: 0o600, flag: 'wx' });
  await chmod(file, 0o600);
  return key;
}
