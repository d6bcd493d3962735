/** Where the token cookie goes and how it is marked. */
export interface TokenCookieOptions {
  /** Cookie name. Default `regional_token`. */
  name?: string;
  /** `Path` attribute. Default `/`. */
  path?: string;
  /** `Domain` attribute. Default: none (this host only). */
  domain?: string;
  /**
   * `Secure` attribute: `auto` (the default) sets it when the request came over https
   * (directly, or as `x-forwarded-proto: https` from a proxy that terminates TLS).
   */
  secure?: boolean | 'auto';
}

const COOKIE_NAME = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/** Validated cookie settings. */
export interface CookieSettings {
  name: string;
  path: string;
  domain: string | undefined;
  secure: boolean | 'auto';
}

export function cookieSettings(options: TokenCookieOptions = {}): CookieSettings {
  const name = options.name ?? 'regional_token';
  if (!COOKIE_NAME.test(name)) {
    throw new TypeError(
      `cookie.name: "${name}" is not a valid cookie name (letters, digits and !#$%&'*+-.^_\`|~)`,
    );
  }
  return {
    name,
    path: options.path ?? '/',
    domain: options.domain,
    secure: options.secure ?? 'auto',
  };
}

/** The value of cookie `name` in a `Cookie` header, without parsing the others. */
export function readCookie(header: string | undefined, name: string): string | undefined {
  if (!header) return undefined;
  let from = 0;
  for (;;) {
    const at = header.indexOf(name, from);
    if (at < 0) return undefined;
    const before = at === 0 ? ';' : header[at - 1];
    const after = header[at + name.length];
    // Only a whole name at the start of a pair: not `xregional_token=` or a value.
    if ((before === ';' || before === ' ') && after === '=') {
      const start = at + name.length + 1;
      const end = header.indexOf(';', start);
      return header.slice(start, end < 0 ? undefined : end).trim();
    }
    from = at + name.length;
  }
}

/** A `Set-Cookie` value: HttpOnly, SameSite=Lax, Secure on https. */
export function tokenCookie(
  settings: CookieSettings,
  token: string,
  maxAgeSeconds: number,
  https: boolean,
): string {
  const secure = settings.secure === 'auto' ? https : settings.secure;
  return [
    `${settings.name}=${token}`,
    `Path=${settings.path}`,
    ...(settings.domain ? [`Domain=${settings.domain}`] : []),
    `Max-Age=${maxAgeSeconds}`,
    'HttpOnly',
    'SameSite=Lax',
    ...(secure ? ['Secure'] : []),
  ].join('; ');
}
