import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { checkGeofence, DEFAULT_GEOFENCE_RADIUS_M, haversineDistanceM, isValidPosition, offsetNorth } from './geofence.js';

const shop = { latitude: -1.2863890, longitude: 36.8172230 };

describe('haversine distance', () => {
  it('is zero for the same point and symmetric', () => {
    assert.equal(haversineDistanceM(shop, shop), 0);
    const other = { latitude: -1.29, longitude: 36.82 };
    assert.equal(haversineDistanceM(shop, other), haversineDistanceM(other, shop));
  });

  it('matches known distances', () => {
    // One degree of latitude on the mean sphere: R·π/180 ≈ 111,195 m.
    assert.equal(Math.round(haversineDistanceM({ latitude: 0, longitude: 0 }, { latitude: 1, longitude: 0 })), 111_195);
    // Paris (Notre-Dame) → London (Trafalgar Square), ≈ 342.5 km.
    const km = haversineDistanceM({ latitude: 48.853, longitude: 2.3499 }, { latitude: 51.508, longitude: -0.128 }) / 1000;
    assert.ok(km > 341 && km < 344, `got ${km} km`);
    // Antipodes: half the circumference, no NaN from rounding.
    const half = haversineDistanceM({ latitude: 0, longitude: 0 }, { latitude: 0, longitude: 180 });
    assert.equal(Math.round(half), Math.round(Math.PI * 6_371_008.8));
  });

  it('handles the antimeridian (179.999° → -179.999° is about 222 m at the equator)', () => {
    const d = haversineDistanceM({ latitude: 0, longitude: 179.999 }, { latitude: 0, longitude: -179.999 });
    assert.equal(Math.round(d), 222);
  });

  it('offsetNorth builds a point at the exact distance', () => {
    assert.equal(Math.round(haversineDistanceM(shop, offsetNorth(shop, 200))), 200);
    assert.equal(Math.round(haversineDistanceM(shop, offsetNorth(shop, 57.3))), 57);
  });
});

describe('geofence rule', () => {
  it('inside: 150 m from a 200 m fence', () => {
    assert.deepEqual(checkGeofence(offsetNorth(shop, 150), shop, DEFAULT_GEOFENCE_RADIUS_M), { inside: true, distance_m: 150, radius_m: 200 });
  });
  it('on the edge: exactly the radius is inside', () => {
    assert.deepEqual(checkGeofence(offsetNorth(shop, 200), shop, 200), { inside: true, distance_m: 200, radius_m: 200 });
  });
  it('outside: one metre past the edge, with the distance reported', () => {
    assert.deepEqual(checkGeofence(offsetNorth(shop, 201), shop, 200), { inside: false, distance_m: 201, radius_m: 200 });
    assert.deepEqual(checkGeofence(offsetNorth(shop, 5000), shop, 200), { inside: false, distance_m: 5000, radius_m: 200 });
  });
  it('uses the configured radius', () => {
    assert.equal(checkGeofence(offsetNorth(shop, 450), shop, 500).inside, true);
    assert.equal(checkGeofence(offsetNorth(shop, 450), shop, 400).inside, false);
  });
  it('validates coordinate ranges', () => {
    assert.equal(isValidPosition({ latitude: 90, longitude: -180 }), true);
    assert.equal(isValidPosition({ latitude: 90.0001, longitude: 0 }), false);
    assert.equal(isValidPosition({ latitude: 0, longitude: 180.5 }), false);
    assert.equal(isValidPosition({ latitude: Number.NaN, longitude: 0 }), false);
  });
});
