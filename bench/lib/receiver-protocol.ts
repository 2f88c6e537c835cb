// Messages between the benchmark runner and its receiver process (bench/receiver.ts).

export interface RunReport {
  run: string;
  /** Requests received with this run tag (duplicates included). */
  count: number;
  /** Distinct delivery ids among them. */
  distinct: number;
  /** Receipt times (ms on the shared wall clock, fractional) of the first and last request. */
  first: number;
  last: number;
  /** Receipt time minus the `sentAt` stamped into the event data, per request, in ms. */
  latencies: number[];
}

export type ReceiverRequest =
  | { op: 'expect'; id: number; run: string; count: number }
  | { op: 'collect'; id: number; run: string }
  | { op: 'forget'; run: string }
  | { op: 'close' };

export type ReceiverReply =
  | { op: 'ready'; healthyPort: number; silentPort: number }
  | { op: 'reached'; id: number; report: RunReport }
  | { op: 'collected'; id: number; report: RunReport };
