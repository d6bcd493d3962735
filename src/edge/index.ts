/**
 * `regional/edge`: a small router standing in for a platform's proxy in local runs and tests
 * — one entry port per region, honouring `fly-replay`. `regional dev --app` runs one.
 *
 * @example
 * import { LocalEdge } from 'regional/edge';
 * const edge = await LocalEdge.start({ apps: { iad: { port: 3001 }, syd: { port: 3002 } }, links: cluster });
 * edge.url('syd'); // http://127.0.0.1:…
 */

export type { EdgeApp, EdgeLinks, LocalEdgeOptions, LocalEdgeStats } from './edge.js';
export { LocalEdge, parseFlyReplay } from './edge.js';
