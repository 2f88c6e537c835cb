// The catalogue of subscribable events. `ping` and the operational events (webhook.*) are sent by
// the gateway itself and may be subscribed to, but never published.
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
  {
    event: 'webhook.failing',
    description: "Sent by the gateway when a delivery of another of the tenant's webhooks failed for good, the first time since that webhook's last success",
  },
  { event: 'webhook.disabled', description: "Sent by the gateway when it disabled another of the tenant's webhooks (failing, or its endpoint answered 410 Gone)" },
  {
    event: 'webhook.recovered',
    description: 'Sent by the gateway when a webhook that had a failed delivery answered 2xx again (to the other webhooks and to that webhook itself)',
  },
] as const;

export type EventType = (typeof EVENT_TYPES)[number]['event'];

const NAMES = new Set<string>(EVENT_TYPES.map((e) => e.event));

/** The operational events: a webhook's health changed. */
export type OperationalEventType = 'webhook.failing' | 'webhook.disabled' | 'webhook.recovered';

const SENT_BY_GATEWAY = new Set<string>(['ping', 'webhook.failing', 'webhook.disabled', 'webhook.recovered'] satisfies EventType[]);

/** Types only the gateway itself sends: known and subscribable, but never published through the API. */
export function isSentByGateway(value: string): boolean {
  return SENT_BY_GATEWAY.has(value);
}

export function isEventType(value: string): value is EventType {
  return NAMES.has(value);
}
