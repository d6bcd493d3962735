import { Agent, request } from 'undici';

const agent = new Agent({ keepAliveTimeout: 10_000, connections: 64 });

export interface ClientResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  /** A header's value (the first, if repeated). */
  header(name: string): string | undefined;
  json<T = Record<string, unknown>>(): T;
}

/**
 * A test HTTP client with its own cookie jar, like one browser: it keeps the cookies it is
 * given and sends them back. Redirects are followed only when asked, on the same base URL.
 */
export class Client {
  readonly cookies = new Map<string, string>();

  constructor(readonly base: string) {}

  async send(
    method: string,
    path: string,
    options: { json?: unknown; headers?: Record<string, string>; follow?: boolean } = {},
  ): Promise<ClientResponse> {
    const headers: Record<string, string> = { ...options.headers };
    if (this.cookies.size > 0)
      headers.cookie = [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; ');
    let body: string | undefined;
    if (options.json !== undefined) {
      body = JSON.stringify(options.json);
      headers['content-type'] = 'application/json';
    }
    const response = await request(`${this.base}${path}`, {
      method: method as 'GET',
      headers,
      body,
      dispatcher: agent,
    });
    const text = await response.body.text();
    this.keepCookies(response.headers['set-cookie']);
    const result: ClientResponse = {
      status: response.statusCode,
      headers: response.headers,
      text,
      header(name) {
        const value = response.headers[name];
        return Array.isArray(value) ? value[0] : value;
      },
      json: <T>() => JSON.parse(text) as T,
    };
    const location = result.header('location');
    if (options.follow && location && result.status >= 300 && result.status < 400) {
      return this.send('GET', location, { headers: options.headers });
    }
    return result;
  }

  get(path: string, options?: { headers?: Record<string, string> }): Promise<ClientResponse> {
    return this.send('GET', path, options);
  }

  private keepCookies(setCookie: string | string[] | undefined): void {
    for (const line of setCookie === undefined ? [] : [setCookie].flat()) {
      const pair = line.split(';')[0] ?? '';
      const eq = pair.indexOf('=');
      if (eq > 0) this.cookies.set(pair.slice(0, eq).trim(), pair.slice(eq + 1).trim());
    }
  }
}
