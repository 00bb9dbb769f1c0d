/**
 * Objects keyed by strings that come from outside (user ids, countries, experiment and arm keys,
 * metric, model and feature names). A plain `{}` inherits from Object.prototype: `obj['constructor']`
 * finds Object, `obj['__proto__'] = x` replaces the prototype, and `(obj['__proto__'] ??= {})[k] = v`
 * writes into Object.prototype itself. An object without a prototype has none of that: every key is
 * an ordinary own property, and a missing key reads as undefined. State keeps such keys in a `Map`;
 * these are for the places that need a JSON-shaped object (responses, snapshots).
 */

/** An empty object without a prototype, optionally filled from entries. */
export function dict<V>(entries?: Iterable<readonly [string, V]>): Record<string, V> {
  const out = Object.create(null) as Record<string, V>;
  if (entries) for (const [key, value] of entries) out[key] = value;
  return out;
}

/** A prototype-free shallow copy of an object's own enumerable properties (a parsed JSON object, say). */
export function toDict<V>(obj: Readonly<Record<string, V>> | null | undefined): Record<string, V> {
  return dict(obj ? Object.entries(obj) : []);
}

/** Whether the key is the object's own property (never an inherited one such as `constructor`). */
export function hasOwn(obj: object | null | undefined, key: string): boolean {
  return obj != null && Object.prototype.hasOwnProperty.call(obj, key);
}

/** The object's own value for the key, or undefined: what `obj[key]` should mean for an outside key. */
export function own<V>(obj: Readonly<Record<string, V>> | null | undefined, key: string): V | undefined {
  return hasOwn(obj, key) ? obj![key] : undefined;
}
