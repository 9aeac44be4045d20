import { pathToFileURL } from 'node:url';

/**
 * Imports a user's module (a config file or a handlers module) by absolute path. TypeScript
 * files load through tsx: when the process already registered it (`bin/botqueue.js`, or
 * `node --import tsx`) a plain `import()` works; otherwise tsx's `tsImport` is used, so a
 * process started with plain `node` (a worker process of a built service) loads them too.
 */
export async function importModule(path: string): Promise<Record<string, unknown>> {
  const url = pathToFileURL(path).href;
  try {
    return (await import(url)) as Record<string, unknown>;
  } catch (error) {
    if ((error as { code?: unknown } | null)?.code !== 'ERR_UNKNOWN_FILE_EXTENSION') throw error;
    const { tsImport } = await import('tsx/esm/api');
    return (await tsImport(url, import.meta.url)) as Record<string, unknown>;
  }
}

/**
 * A module's default export. A TypeScript file outside a `"type": "module"` package is loaded
 * as CommonJS, and its namespace's `default` is then the whole `module.exports` (which holds
 * the real `default`): unwrap that.
 */
export function defaultExport(namespace: Record<string, unknown>): unknown {
  const value = namespace.default;
  if (isInteropObject(namespace, value)) return value.default;
  return value;
}

/** A named export, looked up through the same CommonJS interop as `defaultExport`. */
export function namedExport(namespace: Record<string, unknown>, name: string): unknown {
  if (name === 'default') return defaultExport(namespace);
  if (Object.hasOwn(namespace, name)) return namespace[name];
  const value = namespace.default;
  if (isInteropObject(namespace, value)) return value[name];
  return undefined;
}

/** The names a module exports (for error messages). */
export function exportNames(namespace: Record<string, unknown>): string[] {
  const names = new Set(Object.keys(namespace));
  const value = namespace.default;
  if (isInteropObject(namespace, value)) {
    names.delete('default');
    for (const name of Object.keys(value)) names.add(name);
  }
  return [...names].sort();
}

function isInteropObject(namespace: Record<string, unknown>, value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null || !Object.hasOwn(value, 'default')) return false;
  // module.exports mirrored as the namespace: every key of it is also a key of the namespace.
  return Object.keys(value).every((key) => Object.hasOwn(namespace, key)) || (value as { __esModule?: unknown }).__esModule === true;
}
