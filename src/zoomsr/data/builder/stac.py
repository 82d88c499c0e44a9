"""``zoomsr data search``: find Sentinel-2 and high-res (NAIP) items in a STAC API and write a
manifest that ``zoomsr data build --manifest`` reads.

Uses pystac-client. Sentinel-2 items are searched from ``start - window_days`` to
``end + window_days`` so that every high-res capture in ``[start, end]`` gets its full date
window. Each Sentinel-2 entry keeps the band assets the builder knows (TCI/visual, B01..B12,
SCL; COGs, not the JP2 duplicates) and the radiometry the item declares (level, processing
baseline, DN offset from ``raster:bands``/``earthsearch:boa_offset_applied``).
"""

from __future__ import annotations

import datetime as dt
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from zoomsr import __version__
from zoomsr.data.builder.dates import parse_datetime
from zoomsr.data.builder.manifest import write_manifest
from zoomsr.data.builder.s2_names import BAND_ALIASES, default_dn_offset, stac_item_radiometry
from zoomsr.errors import ConfigError, InputError, ZoomsrError, first_line
from zoomsr.validate import check_choice


@dataclass(frozen=True)
class Provider:
    """A STAC API and the names of its Sentinel-2 and high-res collections."""

    url: str
    sentinel2: str
    highres: str
    sign: bool = False  # Planetary Computer hrefs need a SAS token (planetary-computer package)


PROVIDERS: dict[str, Provider] = {
    "earth-search": Provider("https://earth-search.aws.element84.com/v1", "sentinel-2-l2a",
                             "naip"),
    "planetary-computer": Provider("https://planetarycomputer.microsoft.com/api/stac/v1",
                                   "sentinel-2-l2a", "naip", sign=True),
}
#: Asset keys tried, in order, for the RGB image of a high-res item.
HR_ASSET_KEYS = ("image", "visual", "data", "rgb")


class SearchError(ZoomsrError):
    """The STAC API could not be reached or answered with an error (exit 1)."""


def parse_bbox(text: str) -> tuple[float, float, float, float]:
    """``"west,south,east,north"`` (degrees) -> tuple, validated."""
    try:
        parts = tuple(float(x) for x in text.split(","))
    except ValueError:
        raise InputError(f"bbox: expected 'west,south,east,north' in degrees, got {text!r}")\
            from None
    if len(parts) != 4:
        raise InputError(f"bbox: expected 4 numbers west,south,east,north, got {text!r}")
    w, s, e, n = parts
    if not (-180 <= w < e <= 180 and -90 <= s < n <= 90):
        raise InputError(f"bbox: need -180<=west<east<=180 and -90<=south<north<=90, got {text!r}")
    return w, s, e, n


def network_reason(exc: BaseException, url: str | None = None) -> str:
    """A readable reason for a failed HTTP request (requests/urllib3 wrap the cause in reprs
    such as ``Max retries exceeded ... NameResolutionError(...)``)."""
    host = urlsplit(url).hostname if url else None
    where = f" {host}" if host else ""
    chain: list[BaseException] = []
    seen: BaseException | None = exc
    while seen is not None and len(chain) < 20:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    names = {type(e).__name__ for e in chain}
    text = " ".join(str(e) for e in chain)
    if (any(isinstance(e, socket.gaierror) for e in chain) or "NameResolutionError" in names
            or "NameResolutionError" in text or "Name or service not known" in text
            or "getaddrinfo failed" in text):
        return f"cannot resolve host{where}: no network, or a wrong URL?"
    if any(isinstance(e, ConnectionRefusedError) for e in chain) or "Connection refused" in text:
        return f"connection refused by{where or ' the server'}: is the STAC API running there?"
    if (any(isinstance(e, (TimeoutError, socket.timeout)) for e in chain)
            or names & {"ConnectTimeout", "ReadTimeout", "Timeout", "ConnectTimeoutError",
                        "ReadTimeoutError"}):
        return f"no answer from{where or ' the server'} (timed out)"
    if names & {"SSLError", "SSLCertVerificationError"}:
        return f"TLS/SSL error talking to{where or ' the server'} ({first_line(chain[-1])})"
    if "ConnectionError" in names or "MaxRetryError" in names:
        return f"cannot connect to{where or ' the server'} ({first_line(chain[-1])})"
    return f"{type(exc).__name__}: {first_line(exc)}"


def s2_entry(item: Mapping) -> dict:
    """Manifest entry of a Sentinel-2 STAC item (a dict as from ``pystac.Item.to_dict()``)."""
    assets = {}
    for key, asset in item.get("assets", {}).items():
        band = BAND_ALIASES.get(key.lower())
        if band is not None and band not in assets:
            assets[band] = asset["href"]
    if not assets:
        raise InputError(f"STAC item {item.get('id')}: no Sentinel-2 band assets "
                         f"(has {', '.join(item.get('assets', {}))})")
    radiometry = stac_item_radiometry(item)
    level = radiometry.get("level", "unknown")
    baseline = radiometry.get("baseline")
    offset = radiometry.get("dn_offset", default_dn_offset(level, baseline))
    props = item.get("properties", {})
    return {"id": item["id"], "datetime": props.get("datetime"), "level": level,
            "processing_baseline": baseline, "dn_offset": offset,
            "cloud_cover": props.get("eo:cloud_cover"), "assets": assets}


def hr_entry(item: Mapping) -> dict:
    """Manifest entry of a high-res (NAIP) STAC item."""
    assets = item.get("assets", {})
    href = next((assets[k]["href"] for k in HR_ASSET_KEYS if k in assets), None)
    if href is None:
        raise InputError(f"STAC item {item.get('id')}: no image asset (looked for "
                         f"{', '.join(HR_ASSET_KEYS)}; has {', '.join(assets)})")
    props = item.get("properties", {})
    return {"id": item["id"], "datetime": props.get("datetime") or props.get("start_datetime"),
            "gsd": props.get("gsd"), "href": href}


def _search(client, api: str, collection: str, bbox, start: dt.datetime, end: dt.datetime,
            max_items: int, sign) -> list[dict]:
    from pystac_client.exceptions import APIError

    try:
        search = client.search(collections=[collection], bbox=list(bbox),
                               datetime=[start, end], max_items=max_items)
        items = list(search.items())
    except (APIError, OSError, ValueError) as exc:  # HTTP and connection errors, bad JSON
        raise SearchError(f"STAC search for {collection} failed: "
                          f"{network_reason(exc, api)}") from None
    if sign is not None:
        items = [sign(item) for item in items]
    return [item.to_dict() for item in items]


def search_stac(
    out: str | os.PathLike[str],
    bbox: tuple[float, float, float, float],
    start: str,
    end: str,
    provider: str = "earth-search",
    url: str | None = None,
    s2_collection: str | None = None,
    hr_collection: str | None = None,
    window_days: int = 90,
    max_items: int = 1000,
    max_scene_cloud: float | None = None,
    overwrite: bool = False,
) -> tuple[Path, int, int]:
    """Search a STAC API and write a manifest; returns (path, Sentinel-2 items, high-res items).

    Args:
        bbox: (west, south, east, north) in degrees.
        start / end: high-res capture dates searched (``YYYY-MM-DD``).
        provider: ``earth-search`` (default) or ``planetary-computer``: API and collections.
        url / s2_collection / hr_collection: override the provider's.
        window_days: Sentinel-2 is searched this many days before ``start`` and after ``end``.
        max_items: per collection.
        max_scene_cloud: drop Sentinel-2 items whose ``eo:cloud_cover`` (percent) is higher.
    """
    check_choice("provider", provider, PROVIDERS)
    # Checked before any network call.
    if max_items < 1:
        raise ConfigError(f"--max-items must be >= 1, got {max_items}")
    if max_scene_cloud is not None and not 0 <= max_scene_cloud <= 100:
        raise ConfigError(f"--max-scene-cloud must be a percentage in 0..100, got "
                          f"{max_scene_cloud:g}")
    if window_days < 0:
        raise ConfigError(f"--window-days must be >= 0, got {window_days}")
    preset = PROVIDERS[provider]
    target = Path(out)
    if target.exists() and not overwrite:
        raise InputError(f"{target}: exists (use --overwrite)")
    t0 = parse_datetime(start, "--start")
    t1 = parse_datetime(end, "--end")
    if t1 < t0:
        raise InputError(f"--end {end} is before --start {start}")
    t1 = t1 + dt.timedelta(days=1) - dt.timedelta(seconds=1)  # the end day is included
    window = dt.timedelta(days=window_days)
    sign = None
    if preset.sign:
        try:
            import planetary_computer
        except ImportError:
            raise ConfigError("provider planetary-computer needs its hrefs signed: "
                              "pip install 'zoomsr[stac]' (or planetary-computer)") from None
        sign = planetary_computer.sign

    try:
        from pystac_client import Client
    except ImportError:
        raise ConfigError("zoomsr data search needs pystac-client: pip install pystac-client")\
            from None
    api = url or preset.url
    try:
        client = Client.open(api)
    except Exception as exc:  # noqa: BLE001 - network/HTTP/JSON failures of any kind
        raise SearchError(f"cannot open STAC API {api}: {network_reason(exc, api)}") from None
    hr_items = _search(client, api, hr_collection or preset.highres, bbox, t0, t1, max_items,
                       sign)
    s2_items = _search(client, api, s2_collection or preset.sentinel2, bbox, t0 - window,
                       t1 + window, max_items, sign)
    s2 = [s2_entry(i) for i in s2_items]
    if max_scene_cloud is not None:
        s2 = [e for e in s2 if e["cloud_cover"] is None or e["cloud_cover"] <= max_scene_cloud]
    hr = [hr_entry(i) for i in hr_items]
    s2.sort(key=lambda e: (e["datetime"] or "", e["id"]))
    hr.sort(key=lambda e: (e["datetime"] or "", e["id"]))
    query = {"url": api, "bbox": list(bbox), "start": start, "end": end,
             "window_days": window_days, "sentinel2_collection": s2_collection or preset.sentinel2,
             "highres_collection": hr_collection or preset.highres,
             "max_scene_cloud": max_scene_cloud}
    path = write_manifest(target, s2, hr, generator=f"zoomsr {__version__} data search",
                          query=query)
    return path, len(s2), len(hr)


__all__ = ["PROVIDERS", "Provider", "SearchError", "hr_entry", "network_reason", "parse_bbox",
           "s2_entry", "search_stac"]
