/**
 * Roles and what they may do, as one table. Routes name the permission they
 * need; the edge checks it before any data is read. A test walks every
 * endpoint × every role against this table (src/http/roleMatrix.int.spec.ts),
 * and README's roles table is checked against it (permissions.unit.spec.ts).
 */
export const ROLES = ['owner', 'admin', 'manager', 'cashier', 'field_agent', 'auditor'] as const;
export type Role = (typeof ROLES)[number];

export const PERMISSIONS = [
  'tokens.create',
  'tenant.settings',
  'stores.write',
  'stores.read',
  'skus.write',
  'skus.read',
  'stock.read',
  'stock.receive',
  'stock.adjust',
  'sales.create',
  'sales.bulk',
  'sales.void',
  // A partial return (POST /v1/sales/{id}/returns): held by the roles that
  // may void — it takes money back out of the drawer as a void does — but
  // its own permission, so a shop can let a role take returns and not void.
  'sales.return',
  'sales.read',
  // A store's sales list (GET /v1/stores/{store_id}/sales): what the shop
  // takes, sale by sale — for those who run and audit it (every *.read role),
  // not the till's cashier or the field agent, who read a sale by its id.
  'sales.history.read',
  'sales.sync',
  // A store's daily figures (revenue, sales and voids per day): what the shop
  // takes is for those who run it and those who audit it — not the till's
  // cashier nor the field agent, who only need their own sales and rounds.
  'analytics.read',
  'parties.write',
  'parties.read',
  'payments.create',
  'ledger.read',
  'transfers.request',
  'transfers.approve',
  'transfers.receive',
  'transfers.read',
  'settlements.submit',
  'settlements.approve',
  'settlements.read',
  // What a count should have found: a settlement's expected cash, variance
  // and the day's drawer movements it is worked out from. A count is blind
  // for the roles without it (the cashier): who counts the drawer does not
  // learn what it should hold, and cannot make the count match it.
  'settlements.expected.read',
  'field.manage',
  'visits.complete',
  'field.read',
  'pieces.write',
  'pieces.read',
  'orders.create',
  'orders.manage',
  'orders.read',
  'operations.read',
  'operations.revert',
  'integrity.read',
  'review.read',
  'review.resolve',
] as const;
export type Permission = (typeof PERMISSIONS)[number];

const READ_ALL: Permission[] = PERMISSIONS.filter((permission) => permission.endsWith('.read'));

const ROLE_PERMISSIONS: Record<Role, ReadonlySet<Permission>> = {
  owner: new Set(PERMISSIONS),
  admin: new Set(PERMISSIONS),
  manager: new Set<Permission>([
    ...READ_ALL,
    'stores.write',
    'skus.write',
    'stock.receive',
    'stock.adjust',
    'sales.create',
    'sales.bulk',
    'sales.void',
    'sales.return',
    'sales.sync',
    'parties.write',
    'payments.create',
    'transfers.request',
    'transfers.approve',
    'transfers.receive',
    'settlements.submit',
    'settlements.approve',
    'field.manage',
    'visits.complete',
    'pieces.write',
    'orders.create',
    'orders.manage',
    'operations.revert',
    'review.resolve',
  ]),
  cashier: new Set<Permission>([
    'stores.read',
    'skus.read',
    'stock.read',
    'sales.create',
    'sales.read',
    'sales.sync',
    'parties.read',
    'payments.create',
    'settlements.submit',
    'settlements.read',
    'transfers.read',
    'transfers.receive',
    'orders.create',
    'orders.read',
    'pieces.read',
  ]),
  field_agent: new Set<Permission>([
    'stores.read',
    'skus.read',
    'stock.read',
    'sales.read',
    'parties.read',
    'field.read',
    'visits.complete',
  ]),
  auditor: new Set<Permission>([...READ_ALL]),
};

export function roleHas(role: Role, permission: Permission): boolean {
  return ROLE_PERMISSIONS[role].has(permission);
}

/** The roles that hold a permission, in ROLES order. */
export function rolesWith(permission: Permission): Role[] {
  return ROLES.filter((role) => roleHas(role, permission));
}

/**
 * A role's permissions as the docs list them (README's roles table, the
 * OpenAPI description of a token's role): `every permission`, or `every
 * *.read` when it holds them all, then the others in PERMISSIONS order.
 */
export function describeRole(role: Role): string {
  const held = PERMISSIONS.filter((permission) => roleHas(role, permission));
  if (held.length === PERMISSIONS.length) return 'every permission';
  const everyRead = READ_ALL.every((permission) => held.includes(permission));
  const listed = held.filter((permission) => !(everyRead && READ_ALL.includes(permission))).map((permission) => `\`${permission}\``);
  return [...(everyRead ? ['every `*.read`'] : []), ...listed].join(', ');
}

export function isRole(value: string): value is Role {
  return (ROLES as readonly string[]).includes(value);
}
