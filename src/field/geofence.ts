/**
 * Great-circle distance and the geofence rule for completing a visit. Pure:
 * no database, no clock.
 */

/** Mean Earth radius (IUGG), metres. */
export const EARTH_RADIUS_M = 6_371_008.8;

/** Default geofence radius when the tenant has no `geofence_radius_m` setting. */
export const DEFAULT_GEOFENCE_RADIUS_M = 200;

export interface Position {
  latitude: number;
  longitude: number;
}

export function isValidPosition(position: Position): boolean {
  const { latitude, longitude } = position;
  return (
    Number.isFinite(latitude) && Number.isFinite(longitude) && latitude >= -90 && latitude <= 90 && longitude >= -180 && longitude <= 180
  );
}

const toRadians = (degrees: number): number => (degrees * Math.PI) / 180;

/**
 * Haversine great-circle distance in metres (not rounded). Accurate to well
 * under a metre at geofence scales; the sphere model's error (≤ 0.5 %) is far
 * below GPS error.
 */
export function haversineDistanceM(from: Position, to: Position): number {
  const phi1 = toRadians(from.latitude);
  const phi2 = toRadians(to.latitude);
  const deltaPhi = toRadians(to.latitude - from.latitude);
  const deltaLambda = toRadians(to.longitude - from.longitude);
  const a = Math.sin(deltaPhi / 2) ** 2 + Math.cos(phi1) * Math.cos(phi2) * Math.sin(deltaLambda / 2) ** 2;
  // min() guards against a > 1 from rounding for antipodal points.
  return 2 * EARTH_RADIUS_M * Math.asin(Math.min(1, Math.sqrt(a)));
}

export type GeofenceResult = { inside: true; distance_m: number; radius_m: number } | { inside: false; distance_m: number; radius_m: number };

/**
 * The agent is inside when the distance, rounded to whole metres, is at most
 * the radius: a point on the edge is inside. Whole metres because GPS is not
 * more precise than that, and it makes "on the edge" a well-defined case.
 */
export function checkGeofence(agent: Position, pointOfSale: Position, radiusM: number): GeofenceResult {
  const distanceM = Math.round(haversineDistanceM(agent, pointOfSale));
  return { inside: distanceM <= radiusM, distance_m: distanceM, radius_m: radiusM };
}

/**
 * A position `distanceM` metres due north of `origin` (same longitude): along a
 * meridian the great-circle distance is exactly R·Δφ. Used to build test points.
 */
export function offsetNorth(origin: Position, distanceM: number): Position {
  return { latitude: origin.latitude + (distanceM / EARTH_RADIUS_M) * (180 / Math.PI), longitude: origin.longitude };
}
