import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import { ApiClient, type ApiResponse } from '../../test/support/client.js';

const MERGE_PATCH = 'application/merge-patch+json';

/** PATCH /v1/tenant/settings is a JSON merge patch (RFC 7396): it takes that media type as well as application/json. */
describe('application/merge-patch+json', () => {
  let t: TestApp;
  let owner: ApiClient;
  let tenantId: string;

  before(async () => {
    t = await startTestApp();
    ({ owner, tenantId } = await t.newTenant());
  });
  after(() => t.close());

  const patch = (rawBody: string, contentType = MERGE_PATCH, options: { idempotencyKey?: string } = {}) =>
    owner.patch('/v1/tenant/settings', undefined, { rawBody, headers: { 'content-type': contentType }, ...options });
  const stored = async () => (await t.admin.query(`SELECT settings, settings_version FROM tenants WHERE id = $1`, [tenantId])).rows[0] as { settings: Record<string, unknown>; settings_version: number };
  function assertProblem(response: ApiResponse, status: number, code: string) {
    assert.equal(response.status, status, JSON.stringify(response.body));
    assert.match(response.headers.get('content-type') ?? '', /^application\/problem\+json/);
    assert.equal(response.body.code, code);
  }

  it('PATCH /v1/tenant/settings takes a merge patch: merged into the settings, null removes one, with the new ETag', async () => {
    const set = await patch('{"geofence_radius_m": 350, "settlement_float": 5000}');
    assert.equal(set.status, 200, JSON.stringify(set.body));
    assert.deepEqual(set.body, { geofence_radius_m: 350, settlement_float: 5000 });
    const version = (await stored()).settings_version;
    assert.equal(set.headers.get('etag'), `"${version}"`);
    const removed = await patch('{"settlement_float": null}', `${MERGE_PATCH}; charset=utf-8`);
    assert.equal(removed.status, 200, JSON.stringify(removed.body));
    assert.deepEqual(removed.body, { geofence_radius_m: 350 });
    assert.deepEqual((await stored()).settings, { geofence_radius_m: 350 });
    // media types are case-insensitive (RFC 9110)
    assert.equal((await patch('{"geofence_radius_m": 400}', 'Application/Merge-Patch+JSON')).status, 200);
  });

  it('is read by the same JSON reader as application/json: the same request for its Idempotency-Key, and the same refusals', async () => {
    const first = await patch('{"bulk_sale_threshold": 7000}', 'application/json', { idempotencyKey: 'mp-1' });
    assert.equal(first.status, 200);
    const again = await patch('{"bulk_sale_threshold": 7000}', MERGE_PATCH, { idempotencyKey: 'mp-1' });
    assert.equal(again.status, 200);
    assert.equal(again.headers.get('idempotent-replayed'), 'true');

    const before = await stored();
    assertProblem(await patch('{"geofence_radius_m": '), 400, 'malformed_json');
    assertProblem(await patch(''), 400, 'malformed_json');
    const repeated = await patch('{"geofence_radius_m": 300, "geofence_radius_m": 90000}');
    assertProblem(repeated, 400, 'validation_failed');
    assert.equal(repeated.body.errors[0].path, '/body/geofence_radius_m');
    const deep = await patch(`{"geofence_radius_m": ${'['.repeat(40)}${']'.repeat(40)}}`);
    assertProblem(deep, 400, 'validation_failed');
    assert.match(deep.body.errors[0].path, /^\/body\/geofence_radius_m(\/0)+$/);
    assertProblem(await patch('{"geofence_radius_m": "far"}'), 400, 'validation_failed');
    assertProblem(await patch('{"colour": "red"}'), 400, 'validation_failed');
    assertProblem(await patch('{"geofence_radius_m": 300}', `${MERGE_PATCH}; charset=iso-8859-1`), 415, 'unsupported_media_type');
    const latin1 = await fetch(`${t.baseUrl}/v1/tenant/settings`, {
      method: 'PATCH',
      headers: { authorization: `Bearer ${owner.token}`, 'content-type': MERGE_PATCH },
      body: Buffer.from([0x7b, 0x22, 0xe9, 0x22, 0x3a, 0x31, 0x7d]), // {"é":1} in Latin-1: not UTF-8
    });
    assert.equal(latin1.status, 400);
    assert.equal(((await latin1.json()) as { code: string }).code, 'malformed_json');
    assert.deepEqual(await stored(), before, 'nothing changed');
  });

  it('elsewhere a body must be application/json: a merge patch sent to an endpoint that is not one is 415 saying so, nothing written', async () => {
    const stores = async () => (await t.admin.query(`SELECT count(*)::int AS n FROM stores WHERE tenant_id = $1`, [tenantId])).rows[0].n as number;
    const before = await stores();
    const refused = await owner.post('/v1/stores', undefined, { rawBody: '{"code":"MP","name":"Merge patched"}', headers: { 'content-type': MERGE_PATCH } });
    assertProblem(refused, 415, 'unsupported_media_type');
    assert.match(refused.body.detail, /application\/json/);
    assert.equal(await stores(), before);
    // a path or method with no route is told so, as with application/json
    assertProblem(await owner.patch('/v1/nothing-here', undefined, { rawBody: '{}', headers: { 'content-type': MERGE_PATCH } }), 404, 'not_found');
    assertProblem(await owner.patch('/v1/stores', undefined, { rawBody: '{}', headers: { 'content-type': MERGE_PATCH } }), 405, 'method_not_allowed');
  });

  it('a body in another charset is told the media type the endpoint takes, not the one it sent (text/plain, or a merge patch where none is taken)', async () => {
    const latin1Text = await owner.post('/v1/stores', undefined, { rawBody: '{"code":"L1","name":"Latin"}', headers: { 'content-type': 'text/plain; charset=latin1' } });
    assertProblem(latin1Text, 415, 'unsupported_media_type');
    assert.match(latin1Text.body.detail, /as application\/json in UTF-8/);
    const latin1Patch = await owner.post('/v1/stores', undefined, { rawBody: '{"code":"L2","name":"Latin"}', headers: { 'content-type': `${MERGE_PATCH}; charset=latin1` } });
    assertProblem(latin1Patch, 415, 'unsupported_media_type');
    assert.match(latin1Patch.body.detail, /as application\/json in UTF-8/);
    // where the endpoint takes it, the merge patch is named
    const settings = await patch('{"geofence_radius_m": 300}', `${MERGE_PATCH}; charset=latin1`);
    assertProblem(settings, 415, 'unsupported_media_type');
    assert.match(settings.body.detail, /as application\/merge-patch\+json in UTF-8/);
  });

  it('the OpenAPI document lists both media types for PATCH /v1/tenant/settings, and only application/json elsewhere', async () => {
    const doc = (await new ApiClient(t.baseUrl, undefined).get('/openapi.json')).body as {
      paths: Record<string, Record<string, { requestBody?: { content: Record<string, { schema: unknown }> } }>>;
    };
    const content = doc.paths['/v1/tenant/settings']!.patch!.requestBody!.content;
    assert.deepEqual(Object.keys(content).sort(), ['application/json', MERGE_PATCH]);
    assert.deepEqual(content[MERGE_PATCH]!.schema, content['application/json']!.schema);
    assert.deepEqual(Object.keys(doc.paths['/v1/stores']!.post!.requestBody!.content), ['application/json']);
  });
});
