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

export type { Logger };
