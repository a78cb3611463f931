"""The typed error hierarchy.

Every error the library raises on purpose derives from :class:`HybridFaceError`. Messages are
written for the person at the keyboard: they name the file, the value and what to do next. The
CLI prints ``error: <message>`` and exits non-zero; the service maps them to JSON 4xx answers
via :attr:`HybridFaceError.http_status`.
"""

from __future__ import annotations


class HybridFaceError(Exception):
    """Base class of every error hybridface raises deliberately."""

    #: HTTP status the service answers with for this error.
    http_status: int = 400
    #: Short machine-readable code used in JSON error bodies.
    code: str = "error"


class ConfigError(HybridFaceError, ValueError):
    """An argument or setting has an invalid value (unknown name, out of range, ...)."""

    code = "invalid_argument"


class OptionError(ConfigError):
    """A search or face option has a value outside its valid set (one line naming both)."""

    http_status = 422
    code = "invalid_option"


class ImageDecodeError(HybridFaceError):
    """A file or upload is not a readable image (corrupt, truncated, empty, too large, ...)."""

    http_status = 422
    code = "bad_image"


class NoFaceError(HybridFaceError):
    """Face detection found no face in an image that needed one."""

    http_status = 422
    code = "no_face"


class DatasetError(HybridFaceError):
    """A dataset folder is missing, empty or lacks what a protocol needs."""

    code = "bad_dataset"


class ModelFileError(HybridFaceError):
    """A model directory or weights file is missing, malformed or fails its integrity check."""

    http_status = 500
    code = "bad_model"


class ModelMismatchError(HybridFaceError):
    """Templates or probes come from a different model (id or dimension) than the gallery."""

    http_status = 409
    code = "model_mismatch"


class GalleryError(HybridFaceError):
    """The gallery file is unusable: not a hybridface gallery, locked, read-only, ..."""

    http_status = 500
    code = "gallery_error"


class EmptyGalleryError(GalleryError):
    """A search was asked of a gallery that has no templates."""

    http_status = 409
    code = "empty_gallery"


class UnknownIdentityError(GalleryError, KeyError):
    """An identity name (or template id) that the gallery does not hold."""

    http_status = 404
    code = "unknown_identity"

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0]) if self.args else "unknown identity"


class EngineError(HybridFaceError):
    """A search engine (thread pool, Ray cluster) failed or could not be reached."""

    http_status = 503
    code = "engine_error"


class MissingDependencyError(HybridFaceError, ImportError):
    """An optional dependency is not installed; the message names the extra to install."""

    http_status = 500
    code = "missing_dependency"


def require(module: str, extra: str):
    """Import ``module`` or raise :class:`MissingDependencyError` naming ``pip install hybridface[extra]``."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise MissingDependencyError(
            f"{module!r} is not installed; install it with: pip install 'hybridface[{extra}]' ({exc})"
        ) from exc


class ConflictError(GalleryError):
    """The request conflicts with the gallery's state (e.g. renaming onto an existing name)."""

    http_status = 409
    code = "conflict"


class CorruptGalleryError(GalleryError):
    """The gallery file is damaged (SQLite integrity check failed or stored vectors are broken)."""

    http_status = 500
    code = "corrupt_gallery"


class InvalidNameError(ConfigError):
    """An identity name that breaks the name rule (`hybridface.gallery.names`)."""

    http_status = 422
    code = "invalid_name"


class SourceError(HybridFaceError):
    """A video source (file, camera, stream URL, folder of frames) cannot be opened or read."""

    http_status = 422
    code = "bad_source"


class SelfCheckError(HybridFaceError):
    """``hybridface fit`` refused to write a fitted gallery that its held-out self-check found worse."""

    http_status = 422
    code = "self_check_failed"
