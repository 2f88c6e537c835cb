// Checks JSON answers against the schemas of the gateway's OpenAPI document with ajv (JSON Schema
// 2020-12, the dialect of OpenAPI 3.1).
import { Ajv2020 } from 'ajv/dist/2020.js';
import formatsPlugin from 'ajv-formats';

type Json = Record<string, any>;

const DOCUMENT_ID = 'https://gateway.invalid/openapi.json';

/**
 * Every object schema with `properties` refuses keys it does not name, so an answer that grew a
 * field the document lacks fails. The error envelope stays open: its `retryAfter` is added by allOf.
 */
function closeObjects(schema: unknown): unknown {
  if (Array.isArray(schema)) return schema.map(closeObjects);
  if (schema === null || typeof schema !== 'object') return schema;
  const out: Json = {};
  for (const [key, value] of Object.entries(schema)) out[key] = closeObjects(value);
  if (out['properties'] && out['additionalProperties'] === undefined) out['additionalProperties'] = false;
  return out;
}

export interface DocumentSchemas {
  /** Errors of `body` against the schema at `pointer` (e.g. `#/components/schemas/Webhook`); [] when valid. */
  errors(pointer: string, body: unknown): string[];
}

export function documentSchemas(document: Json, options: { closed?: boolean } = {}): DocumentSchemas {
  const components = document['components'] as Json;
  const schemas = { ...(components['schemas'] as Json) };
  if (options.closed) {
    for (const [name, schema] of Object.entries(schemas)) if (name !== 'Error') schemas[name] = closeObjects(schema);
  }
  const ajv = new Ajv2020({ strict: false, allErrors: true });
  const addFormats = ((formatsPlugin as unknown as { default?: unknown }).default ?? formatsPlugin) as (a: Ajv2020) => void;
  addFormats(ajv);
  ajv.addSchema({ $id: DOCUMENT_ID, paths: document['paths'], components: { ...components, schemas } });
  return {
    errors(pointer, body) {
      const validate = ajv.compile({ $ref: `${DOCUMENT_ID}${pointer}` });
      if (validate(body)) return [];
      return (validate.errors ?? []).map((e) => `${e.instancePath || '/'} ${e.message ?? ''} ${JSON.stringify(e.params)}`);
    },
  };
}

/** The schema pointer of the JSON answer `status` of `method path` in the document, if it has one. */
export function responsePointer(document: Json, path: string, method: string, status: number): string | undefined {
  const operation = document['paths']?.[path]?.[method.toLowerCase()];
  let response = operation?.responses?.[String(status)];
  let pointer = `#/paths/${path.replace(/~/g, '~0').replace(/\//g, '~1')}/${method.toLowerCase()}/responses/${status}`;
  if (response?.$ref) {
    pointer = response.$ref as string;
    const name = pointer.split('/').pop()!;
    response = document['components']?.responses?.[name];
  }
  if (!response?.content?.['application/json']) return undefined;
  return `${pointer}/content/application~1json/schema`;
}
