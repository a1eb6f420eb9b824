// The hooks pages give tests and the console (window.livegate).

/**
 * readOnly makes an object of hooks: each getter becomes a read-only
 * (enumerable) property, each method stays as it is.
 */
export function readOnly(getters, methods = {}) {
  const o = { ...methods };
  for (const [k, get] of Object.entries(getters)) Object.defineProperty(o, k, { get, enumerable: true });
  return o;
}
