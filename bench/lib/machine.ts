// The machine line of the report.
import os from 'node:os';
import { databaseVersion } from './database.js';

export interface MachineInfo {
  cores: number;
  cpu: string;
  memoryGiB: number;
  node: string;
  postgres: string;
  platform: string;
}

export async function machineInfo(): Promise<MachineInfo> {
  return {
    cores: os.availableParallelism(),
    cpu: os.cpus()[0]?.model.trim() ?? 'unknown',
    memoryGiB: os.totalmem() / 1024 ** 3,
    node: process.version,
    postgres: await databaseVersion(),
    platform: `${os.type()} ${os.release()} ${os.arch()}`,
  };
}
