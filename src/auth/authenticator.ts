// Bearer authentication: InfraAudit API keys (ia_live_...) and JWTs as Supabase issues them.
// Every failure is the same 401 to the caller; the reason goes only to the log.
import type { MikroORM } from '@mikro-orm/postgresql';
import { createRemoteJWKSet, jwtVerify, type JWTPayload, type JWTVerifyGetKey } from 'jose';
import { LRUCache } from 'lru-cache';
import type { Config } from '../config.js';
import { isApiKeyFormat } from '../crypto/api-key-token.js';
import { AppError } from '../errors.js';
import { findActiveApiKey } from '../modules/api-keys/api-key.service.js';
import { isValidTenantId, TENANT_ID_RULE } from './tenant-id.js';
import type { Viewer } from './viewer.js';

export interface Authenticator {
  /** Resolves a bearer token to a viewer; throws UNAUTHORIZED. */
  authenticate(token: string): Promise<Viewer>;
  /** Extracts the token from an Authorization header value; throws UNAUTHORIZED when malformed. */
  tokenFromHeader(header: string | null | undefined): string | undefined;
  /** The cache of verified JWTs, for the metrics. */
  cache: { bytes(): number; budgetBytes: number };
}

const unauthorized = (message = 'invalid or expired token') => new AppError('UNAUTHORIZED', message);

// Checking a JWT's signature goes through WebCrypto on every request, and scanners and scripts
// send the same token again and again. A token that passed is remembered by its exact text for a
// short while, never past its own expiry, so a repeat costs a lookup; anything else (a new,
// changed or expired token) is verified in full. The tokens are the callers' text, so the cache is
// bounded in bytes as well as in entries.
const VERIFIED_TTL_MS = 60_000;
const VERIFIED_MAX = 5_000;
const VERIFIED_MAX_BYTES = 16 * 1024 * 1024;

export function createAuthenticator(config: Config, orm: MikroORM): Authenticator {
  const { secret, jwksUrl, issuer, audience, tenantClaim, requireExp } = config.jwt;
  const hmacKey = secret ? new TextEncoder().encode(secret) : undefined;
  const jwks: JWTVerifyGetKey | undefined = jwksUrl ? createRemoteJWKSet(new URL(jwksUrl)) : undefined;

  async function verifyJwt(token: string): Promise<JWTPayload> {
    const options = { issuer, audience, requiredClaims: requireExp ? ['exp'] : [] };
    try {
      if (hmacKey) return (await jwtVerify(token, hmacKey, { ...options, algorithms: ['HS256'] })).payload;
      if (jwks) {
        return (
          await jwtVerify(token, jwks, {
            ...options,
            algorithms: ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA'],
          })
        ).payload;
      }
    } catch {
      throw unauthorized();
    }
    throw unauthorized();
  }

  const verified = new LRUCache<string, JWTPayload>({
    max: VERIFIED_MAX,
    maxSize: VERIFIED_MAX_BYTES,
    sizeCalculation: (payload, token) => token.length + JSON.stringify(payload).length,
    ttl: VERIFIED_TTL_MS,
  });

  async function verifyJwtOnce(token: string): Promise<JWTPayload> {
    const hit = verified.get(token);
    if (hit) return hit;
    const payload = await verifyJwt(token);
    const ttl = Math.min(VERIFIED_TTL_MS, typeof payload.exp === 'number' ? payload.exp * 1000 - Date.now() : Infinity);
    if (ttl >= 1) verified.set(token, payload, { ttl: Math.floor(ttl) });
    return payload;
  }

  return {
    cache: { bytes: () => verified.calculatedSize, budgetBytes: VERIFIED_MAX_BYTES },
    tokenFromHeader(header) {
      if (header === null || header === undefined || header === '') return undefined;
      const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
      if (!match) throw unauthorized('malformed Authorization header (expected "Bearer <token>")');
      return match[1];
    },

    async authenticate(token) {
      if (token.startsWith('ia_live_')) {
        // A malformed key cannot match any stored hash: refused without a database round trip.
        if (!isApiKeyFormat(token)) throw unauthorized('invalid or revoked API key');
        const key = await findActiveApiKey(orm.em.fork(), token);
        if (!key) throw unauthorized('invalid or revoked API key');
        return { tenantId: key.tenantId, role: 'user', via: 'api_key', apiKeyId: key.id };
      }
      const payload = await verifyJwtOnce(token);
      const role = payload['role'] === 'service_role' ? 'service' : 'user';
      const expiresAt = typeof payload.exp === 'number' ? { expiresAt: new Date(payload.exp * 1000) } : {};
      const tenant = payload[tenantClaim];
      // Service tokens, as Supabase issues them, may carry no tenant at all.
      if (tenant === undefined && role === 'service') return { tenantId: null, role, via: 'jwt', ...expiresAt };
      if (tenant === undefined) throw unauthorized(`token has no "${tenantClaim}" claim`);
      if (!isValidTenantId(tenant)) throw unauthorized(`the "${tenantClaim}" claim must be ${TENANT_ID_RULE}`);
      return { tenantId: tenant, role, via: 'jwt', ...expiresAt };
    },
  };
}
