// A small JSON client over fetch for tests: it keeps the status, headers and raw text as well.
export interface JsonResponse<T = any> {
  status: number;
  headers: Headers;
  text: string;
  body: T;
}

export interface RequestOptions {
  token?: string;
  body?: unknown;
  /** Sent as is (for malformed JSON and wrong content types). */
  rawBody?: string | Buffer;
  headers?: Record<string, string>;
}

export function client(baseUrl: string, defaultToken?: string) {
  async function request<T = any>(method: string, path: string, options: RequestOptions = {}): Promise<JsonResponse<T>> {
    const headers: Record<string, string> = { ...options.headers };
    const token = options.token ?? defaultToken;
    if (token) headers['authorization'] = `Bearer ${token}`;
    let body: string | Buffer | undefined;
    if (options.rawBody !== undefined) body = options.rawBody;
    else if (options.body !== undefined) {
      body = JSON.stringify(options.body);
      headers['content-type'] ??= 'application/json';
    }
    const res = await fetch(`${baseUrl}${path}`, { method, headers, body: body as BodyInit | undefined });
    const text = await res.text();
    let parsed: unknown;
    try {
      parsed = text === '' ? undefined : JSON.parse(text);
    } catch {
      parsed = undefined;
    }
    return { status: res.status, headers: res.headers, text, body: parsed as T };
  }
  return {
    request,
    get: <T = any>(path: string, o?: RequestOptions) => request<T>('GET', path, o),
    post: <T = any>(path: string, body?: unknown, o?: RequestOptions) => request<T>('POST', path, { ...o, body }),
    put: <T = any>(path: string, body?: unknown, o?: RequestOptions) => request<T>('PUT', path, { ...o, body }),
    delete: <T = any>(path: string, o?: RequestOptions) => request<T>('DELETE', path, o),
    graphql: async <T = any>(query: string, variables?: Record<string, unknown>, o?: RequestOptions) =>
      request<{ data?: T; errors?: { message: string; extensions?: Record<string, unknown> }[] }>('POST', '/graphql', {
        ...o,
        body: { query, variables },
      }),
  };
}

export type TestClient = ReturnType<typeof client>;
