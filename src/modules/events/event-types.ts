// The catalogue of subscribable events. `ping` is sent by the gateway itself (on create and on
// /test) and may be subscribed to, but never published.
export const EVENT_TYPES = [
  { event: 'drift.detected', description: 'A resource drifted from its recorded baseline configuration' },
  { event: 'drift.resolved', description: 'A previously detected drift was resolved' },
  { event: 'alert.created', description: 'A new alert was raised' },
  { event: 'vulnerability.found', description: 'A vulnerability (CVE) was found by a scan' },
  { event: 'compliance.violation', description: 'A resource violates a compliance control' },
  { event: 'cost.anomaly', description: 'Spending deviated from the expected cost baseline' },
  { event: 'job.completed', description: 'A scan or audit job finished' },
  { event: 'remediation.completed', description: 'A remediation action finished' },
  { event: 'ping', description: 'Sent by the gateway to verify an endpoint (on create and on test)' },
] as const;

export type EventType = (typeof EVENT_TYPES)[number]['event'];

const NAMES = new Set<string>(EVENT_TYPES.map((e) => e.event));

export function isEventType(value: string): value is EventType {
  return NAMES.has(value);
}
