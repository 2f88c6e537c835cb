import { SignJWT } from 'jose';
import { TEST_JWT_SECRET } from './gateway.js';

/** An HS256 user token for `tenant`, as Supabase would issue it. */
export async function userToken(tenant: string, claims: Record<string, unknown> = {}, secret = TEST_JWT_SECRET): Promise<string> {
  return new SignJWT({ role: 'authenticated', ...claims })
    .setProtectedHeader({ alg: 'HS256' })
    .setSubject(tenant)
    .setIssuedAt()
    .setExpirationTime('1h')
    .sign(new TextEncoder().encode(secret));
}

/** A service token (role service_role), which may publish for any tenant. */
export async function serviceToken(secret = TEST_JWT_SECRET): Promise<string> {
  return new SignJWT({ role: 'service_role' })
    .setProtectedHeader({ alg: 'HS256' })
    .setIssuedAt()
    .setExpirationTime('1h')
    .sign(new TextEncoder().encode(secret));
}
