// The interactive API reference at /docs: Swagger UI, served from the swagger-ui-dist package in
// node_modules, reading GET /api/v1/openapi.json. Only the files named below are ever read, so no
// request path reaches the file system, and the page loads nothing from another origin.
import { readFile } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import path from 'node:path';
import { sendError } from './http-io.js';
import { OPENAPI_PATH } from './openapi.js';

/**
 * Scripts and styles only from this origin; images also as data: URIs (Swagger UI's icons are
 * inline SVG in its stylesheet); requests ("Try it out") only to this origin.
 */
export const DOCS_CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "font-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

const PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>InfraAudit webhook gateway: API reference</title>
<link rel="stylesheet" href="/docs/swagger-ui.css">
<link rel="stylesheet" href="/docs/index.css">
<link rel="icon" type="image/png" href="/docs/favicon-32x32.png" sizes="32x32">
<link rel="icon" type="image/png" href="/docs/favicon-16x16.png" sizes="16x16">
</head>
<body>
<div id="swagger-ui"></div>
<script src="/docs/swagger-ui-bundle.js"></script>
<script src="/docs/init.js"></script>
</body>
</html>
`;

// Inline scripts are refused by the CSP, so the start-up code is a file of its own. validatorUrl
// null keeps Swagger UI from asking an outside validator about the document.
const INIT = `window.addEventListener('load', function () {
  window.ui = SwaggerUIBundle({
    url: ${JSON.stringify(OPENAPI_PATH)},
    dom_id: '#swagger-ui',
    deepLinking: true,
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis],
    layout: 'BaseLayout',
  });
});
`;

const JS = 'text/javascript; charset=utf-8';
const CSS = 'text/css; charset=utf-8';
const PNG = 'image/png';

/** Served files: the request path under /docs/ to the file in swagger-ui-dist and its type. */
const PACKAGE_FILES: Record<string, { file: string; type: string }> = {
  'swagger-ui.css': { file: 'swagger-ui.css', type: CSS },
  'index.css': { file: 'index.css', type: CSS },
  'swagger-ui-bundle.js': { file: 'swagger-ui-bundle.js', type: JS },
  'favicon-32x32.png': { file: 'favicon-32x32.png', type: PNG },
  'favicon-16x16.png': { file: 'favicon-16x16.png', type: PNG },
};

const OWN_FILES: Record<string, { body: string; type: string }> = {
  '': { body: PAGE, type: 'text/html; charset=utf-8' },
  'init.js': { body: INIT, type: JS },
};

/** Every path /docs answers, for tests and for the lead's routing. */
export const DOCS_PATHS = ['/docs', ...Object.keys(OWN_FILES).map((name) => `/docs/${name}`), ...Object.keys(PACKAGE_FILES).map((name) => `/docs/${name}`)];

let packageDir: string | undefined;
const fileCache = new Map<string, Promise<Buffer>>();

function readPackageFile(file: string): Promise<Buffer> {
  packageDir ??= path.dirname(createRequire(import.meta.url).resolve('swagger-ui-dist/package.json'));
  let pending = fileCache.get(file);
  if (!pending) {
    pending = readFile(path.join(packageDir, file));
    // A failed read is not remembered, so a later request tries again.
    pending.catch(() => fileCache.delete(file));
    fileCache.set(file, pending);
  }
  return pending;
}

function send(req: IncomingMessage, res: ServerResponse, body: Buffer | string, type: string, cacheControl: string): void {
  res.writeHead(200, {
    'content-type': type,
    'content-length': Buffer.byteLength(body),
    'cache-control': cacheControl,
    'content-security-policy': DOCS_CSP,
    'x-content-type-options': 'nosniff',
  });
  res.end(req.method === 'HEAD' ? undefined : body);
}

/** Serves /docs (the page) and /docs/<asset>; anything else under /docs/ is 404. */
export async function handleDocs(req: IncomingMessage, res: ServerResponse, pathname: string): Promise<void> {
  const name = pathname === '/docs' ? '' : pathname.startsWith('/docs/') ? pathname.slice('/docs/'.length) : undefined;
  // Own keys only: `constructor` or `__proto__` must not find something on Object.prototype.
  const own = name !== undefined && Object.hasOwn(OWN_FILES, name) ? OWN_FILES[name] : undefined;
  const packaged = name !== undefined && Object.hasOwn(PACKAGE_FILES, name) ? PACKAGE_FILES[name] : undefined;
  if (!own && !packaged) {
    sendError(res, 404, 'NOT_FOUND', `no route for ${pathname}`);
    return;
  }
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    sendError(res, 405, 'METHOD_NOT_ALLOWED', `${req.method} is not allowed here`, undefined, { allow: 'GET, HEAD' });
    return;
  }
  req.resume();
  if (own) {
    send(req, res, own.body, own.type, 'no-cache');
    return;
  }
  if (packaged) send(req, res, await readPackageFile(packaged.file), packaged.type, 'public, max-age=3600');
}
