// node-postgres internals Regional relies on (pg 8.x): the value serialiser used for Bind.
declare module 'pg/lib/utils.js' {
  const utils: { prepareValue(value: unknown): unknown };
  export default utils;
}
