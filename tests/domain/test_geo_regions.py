"""The state polygons: point-in-state and distance to the border, checked against shapely."""

from __future__ import annotations

import random
import time

import pytest
import shapely
from shapely.geometry import LineString, Point, box

from adapters.geolocation.census_states import shapefile_path, us_states
from domain.geo import haversine_miles


@pytest.fixture(scope="module")
def states():
    return us_states()


@pytest.fixture(scope="module")
def shapely_states():
    """The same shapefile as shapely geometries: the independent implementation we check against."""
    import shapefile
    from shapely.geometry import shape

    with shapefile.Reader(str(shapefile_path())) as reader:
        return {f"US-{rec['STUSPS']}": shape(shp.__geo_interface__)
                for shp, rec in zip(reader.shapes(), reader.records(), strict=True)}


# (west/east line to cut, state on the west bank, state on the east bank)
RIVER_BORDERS = [
    pytest.param(40.80, (-74.10, -73.85), "US-NJ", "US-NY", id="hudson-nj-ny"),
    pytest.param(40.85, (-74.10, -73.85), "US-NJ", "US-NY", id="hudson-nj-ny-north"),
    pytest.param(40.22, (-75.00, -74.60), "US-PA", "US-NJ", id="delaware-pa-nj-trenton"),
    pytest.param(40.30, (-75.00, -74.60), "US-PA", "US-NJ", id="delaware-pa-nj-north"),
]


def border_crossing(shapely_states, code: str, lat: float, lons: tuple[float, float]) -> float:
    """Longitude where the state's boundary crosses the parallel `lat` between `lons`."""
    crossing = shapely_states[code].boundary.intersection(LineString([(lons[0], lat),
                                                                      (lons[1], lat)]))
    assert crossing.geom_type == "Point", crossing
    return crossing.x


@pytest.mark.parametrize("lat, lons, west, east", RIVER_BORDERS)
@pytest.mark.parametrize("step", [0.0005, 0.002])  # ~40 m and ~170 m from the line
def test_points_just_either_side_of_a_river_border(states, shapely_states, lat, lons, west, east,
                                                   step):
    border_lon = border_crossing(shapely_states, west, lat, lons)
    west_point, east_point = (lat, border_lon - step), (lat, border_lon + step)

    assert states.place(*west_point).jurisdiction == west
    assert states.place(*east_point).jurisdiction == east
    for (plat, plon), code in ((west_point, west), (east_point, east)):
        assert shapely_states[code].contains(Point(plon, plat))
        placement = states.place(plat, plon)
        # Just inside: well within a mile of the border, no farther than the step itself.
        step_miles = haversine_miles(plat, plon, plat, border_lon)
        assert placement.distance_to_border_miles <= step_miles + 1e-6
        assert placement.distance_to_border_miles < 1.0


@pytest.mark.parametrize("lat, lon, code", [
    (40.7440, -74.0324, "US-NJ"),    # Hoboken
    (40.7580, -73.9855, "US-NY"),    # Times Square
    (40.2171, -74.7429, "US-NJ"),    # Trenton
    (40.2101, -74.7893, "US-PA"),    # Morrisville
    (39.9526, -75.1652, "US-PA"),    # Philadelphia City Hall
    (39.3643, -74.4229, "US-NJ"),    # Atlantic City
])
def test_distance_to_border_matches_shapely_and_haversine(states, shapely_states, lat, lon, code):
    placement = states.place(lat, lon)
    assert placement.jurisdiction == code

    # Independent answer: the boundary near the point, densified to ~20 m vertices with shapely,
    # and the smallest great-circle distance to any vertex (no projection involved).
    near = shapely_states[code].boundary.intersection(box(lon - 0.4, lat - 0.4, lon + 0.4,
                                                          lat + 0.4))
    coords = shapely.get_coordinates(shapely.segmentize(near, 0.0002))
    reference = min(haversine_miles(lat, lon, y, x) for x, y in coords)
    assert placement.distance_to_border_miles == pytest.approx(reference, rel=0.005, abs=0.01)
    # The reported border point really is on the boundary.
    assert shapely_states[code].boundary.distance(Point(placement.border_lon,
                                                        placement.border_lat)) < 1e-6


def test_random_points_agree_with_shapely(states, shapely_states):
    rng = random.Random(20260302)
    mismatches = []
    for _ in range(400):
        lat, lon = rng.uniform(38.5, 42.5), rng.uniform(-80.0, -72.0)
        expected = next((c for c, g in shapely_states.items() if g.contains(Point(lon, lat))), None)
        got = states.place(lat, lon).jurisdiction
        if got != expected:
            mismatches.append((lat, lon, expected, got))
    assert mismatches == []


def test_outside_every_state_reports_the_distance_to_the_nearest_one(states):
    placement = states.place(40.30, -73.80)  # the Atlantic, off Long Branch NJ
    assert placement.region is None and placement.jurisdiction is None
    assert 1.0 < placement.distance_to_border_miles < 15.0
    paris = states.place(48.8566, 2.3522)
    assert paris.jurisdiction is None and paris.distance_to_border_miles > 3000


def test_lookup_is_fast_once_loaded(states):
    rng = random.Random(7)
    points = [(rng.uniform(25, 49), rng.uniform(-124, -67)) for _ in range(300)]
    start = time.perf_counter()
    for lat, lon in points:
        states.place(lat, lon)
    per_lookup = (time.perf_counter() - start) / len(points)
    assert per_lookup < 0.02, f"{per_lookup * 1000:.1f} ms per lookup"
