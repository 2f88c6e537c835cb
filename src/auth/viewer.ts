import { AppError } from '../errors.js';

export interface Viewer {
  /** The tenant this caller acts for; null for a service token without a tenant claim. */
  tenantId: string | null;
  /** `service` for JWTs whose role is service_role: they may publish for any tenant. */
  role: 'user' | 'service';
  via: 'jwt' | 'api_key';
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
