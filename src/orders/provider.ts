import type { Config } from '../config.js';
import { FulfilmentProvider } from './fulfilmentProvider.js';

export function providerFrom(config: Config): FulfilmentProvider {
  return new FulfilmentProvider({ baseUrl: config.fulfilmentUrl, apiKey: config.fulfilmentApiKey, timeoutMs: config.fulfilmentTimeoutMs });
}
