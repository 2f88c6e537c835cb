export interface Viewer {
  /** The tenant this caller acts for; null for a service token without a tenant claim. */
  tenantId: string | null;
  /** `service` for JWTs whose role is service_role: they may publish for any tenant. */
  role: 'user' | 'service';
  via: 'jwt' | 'api_key';
  /** The API key that authenticated this caller, so a stream can end when it is revoked. */
  apiKeyId?: string;
  /** When the JWT stops being valid (its `exp`); a stream ends then. */
  expiresAt?: Date;
}

/** A viewer acting for one tenant (users and API keys; service tokens with a tenant claim). */
export type TenantViewer = Viewer & { tenantId: string };
