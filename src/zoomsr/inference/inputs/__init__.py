"""Finding, grouping and validating the Sentinel-2 rasters of a scene, and their radiometry.

A *frame* is one date: either one multi-band RGB raster (ESA's 8-bit TCI, or a 3+ band
reflectance stack) or three single-band files (B04, B03, B02). Inputs may be files, folders
or manifests (``.txt``: one frame per line, band files of one frame separated by commas;
``.json``: a list of paths or of ``{"tci": path}`` / ``{"red": .., "green": .., "blue": ..}``).

Every frame is converted to the radiometry the published models were trained on: ESA's
8-bit true-colour image (TCI) divided by 255. Digital numbers (DN, reflectance x 10000) and
float reflectance are mapped with the TCI stretch measured on a real L2A scene
(TCI ~= 255 * reflectance / 0.25, clipped); anything else is refused with a message.

A frame may also carry, from files of the same date (same name but for the band token, or
``b08``/``scl``... keys in a JSON manifest, or labelled bands of a multi-band file):

- the extra bands a band-variant model takes (``b08``; the 20 m and 60 m bands), as in
  training: reflectance x 10000 / 8160, clipped to [0, 1];
- a cloud layer (L2A's scene classification ``SCL``, else L1C's ``MSK_CLASSI``), used to
  prefer cloud-free dates per window.

Modules: :mod:`.files` (which files make the frames), :mod:`.rasters` (opening, decimated
looks), :mod:`.metadata` (level, baseline, DN offset), :mod:`.radiometry` (value mapping and
refusals), :mod:`.frame` (the frame types), :mod:`.discover` (:func:`discover_frames`).
"""

from zoomsr.inference.inputs.discover import discover_frames
from zoomsr.inference.inputs.files import (
    EXTRA_BAND_TOKENS,
    MANIFEST_SUFFIXES,
    RASTER_SUFFIXES,
    is_s2naip_input,
    is_s2naip_root,
    made_by_zoomsr,
)
from zoomsr.inference.inputs.frame import AuxBand, Discovery, Frame
from zoomsr.inference.inputs.radiometry import (
    BASELINE_OFFSET,
    DN_SCALE,
    RADIOMETRY_CHOICES,
    TCI_SATURATION,
    Radiometry,
    check_dn_offset,
    to_band16,
    to_tci,
    valid_pixels,
)

__all__ = [
    "BASELINE_OFFSET", "DN_SCALE", "EXTRA_BAND_TOKENS", "MANIFEST_SUFFIXES", "RADIOMETRY_CHOICES",
    "RASTER_SUFFIXES", "TCI_SATURATION", "AuxBand", "Discovery", "Frame", "Radiometry",
    "check_dn_offset", "discover_frames", "is_s2naip_input", "is_s2naip_root",
    "made_by_zoomsr", "to_band16",
    "to_tci", "valid_pixels",
]
