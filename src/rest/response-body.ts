// The JSON bodies /api/v1 answers with, as zod schemas: each module defines its shapes beside its
// rows and registers those the OpenAPI document names, and the document's components are
// z.toJSONSchema of this registry, as request bodies are z.toJSONSchema of the rows' schemas.
import { z } from 'zod';
import type { IdPrefix } from '../ids.js';

/** The bodies named in the OpenAPI document's components; a row's `doc.response` is one of them. */
export const responseBodies = z.registry<{ id: string }>();

/** An id as src/ids.ts makes them: the prefix, `_`, then 20 characters of base64url. */
export const prefixedId = (prefix: IdPrefix) => z.string().regex(new RegExp(`^${prefix}_[A-Za-z0-9_-]{20}$`));

/** An instant as the REST answers write it: ISO 8601 in UTC (`2024-01-15T14:30:00.000Z`). */
export const dateTime = () => z.iso.datetime();
