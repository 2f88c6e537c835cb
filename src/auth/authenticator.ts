// Bearer authentication: InfraAudit API keys (ia_live_...) and JWTs as Supabase issues them.
// Every failure is the same 401 to the caller; the reason goes only to the log.
import type { MikroORM } from '@mikro-orm/postgresql';
import { createRemoteJWKSet, jwtVerify, type JWTPayload, type JWTVerifyGetKey } from 'jose';
import type { Config } from '../config.js';
import { isApiKeyFormat } from '../crypto/api-key-token.js';
import { AppError } from '../errors.js';
import { findActiveApiKey } from '../modules/api-keys/api-key.service.js';
import type { Viewer } from './viewer.js';

export interface Authenticator {
  /** Resolves a bearer token to a viewer; throws UNAUTHORIZED. */
  authenticate(token: string): Promise<Viewer>;
  /** Extracts the token from an Authorization header value; throws UNAUTHORIZED when malformed. */
  tokenFromHeader(header: string | null | undefined): string | undefined;
}

const unauthorized = (message = 'invalid or expired token') => new AppError('UNAUTHORIZED', message);

// Checking a JWT's signature goes through WebCrypto on every request, and scanners and scripts
// send the same token again and again. A token that passed is remembered by its exact text for a
// short while, never past its own expiry, so a repeat costs a map lookup; anything else (a new,
// changed or expired token) is verified in full.
const VERIFIED_TTL_MS = 60_000;
const VERIFIED_MAX = 5_000;

export function createAuthenticator(config: Config, orm: MikroORM): Authenticator {
  const { secret, jwksUrl, issuer, audience, tenantClaim } = config.jwt;
  const hmacKey = secret ? new TextEncoder().encode(secret) : undefined;
  const jwks: JWTVerifyGetKey | undefined = jwksUrl ? createRemoteJWKSet(new URL(jwksUrl)) : undefined;

  async function verifyJwt(token: string): Promise<JWTPayload> {
    const options = { issuer, audience };
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

  const verified = new Map<string, { payload: JWTPayload; until: number }>();

  async function verifyJwtOnce(token: string): Promise<JWTPayload> {
    const now = Date.now();
    const hit = verified.get(token);
    if (hit && hit.until > now) return hit.payload;
    if (hit) verified.delete(token);
    const payload = await verifyJwt(token);
    const until = Math.min(now + VERIFIED_TTL_MS, typeof payload.exp === 'number' ? payload.exp * 1000 : Infinity);
    if (until > now) {
      if (verified.size >= VERIFIED_MAX) verified.delete(verified.keys().next().value!);
      verified.set(token, { payload, until });
    }
    return payload;
  }

  return {
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
        return { tenantId: key.tenantId, role: 'user', via: 'api_key' };
      }
      const payload = await verifyJwtOnce(token);
      const role = payload['role'] === 'service_role' ? 'service' : 'user';
      const tenant = payload[tenantClaim];
      if (typeof tenant === 'string' && tenant !== '') return { tenantId: tenant, role, via: 'jwt' };
      if (role === 'service') return { tenantId: null, role, via: 'jwt' };
      throw unauthorized(`token has no "${tenantClaim}" claim`);
    },
  };
}
