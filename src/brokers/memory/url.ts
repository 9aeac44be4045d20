/** Reads a `memory:` URL (`memory:` or `memory:name`); the name is only a label. */
import { BotqueueError, ErrorCodes } from '../../core/errors.js';

export function parseMemoryUrl(url: string): { name: string } {
  if (typeof url !== 'string' || !url.toLowerCase().startsWith('memory:')) {
    throw new BotqueueError(ErrorCodes.UNSUPPORTED_URL, `the memory backend opens "memory:" URLs (memory: or memory:name), got ${JSON.stringify(url)}`, {
      details: { url },
    });
  }
  const rest = url.slice('memory:'.length);
  const query = rest.indexOf('?');
  const name = query === -1 ? rest : rest.slice(0, query);
  if (query !== -1) {
    const [parameter] = new URLSearchParams(rest.slice(query + 1)).keys();
    if (parameter !== undefined) {
      throw new BotqueueError(ErrorCodes.INVALID_OPTION, `memory URL: unknown parameter "${parameter}"; the memory backend takes no parameters`, {
        details: { option: parameter },
      });
    }
  }
  return { name };
}
