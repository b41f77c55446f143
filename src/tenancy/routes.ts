import { Type } from 'typebox';
import { assertAllStores, SYSTEM_TENANT_ID } from '../core/auth.js';
import { runCommand } from '../core/command.js';
import { describeRole, ROLES } from '../core/permissions.js';
import type { App, AppDeps } from '../http/app.js';
import { command, commandInputOf, sendOutcome, tenantOf } from '../http/command.js';
import { decodeCursor, IdempotencyHeaders, IdParams, IfMatchHeaders, isUuidIdCursor, ListQuery, listOf, Name, NoBody, Page, pageOf, Timestamp, Uuid } from '../http/schemas.js';
import { createTenant } from './createTenant.js';
import { createToken, listTokens, revokeToken, tokenReplayVisibleTo } from './createToken.js';
import { getVersionedTenantSettings, updateTenantSettings } from './updateTenantSettings.js';
import { etagOf, optionalExpectedVersion } from '../http/etag.js';
import { MERGE_PATCH_CONSUMES } from '../http/json.js';
import { inTenantTransaction } from '../core/command.js';

const redactToken = (body: unknown): unknown => ({ ...(body as object), token: null });

const Settings = Type.Object(
  {
    bulk_sale_threshold: Type.Optional(
      Type.Union([Type.Integer({ minimum: 1 }), Type.Null()], {
        description: 'base units; null removes it (then only sales sent as bulk are bulk)',
      }),
    ),
    geofence_radius_m: Type.Optional(
      Type.Union([Type.Integer({ minimum: 1, maximum: 100_000 }), Type.Null()], { description: 'metres; null: back to the default, 200' }),
    ),
    settlement_float: Type.Optional(
      Type.Union([Type.Integer({ minimum: 0, maximum: 9_000_000_000_000 }), Type.Null()], { description: 'minor units; null: back to the default, 0' }),
    ),
    require_second_approver: Type.Optional(
      Type.Union([Type.Boolean(), Type.Null()], {
        description: 'four-eyes rule: a settlement or stock transfer is approved by another token than the one that submitted or requested it (403 otherwise); null: back to the default, false',
      }),
    ),
    require_second_approver_for_reversals: Type.Optional(
      Type.Union([Type.Boolean(), Type.Null()], {
        description:
          'four-eyes rule for undoing: a sale (synced ones too) is voided or taken back from (POST /v1/sales/{id}/void, /returns), and an operation reverted (POST /v1/operations/{op_id}/revert), by another token than the one that made it (403 forbidden, reason second_approver_required, otherwise); apart from require_second_approver, which it neither needs nor changes; null: back to the default, false',
      }),
    ),
  },
  { additionalProperties: false },
);

/** The settings as answered: those set (a setting never set, or removed, is absent and has its default). */
const SettingsAnswer = Type.Object(
  {
    bulk_sale_threshold: Type.Optional(Type.Integer({ description: 'base units; absent: only sales sent as bulk are bulk' })),
    geofence_radius_m: Type.Optional(Type.Integer({ description: 'metres; absent: the default, 200' })),
    settlement_float: Type.Optional(Type.Integer({ description: 'minor units; absent: the default, 0' })),
    require_second_approver: Type.Optional(Type.Boolean({ description: 'absent: the default, false' })),
    require_second_approver_for_reversals: Type.Optional(Type.Boolean({ description: 'absent: the default, false' })),
  },
  { additionalProperties: true },
);

export async function tenancyRoutes(app: App, { db, authenticator }: AppDeps): Promise<void> {
  app.post(
    '/v1/tenants',
    {
      config: { auth: 'operator' },
      schema: {
        tags: ['tenancy'],
        summary:
          'Create a tenant and its owner token (operator token). The owner token is shown once (only its SHA-256 is stored): a replay by Idempotency-Key returns the tenant with `token: null` and creates nothing.',
        headers: IdempotencyHeaders,
        body: Type.Object({ name: Name(200) }, { additionalProperties: false }),
        response: { 201: Type.Object({ tenant: Type.Object({ id: Uuid, name: Type.String() }), token: Type.Union([Type.String(), Type.Null()], { description: 'the owner token; null on a replay' }) }) },
      },
    },
    async (request, reply) =>
      sendOutcome(
        reply,
        await runCommand(db, commandInputOf(request, SYSTEM_TENANT_ID), { type: 'tenant.create', redactForReplay: redactToken }, async (cmd) => ({
          status: 201,
          body: await createTenant(cmd, request.body.name),
        })),
      ),
  );

  app.post(
    '/v1/tokens',
    {
      config: { permission: 'tokens.create', refusals: { forbidden: 'an owner token issued by a non-owner, or stores outside the issuer token' } },
      schema: {
        tags: ['tenancy'],
        summary: 'Issue an API token with a role and optional store scope. The token is shown once; a replay returns `token: null`, and goes only to the token that made the request or to a caller that could issue that token (an owner token: an owner; a store-limited caller: a token within its stores), 404 for others. A token revoked meanwhile (still cached by another API process, or authenticated just before its revoke committed) issues nothing: 401.',
        headers: IdempotencyHeaders,
        body: Type.Object(
          {
            name: Name(200),
            role: Type.Union(
              ROLES.map((role) => Type.Literal(role)),
              { description: `What the token may do (a role without a route's permission gets 403 before any data is read): ${ROLES.map((role) => `\`${role}\`: ${describeRole(role)}`).join('; ')}. Only an owner issues owner tokens.` },
            ),
            store_ids: Type.Optional(Type.Array(Uuid, { maxItems: 1000 })),
          },
          { additionalProperties: false },
        ),
        response: {
          201: Type.Object({
            id: Uuid,
            token: Type.Union([Type.String(), Type.Null()], { description: 'shown once; null on a replay' }),
            name: Type.String(),
            role: Type.String(),
            store_ids: Type.Union([Type.Array(Uuid), Type.Null()]),
          }),
        },
      },
    },
    async (request, reply) =>
      command(db, request, reply, { type: 'token.create', redactForReplay: redactToken, replayVisibleTo: tokenReplayVisibleTo }, async (cmd) => ({
        status: 201,
        body: await createToken(cmd, request.body),
      })),
  );

  const ListedToken = Type.Object({
    id: Uuid,
    name: Type.String(),
    role: Type.String(),
    store_ids: Type.Union([Type.Array(Uuid), Type.Null()], { description: 'null: every store' }),
    created_at: Timestamp,
    revoked_at: Type.Union([Timestamp, Type.Null()], { description: 'null: the token authenticates' }),
  });
  app.get(
    '/v1/tokens',
    {
      config: { permission: 'tokens.create' },
      schema: {
        tags: ['tenancy'],
        summary:
          "The tenant's API tokens, in the order they were issued, revoked ones included (revoked_at): what an owner or admin needs to find a token's id to revoke it. Never the token or its hash. A caller limited to some stores sees only the tokens within them — the ones it may revoke, but for owner tokens, which only an owner revokes.",
        querystring: ListQuery,
        response: { 200: Page(ListedToken) },
      },
    },
    async (request) => {
      const principal = tenantOf(request);
      const limit = request.query.limit ?? 50;
      const after = decodeCursor(request.query.cursor, isUuidIdCursor, listOf(request))?.id;
      const rows = await inTenantTransaction(db, principal.tenantId, (tx) => listTokens(tx, principal, after, limit + 1));
      return pageOf(rows, limit, (last) => ({ id: last.id }), listOf(request));
    },
  );

  app.post(
    '/v1/tokens/:id/revoke',
    {
      config: { permission: 'tokens.create', refusals: { forbidden: 'an owner token revoked by a non-owner', conflict: "the tenant's last owner token of every store" } },
      schema: {
        tags: ['tenancy'],
        summary:
          'Revoke an API token: it stops authenticating — at once in the process that revoked it (no request it receives after this response authenticates with the token), within 10 s in other API processes (each caches token lookups that long), and at once in a process that answers the replay of the revoke or a repeat revoke. Only an owner revokes an owner token; a token limited to some stores revokes only tokens within them (others are 404). The tenant\'s last owner token of every store (no store_ids) is not revoked: 409 conflict, nothing written — issue another owner token first (two owners revoking each other at once: one is revoked, the other refused). Revoking a revoked token returns it again. A replay by Idempotency-Key goes to the token that sent the revoke or to a caller that may revoke that token (404 for others). A token revoked meanwhile (still cached by another API process, or authenticated just before its revoke committed) revokes nothing: 401.',
        headers: IdempotencyHeaders,
        params: IdParams,
        body: NoBody,
        response: {
          200: Type.Object({
            id: Uuid,
            name: Type.String(),
            role: Type.String(),
            store_ids: Type.Union([Type.Array(Uuid), Type.Null()]),
            revoked_at: Timestamp,
          }),
        },
      },
    },
    async (request, reply) => {
      const response = await command(db, request, reply, { type: 'token.revoke', replayVisibleTo: tokenReplayVisibleTo }, async (cmd) => ({
        status: 200,
        body: await revokeToken(cmd, request.params.id),
      }));
      // Revoked now, by a replay of the revoke, or before (perhaps in another
      // process): either way this process stops accepting the token before it answers.
      if (reply.statusCode === 200) authenticator.forgetToken(request.params.id);
      return response;
    },
  );

  app.get(
    '/v1/tenant/settings',
    {
      config: { permission: 'stores.read' },
      schema: {
        tags: ['tenancy'],
        summary: 'Tenant settings; their version is the ETag (send it back as If-Match when changing them)',
        response: { 200: SettingsAnswer },
      },
    },
    async (request, reply) => {
      const tenantId = tenantOf(request).tenantId;
      const { settings, version } = await inTenantTransaction(db, tenantId, (tx) => getVersionedTenantSettings(tx, tenantId));
      reply.header('etag', etagOf(version));
      return settings;
    },
  );

  app.patch(
    '/v1/tenant/settings',
    {
      config: { permission: 'tenant.settings', refusals: { forbidden: 'a token limited to some stores (settings apply to every store)' } },
      schema: {
        tags: ['tenancy'],
        summary:
          'Change tenant settings: a JSON merge patch (RFC 7396), sent as application/json or application/merge-patch+json (merged into the current ones; a setting sent as null is removed, i.e. back to its default). They apply to every store (float, geofence, bulk threshold…): a token limited to some stores gets 403. ' +
          'Optional `If-Match` with the ETag of GET: settings changed since → `412 version_conflict` with `current_version`, nothing changed. Changes sent at once take turns (same If-Match: one applies, the others 412; without: all merged). The answer carries the new ETag; a replay (same Idempotency-Key) carries the ETag the first answer carried.',
        headers: IfMatchHeaders('settings'),
        consumes: MERGE_PATCH_CONSUMES,
        body: Settings,
        response: { 200: SettingsAnswer },
      },
    },
    async (request, reply) => {
      assertAllStores(tenantOf(request), 'tenant settings');
      const expected = optionalExpectedVersion(request, 'tenant settings');
      // The version is not in the body: the ETag is given with the result, and stored with it for a replay.
      const outcome = await runCommand(db, commandInputOf(request), { type: 'tenant.settings.update' }, async (cmd) => {
        const updated = await updateTenantSettings(cmd, request.body, expected);
        return { status: 200, body: updated.settings, etag: etagOf(updated.version) };
      });
      return sendOutcome(reply, outcome);
    },
  );
}
