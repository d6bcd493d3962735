/**
 * `--import` this to run as an app without `@opentelemetry/api` installed: resolving it fails
 * the way a missing package does (ERR_MODULE_NOT_FOUND).
 */
import { register } from 'node:module';

const hook = `export async function resolve(specifier, context, next) {
  if (specifier === '@opentelemetry/api') {
    const error = new Error("Cannot find package '@opentelemetry/api' (hidden by the benchmark)");
    error.code = 'ERR_MODULE_NOT_FOUND';
    throw error;
  }
  return next(specifier, context);
}`;
register(`data:text/javascript,${encodeURIComponent(hook)}`);
