/**
 * The one redactor for everything botqueue prints, logs or puts in an error: passwords of URLs
 * (the broker's, and the store's nested in its query) and secrets the caller knows (a password
 * taken from a URL, an admin token). Every output path calls this module; no other code masks.
 *
 * A URL may appear raw (`amqp://u:pw@h`), percent-encoded once as a query parameter of another
 * URL (`?store=postgres%3A%2F%2Fu%3Apw%40h%2Fdb`) or twice (that URL itself in a query), so the
 * patterns below are built for each of those levels.
 *
 * @example
 * redactUrl('amqp://bot:s3cret@rabbit:5672?store=postgres%3A%2F%2Fu%3Apw%40db%2Fapp');
 * // → 'amqp://bot:***@rabbit:5672?store=postgres%3A%2F%2Fu%3A***%40db%2Fapp'
 * redactSecrets(`login failed for ${token}`, token); // → 'login failed for ***'
 */

/** What a password (or a user-only userinfo, which may be a token) is replaced with. */
export const REDACTED = '***';

/**
 * Known secrets shorter than this are not masked as plain strings: replacing every "ab" of a
 * text would make it unreadable. They are still masked where they stand as a URL's password.
 */
export const MIN_SECRET_LENGTH = 4;

/** The hex of the characters that delimit a URL's userinfo, for the encoded levels. */
const HEX = { colon: '3A', slash: '2F', at: '40', question: '3F', hash: '23' } as const;

/** Nesting levels matched: raw, encoded once (a URL in a query), encoded twice (one more level). */
const LEVELS = 3;

/**
 * The patterns run on every log line, so they must stay linear: a scheme starts only where no
 * scheme character precedes it, and each part has a bound (a longer user or password than this
 * is still masked when it is a known secret). Without them a 100 kB line of letters took 30 s.
 */
const SCHEME = '(?<![a-z0-9+.-])[a-z][a-z0-9+.-]{0,31}';
const MAX_USER = 256;
const MAX_PASSWORD = 1024;

/**
 * `scheme://user:password@` (or `scheme://user@`) at one level of percent-encoding. Groups: 1 the
 * scheme and `://`, 2 the user, 3 `:` and 4 the password (both absent for a user-only userinfo),
 * 5 the `@`. The password runs to the last `@` before a query, a fragment or the end of the URL,
 * even across a `/`: a password written unencoded (`u:p@ss/w@host`, or a store URL whose escapes
 * were decoded by the query it sat in) is masked whole. The price: a URL with a port and an `@`
 * in its path (`http://h:80/@x`) loses its port and path up to the `@`.
 */
function userinfoPattern(level: number): RegExp {
  // Quotes, angle brackets and backticks end a URL in free text (JSON strings, log lines).
  const ends = `\\s"'<>\`%`;
  if (level === 0) {
    const user = `(?:[^${ends}:/?#@]|%[0-9a-f]{2}){0,${MAX_USER}}`;
    const password = `(?:[^${ends}?#]|%[0-9a-f]{2}){0,${MAX_PASSWORD}}`;
    return new RegExp(`(${SCHEME}://)(${user})(?:(:)(${password}))?(@)`, 'gi');
  }
  // Encoded once a separator is `%3A`; encoded twice `%253A`: `%` followed by `25` per extra level.
  const escape = (hex: string): string => `%${'25'.repeat(level - 1)}${hex}`;
  const after = (hex: string): string => `${'25'.repeat(level - 1)}${hex}`;
  // Raw separators and `&`/`=` cannot be part of an encoded value: they end it.
  const raw = `[^${ends}&=:/?#@]`;
  const user = `(?:${raw}|%(?!${[HEX.colon, HEX.slash, HEX.at, HEX.question, HEX.hash].map(after).join('|')})[0-9a-f]{2}){0,${MAX_USER}}`;
  const password = `(?:${raw}|%(?!${[HEX.question, HEX.hash].map(after).join('|')})[0-9a-f]{2}){0,${MAX_PASSWORD}}`;
  const slash = escape(HEX.slash);
  return new RegExp(`(${SCHEME}${escape(HEX.colon)}${slash}${slash})(${user})(?:(${escape(HEX.colon)})(${password}))?(${escape(HEX.at)})`, 'gi');
}

const PATTERNS: readonly RegExp[] = Array.from({ length: LEVELS }, (_, level) => userinfoPattern(level));

/**
 * Masks the password of every URL in `text` (`u:pw@` → `u:***@`); with `users`, a user without
 * a password too (`token@` → `***@`): in a URL shown on its own it may be a token, while in
 * free text it is most often a name, and hints like `postgres://user@host` must stay readable.
 */
function maskUserinfo(text: string, users: boolean): string {
  let out = text;
  for (const pattern of PATTERNS) {
    out = out.replace(pattern, (match: string, scheme: string, user: string, colon: string | undefined, _password: string | undefined, at: string) => {
      if (colon !== undefined) return `${scheme}${user}${colon}${REDACTED}${at}`;
      return users ? `${scheme}${REDACTED}${at}` : match;
    });
  }
  return out;
}

/**
 * The URL with its password masked (or its user, when it has no password: that may be a
 * token), and the passwords of URLs nested in its query too (a RabbitMQ URL's `store=`), raw or
 * percent-encoded. Anything that is not a URL comes back as is.
 */
export function redactUrl(url: string): string {
  return maskUserinfo(url, true);
}

/**
 * `text` with the password of every URL in it masked (raw or percent-encoded, however deeply
 * nested), and every occurrence of each known secret masked too, as written and in its
 * percent-encoded and JSON-escaped forms. Falsy or too short secrets are skipped.
 */
export function redactSecrets(text: string, ...knownSecrets: readonly (string | undefined | null)[]): string {
  let out = text;
  // Known secrets first: masking a URL's userinfo may cut a secret the URL holds in a form the
  // patterns do not read whole, and what is left of it would no longer match.
  for (const form of secretForms(knownSecrets)) out = out.split(form).join(REDACTED);
  return maskUserinfo(out, false);
}

/** Every written form of the secrets, longest first (so a secret inside another goes last). */
function secretForms(secrets: readonly (string | undefined | null)[]): string[] {
  const forms = new Set<string>();
  for (const secret of secrets) {
    if (typeof secret !== 'string' || secret.length < MIN_SECRET_LENGTH) continue;
    const once = encodeURIComponent(secret);
    // URLSearchParams encodes more than encodeURIComponent (`!'()~`, and a space as `+`).
    const query = new URLSearchParams({ s: secret }).toString().slice(2);
    for (const form of [secret, once, encodeURIComponent(once), query, encodeURIComponent(query), JSON.stringify(secret).slice(1, -1)]) forms.add(form);
  }
  return [...forms].sort((a, b) => b.length - a.length);
}

/**
 * The passwords of the URLs given and of the URLs nested in their queries, as written and
 * decoded, to pass to `redactSecrets` as known secrets: a library's message may quote a
 * password without its URL around it. A user without a password is left out: it is most often
 * a name (`postgres://postgres@db`) that masking everywhere would garble.
 */
export function passwordsOf(...urls: readonly (string | undefined | null)[]): string[] {
  const found = new Set<string>();
  for (const url of urls) {
    if (typeof url !== 'string') continue;
    PATTERNS.forEach((pattern, level) => {
      for (const match of url.matchAll(pattern)) {
        let secret: string | undefined = match[4];
        // Decode once per level of nesting, keeping every stage: each may be what gets printed.
        for (let i = 0; secret !== undefined && secret !== '' && i <= level; i++) {
          found.add(secret);
          secret = safeDecode(secret);
        }
        if (secret !== undefined && secret !== '') found.add(secret);
      }
    });
  }
  return [...found];
}

function safeDecode(text: string): string | undefined {
  try {
    return decodeURIComponent(text);
  } catch {
    return undefined;
  }
}
