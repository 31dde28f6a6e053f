"""Point-in-region and distance-to-border over lon/lat polygons, indexed by bounding boxes.

A region (a US state) is a set of rings; a point is inside when an odd number of its rings
hold it (even-odd rule: holes and islands need no special case). Rings are cut into short
chunks with their own bounding boxes, so a lookup touches only the few chunks near the point:
a lookup takes about a millisecond, not a scan of the 300,000 vertices of the US.

Distances are in statute miles. Near the point (where the answer matters: "within one mile of
a border") a local equirectangular projection is accurate to well under 0.1 %; the reported
distance is the great-circle (haversine) distance to the nearest border point found that way.
The border is the region's polygon boundary, coastline included: nearer is the conservative
answer for a compliance check.

Must never: read files, or use floats for anything but coordinates.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

EARTH_RADIUS_MILES = 3958.8
MILES_PER_DEGREE = EARTH_RADIUS_MILES * math.pi / 180.0
CHUNK_SEGMENTS = 32


def haversine_miles(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_MILES * math.asin(min(1.0, math.sqrt(a)))


@dataclass(frozen=True)
class _Chunk:
    min_x: float
    min_y: float
    max_x: float
    max_y: float
    start: int  # segments start..end-1: (xs[i], ys[i]) -> (xs[i+1], ys[i+1])
    end: int


@dataclass(frozen=True)
class Ring:
    xs: tuple[float, ...]   # longitudes, closed (first point repeated last)
    ys: tuple[float, ...]   # latitudes
    bbox: tuple[float, float, float, float]
    chunks: tuple[_Chunk, ...]

    @staticmethod
    def of(points: Sequence[tuple[float, float]]) -> Ring:
        pts = list(points)
        if pts[0] != pts[-1]:
            pts.append(pts[0])
        xs = tuple(float(p[0]) for p in pts)
        ys = tuple(float(p[1]) for p in pts)
        chunks = []
        for start in range(0, len(pts) - 1, CHUNK_SEGMENTS):
            end = min(start + CHUNK_SEGMENTS, len(pts) - 1)
            cx, cy = xs[start:end + 1], ys[start:end + 1]
            chunks.append(_Chunk(min(cx), min(cy), max(cx), max(cy), start, end))
        return Ring(xs, ys, (min(xs), min(ys), max(xs), max(ys)), tuple(chunks))

    def crossings(self, px: float, py: float) -> int:
        """Edges crossed by a ray from the point towards +x (parity = inside the ring)."""
        xs, ys, count = self.xs, self.ys, 0
        for c in self.chunks:
            if c.max_x < px or py < c.min_y or py > c.max_y:
                continue
            for i in range(c.start, c.end):
                y1, y2 = ys[i], ys[i + 1]
                if (y1 > py) != (y2 > py):
                    x = xs[i] + (py - y1) * (xs[i + 1] - xs[i]) / (y2 - y1)
                    if px < x:
                        count += 1
        return count


@dataclass(frozen=True)
class Region:
    code: str        # e.g. "US-NJ"
    name: str
    rings: tuple[Ring, ...]
    bbox: tuple[float, float, float, float] = field(default=(0.0, 0.0, 0.0, 0.0))

    @staticmethod
    def of(code: str, name: str, rings: Iterable[Sequence[tuple[float, float]]]) -> Region:
        built = tuple(Ring.of(r) for r in rings if len(r) >= 3)
        bbox = (min(r.bbox[0] for r in built), min(r.bbox[1] for r in built),
                max(r.bbox[2] for r in built), max(r.bbox[3] for r in built))
        return Region(code, name, built, bbox)

    def contains(self, lon: float, lat: float) -> bool:
        if not _in_box(self.bbox, lon, lat):
            return False
        inside = False
        for ring in self.rings:
            if _in_box(ring.bbox, lon, lat) and ring.crossings(lon, lat) % 2:
                inside = not inside
        return inside


@dataclass(frozen=True)
class Placement:
    region: Region | None               # the region holding the point, None outside all
    distance_to_border_miles: float     # to the holding region's border, or the nearest one
    border_lat: float                   # the nearest border point found
    border_lon: float

    @property
    def jurisdiction(self) -> str | None:
        return self.region.code if self.region else None


class RegionIndex:
    """The regions of a map, ready for fast lookups (build once, share between threads)."""

    def __init__(self, regions: Iterable[Region]) -> None:
        self.regions = tuple(regions)
        self.by_code = {r.code: r for r in self.regions}

    def region_at(self, lat: float, lon: float) -> Region | None:
        for region in self.regions:
            if region.contains(lon, lat):
                return region
        return None

    def place(self, lat: float, lon: float) -> Placement:
        region = self.region_at(lat, lon)
        candidates = (region,) if region else self.regions
        dist, bx, by = _nearest_boundary(candidates, lon, lat)
        if bx is None:
            raise ValueError("the index has no boundaries")
        return Placement(region, haversine_miles(lat, lon, by, bx), by, bx)


def _in_box(box: tuple[float, float, float, float], x: float, y: float) -> bool:
    return box[0] <= x <= box[2] and box[1] <= y <= box[3]


def _box_gap(box: tuple[float, float, float, float], px: float, py: float, kx: float) -> float:
    """Lower bound, in projected miles, of the distance from the point to anything in the box."""
    dx = max(box[0] - px, 0.0, px - box[2]) * kx
    dy = max(box[1] - py, 0.0, py - box[3]) * MILES_PER_DEGREE
    return math.hypot(dx, dy)


def _nearest_boundary(regions: Iterable[Region], px: float,
                      py: float) -> tuple[float, float | None, float | None]:
    """Branch and bound over region, ring and chunk boxes in a projection centred on the point.

    Returns the projected distance in miles and the nearest border point (lon, lat), or
    (inf, None, None) when the regions have no boundary at all."""
    kx = MILES_PER_DEGREE * math.cos(math.radians(py))
    best = [math.inf, None, None]
    gaps = sorted(((_box_gap(r.bbox, px, py, kx), r) for r in regions), key=lambda g: g[0])
    for gap, region in gaps:
        if gap >= best[0]:
            break
        for ring in region.rings:
            if _box_gap(ring.bbox, px, py, kx) >= best[0]:
                continue
            chunks = sorted(((_box_gap((c.min_x, c.min_y, c.max_x, c.max_y), px, py, kx), c)
                             for c in ring.chunks), key=lambda g: g[0])
            for chunk_gap, c in chunks:
                if chunk_gap >= best[0]:
                    break
                _scan_chunk(ring, c, px, py, kx, best)
    return best[0], best[1], best[2]


def _scan_chunk(ring: Ring, c: _Chunk, px: float, py: float, kx: float, best: list) -> None:
    ky = MILES_PER_DEGREE
    xs, ys = ring.xs, ring.ys
    for i in range(c.start, c.end):
        ax, ay = (xs[i] - px) * kx, (ys[i] - py) * ky
        dx, dy = (xs[i + 1] - px) * kx - ax, (ys[i + 1] - py) * ky - ay
        seg = dx * dx + dy * dy
        t = 0.0 if seg == 0 else max(0.0, min(1.0, -(ax * dx + ay * dy) / seg))
        qx, qy = ax + t * dx, ay + t * dy
        d = math.hypot(qx, qy)
        if d < best[0]:
            best[0], best[1], best[2] = d, px + qx / kx, py + qy / ky
