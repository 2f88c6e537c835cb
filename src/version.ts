/** The gateway's version, sent in the User-Agent of every delivery (kept equal to package.json by a test). */
export const VERSION = '0.1.0';
export const USER_AGENT = `InfraAudit-Webhooks/${VERSION}`;
