"""Continent of a latitude/longitude, offline, from a bundled table of coarse polygons.

No geographic library is installed and flows must not need the network, so each
continent is drawn here as one or two hand-made polygons (longitude, latitude in
degrees, WGS84) that run through the sea between continents and along the conventional
land borders: the Urals, the Ural river, the Caspian and the Caucasus crest, the
Bosporus and the Aegean, Gibraltar, Suez and the Red Sea, the Darién, the Bering Strait
and, between Asia and Oceania, west of New Guinea and Palau. Borders are right to about
one degree; islands near a border (the Greek islands off Turkey, Aruba, Tanimbar) may
land on either side. Points on no polygon (open ocean) and missing or impossible
coordinates are ``UNKNOWN``. Continents are geographic, not political: Sinai and
Cyprus are Asia, the Canaries and Madeira Africa, Greenland North America, Hawaii and
Easter Island Oceania.
"""

from __future__ import annotations

import numpy as np

from mirflow.core.errors import ConfigError

UNKNOWN = "unknown"
CONTINENTS = ("Africa", "Antarctica", "Asia", "Europe", "North America", "Oceania", "South America")

# (continent, ring of (lon, lat)) in priority order: the first polygon holding a point
# wins, so later polygons may overlap earlier ones (Asia is a box behind the rest).
_POLYGONS: tuple[tuple[str, tuple[tuple[float, float], ...]], ...] = (
    ("Antarctica", ((-180, -90), (180, -90), (180, -60), (-180, -60))),
    ("South America", (
        (-77.4, 8.7), (-76.5, 11.0), (-72.5, 12.8), (-71.2, 12.5), (-70.3, 12.0), (-68.0, 11.6),
        (-64.0, 11.3), (-62.0, 10.9), (-62.0, 10.0), (-60.8, 9.6), (-58.0, 8.5), (-57.0, 7.8),
        (-52.0, 6.0), (-49.0, 3.0), (-44.0, -1.0), (-31.0, -3.5), (-33.0, -8.0), (-36.0, -18.0),
        (-38.0, -22.0), (-46.0, -27.0), (-52.0, -35.0), (-56.0, -38.0), (-57.0, -50.0),
        (-57.0, -53.0), (-63.0, -56.0), (-68.0, -57.0), (-76.0, -54.0), (-77.0, -48.0),
        (-80.0, -33.0), (-73.0, -18.0), (-82.0, -8.0), (-92.5, -2.0), (-92.5, 2.0), (-82.0, 4.5),
        (-78.3, 7.1), (-77.2, 7.9),
    )),
    ("North America", (
        (-180, 50), (-180, 58), (-175, 60), (-172, 64), (-169.3, 65.6), (-169, 90), (-10, 90),
        (-10, 75), (-18, 70), (-25, 67.5), (-30, 62), (-40, 58), (-50, 30), (-57, 15), (-58.5, 12),
        (-60, 5), (-92, 5), (-116, 16), (-122, 28), (-135, 50), (-160, 51),
    )),
    ("North America", ((172, 50), (180, 50), (180, 56), (172, 56))),  # the western Aleutians
    ("Europe", (
        (-35, 36), (-6.0, 36.0), (-5.5, 35.95), (-2.0, 36.0), (5.0, 37.8), (10.5, 37.7), (12.3, 36.3),
        (12.3, 35.2), (15.0, 35.5), (22.0, 34.5), (26.8, 34.8), (26.0, 38.0), (26.1, 39.9),
        (26.6, 40.2), (27.5, 40.6), (29.0, 41.0), (29.1, 41.3), (36.5, 43.5), (40.0, 43.4),
        (42.5, 43.2), (44.5, 42.7), (48.6, 41.6), (50.5, 44.0), (52.2, 46.8), (51.6, 48.5),
        (51.3, 51.2), (55.1, 51.6), (58.6, 51.1), (59.4, 53.5), (59.8, 56.5), (59.3, 60.5),
        (59.5, 64.0), (63.0, 66.5), (65.5, 68.0), (66.8, 69.0), (64.0, 72.0), (70.0, 77.0),
        (70.0, 85.0), (-35, 85),
    )),
    ("Africa", (
        (-26, 38), (11, 38), (26, 34), (32.4, 31.6), (32.35, 30.5), (32.55, 29.9), (33.35, 28.3),
        (34.1, 27.4), (36.5, 23.5), (38.5, 20.0), (40.5, 16.5), (42.5, 14.0), (43.4, 12.6),
        (48.0, 13.0), (51.5, 13.2), (55.5, 13.5), (65, 5), (65, -40), (-26, -40),
    )),
    ("Oceania", (
        (110, -13), (124, -11.3), (128, -10), (131, -8.5), (132.5, -4.5), (129.8, -1.7), (129.8, 1.0),
        (131, 4), (133, 9), (140, 19), (150, 27), (180, 30), (180, -60), (110, -60),
    )),
    ("Oceania", ((-180, 30), (-135, 30), (-120, 10), (-100, -10), (-100, -60), (-180, -60))),
    ("Asia", ((25, -13), (180, -13), (180, 90), (25, 90))),
    ("Asia", ((-180, 58), (-169, 58), (-169, 90), (-180, 90))),  # Chukotka, Wrangel Island
)


def continent_of(latitude, longitude) -> np.ndarray:
    """Continent name per point (an object array of str); ``UNKNOWN`` for NaN,
    out-of-range coordinates and open ocean. Longitudes may be given in [-180, 360)."""
    lat = np.asarray(latitude, dtype=np.float64).ravel()
    lon = np.asarray(longitude, dtype=np.float64).ravel()
    if lat.shape != lon.shape:
        raise ConfigError(f"latitude has {lat.size} values but longitude has {lon.size}")
    valid = np.isfinite(lat) & np.isfinite(lon) & (np.abs(lat) <= 90) & (lon >= -180) & (lon < 360)
    lon = np.where(lon >= 180, lon - 360, lon)
    names = np.full(lat.size, UNKNOWN, dtype=object)
    open_points = valid.copy()
    for continent, ring in _POLYGONS:
        hit = open_points & _inside(lon, lat, np.asarray(ring, dtype=np.float64))
        names[hit] = continent
        open_points &= ~hit
    return names


def _inside(lon: np.ndarray, lat: np.ndarray, ring: np.ndarray) -> np.ndarray:
    """Even-odd ray casting, vectorised over points; ``ring`` is (n, 2) of (lon, lat).
    Closed on the bottom/left edges so that boxes sharing an edge leave no gap."""
    inside = np.zeros(lon.shape, dtype=bool)
    ends = np.roll(ring, -1, axis=0)
    for (x0, y0), (x1, y1) in zip(ring, ends):
        if y0 == y1:
            continue
        spans = (y0 <= lat) != (y1 <= lat)
        x_at = x0 + (lat - y0) * (x1 - x0) / (y1 - y0)
        inside ^= spans & (lon < x_at)
    return inside
