import type { App, AppDeps } from './app.js';
import { tenancyRoutes } from '../tenancy/routes.js';
import { operationRoutes } from '../operations/routes.js';
import { inventoryRoutes } from '../inventory/routes.js';
import { moneyRoutes } from '../money/routes.js';
import { fieldRoutes } from '../field/routes.js';
import { transferRoutes } from '../transfers/routes.js';
import { salesRoutes } from '../sales/routes.js';
import { integrityRoutes } from '../integrity/routes.js';
import { settlementRoutes } from '../settlements/routes.js';
import { pieceRoutes } from '../pieces/routes.js';
import { orderRoutes } from '../orders/routes.js';
import { analyticsRoutes } from '../analytics/routes.js';

/** Every module's routes, registered in this order. */
export type RouteModule = (app: App, deps: AppDeps) => Promise<void>;

export const routeModules: RouteModule[] = [tenancyRoutes, operationRoutes, inventoryRoutes, moneyRoutes, fieldRoutes, transferRoutes, salesRoutes, integrityRoutes, settlementRoutes, pieceRoutes, orderRoutes, analyticsRoutes];
