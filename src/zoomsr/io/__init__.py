"""File I/O helpers: atomic writes and image (PNG) reading/writing with clear errors."""

from zoomsr.io.atomic import atomic_path, atomic_write_text, refuse_existing
from zoomsr.io.png import read_png, write_png

__all__ = ["atomic_path", "atomic_write_text", "read_png", "refuse_existing", "write_png"]
