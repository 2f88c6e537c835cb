import { AppError } from '../errors.js';

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

export function requireViewer(viewer: Viewer | null): Viewer {
  if (!viewer) throw new AppError('UNAUTHORIZED', 'authentication required');
  return viewer;
}

export function requireTenant(viewer: Viewer | null): string {
  const v = requireViewer(viewer);
  if (v.tenantId === null) throw new AppError('FORBIDDEN', 'this token is not bound to a tenant');
  return v.tenantId;
}
