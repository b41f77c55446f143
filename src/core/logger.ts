import { pino, type DestinationStream, type Logger } from 'pino';
import { currentScope } from './context.js';

/**
 * One pino logger per process. The mixin adds the correlation id (and tenant)
 * of the request or job being served to every line, wherever it is logged from.
 */
export function createLogger(level: string, name = 'storekeep', destination?: DestinationStream): Logger {
  const options: pino.LoggerOptions = {
    name,
    level,
    mixin(_merge, _level, logger) {
      const scope = currentScope();
      if (!scope) return {};
      // Request loggers already carry correlation_id as a binding.
      const bound = (logger as unknown as Logger | undefined)?.bindings?.() ?? {};
      return {
        ...('correlation_id' in bound ? {} : { correlation_id: scope.correlationId }),
        ...(scope.tenantId ? { tenant_id: scope.tenantId } : {}),
      };
    },
    redact: { paths: ['req.headers.authorization', 'headers.authorization'], censor: '[redacted]' },
  };
  return destination ? pino(options, destination) : pino(options);
}

/**
 * An error the service expects and answers (the database or Redis gone, a
 * connection dropped): its kind, code and message, without the stack. In an
 * outage every request logs one, and a stack trace each (the driver's, the
 * same every time) buried the one line an operator needs. Logged under
 * `error`, not `err`: pino's error serializer would add an empty stack.
 */
export function briefly(error: unknown): unknown {
  if (!(error instanceof Error)) return error;
  const code = (error as { code?: unknown }).code;
  // An AggregateError's own message may be empty (Node's, when every address
  // of a host refused the connection): what failed is in its errors.
  const errors = error instanceof AggregateError && Array.isArray(error.errors) ? { errors: error.errors.map(briefly) } : {};
  return { type: error.name, message: error.message, ...(code === undefined ? {} : { code }), ...errors };
}

export type { Logger };
