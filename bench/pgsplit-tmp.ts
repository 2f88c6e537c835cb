import { readdir, readFile } from 'node:fs/promises';
import { createBenchDatabase } from './lib/database.js';
import { startGatewayProcess, buildGateway } from './lib/gateway-process.js';
import { createWebhooks, publishEvents } from './lib/load.js';
import { serviceToken, userToken } from './lib/http-client.js';
import { cpuMs, stopAllChildren } from './lib/processes.js';
async function snap() {
  const m = new Map<string, number>();
  for (const e of await readdir('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    const stat = await readFile(`/proc/${e}/stat`, 'utf8').catch(() => '');
    if (!stat.includes('(postgres)')) continue;
    const cmd = (await readFile(`/proc/${e}/cmdline`, 'utf8').catch(() => '')).replace(/\0/g, ' ').trim();
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    m.set(`${e} ${cmd}`, (Number(f[11]) + Number(f[12])) * 10);
  }
  return m;
}
await buildGateway();
const db = await createBenchDatabase();
if (process.env['ASYNC']) { const name = new URL(db.env['DATABASE_URL']!).pathname.slice(1); await db.withSql((q) => q(`alter database ${name} set synchronous_commit = off`)); }
const gw = await startGatewayProcess({ ...db.env, ROLE: process.env['R'] ?? 'api' });
await createWebhooks(gw.url, await userToken('t1'), Array.from({ length: 10 }, (_, i) => `http://127.0.0.1:9/hook/${i}`));
const n = 2000;
const a = await snap(); const g0 = await cpuMs(gw.pid);
await publishEvents({ gatewayUrl: gw.url, token: await serviceToken(), tenant: 't1', run: 'x', count: n, concurrency: Number(process.env['C'] ?? 8) });
const b = await snap(); const g1 = await cpuMs(gw.pid);
const rows = [...b].map(([k, v]) => [k.replace(/gateway_bench_\w+/, 'DB'), (v - (a.get(k) ?? 0)) / n] as const).filter(([, v]) => v > 0.005).sort((x, y) => y[1] - x[1]);
for (const [k, v] of rows) console.log(v.toFixed(3), k.slice(0, 110));
console.log('gateway', ((g1 - g0) / n).toFixed(3));
await gw.stop(); await db.drop(); await stopAllChildren();
