"""hybridface: 1:N face identification with a compressed CNN, LBG indexing and parallel search.

    import hybridface as hf
    g = hf.open_gallery("people.db", create=True)
    g.enroll_folder("people/")                 # <identity>/<images>, faces detected
    r = g.identify("probe.jpg")                # one input -> one result; a list -> a list
    print(r.identity, r.distance)

Importing the package has no side effects: no model is loaded and no file is written. The
public API is re-exported lazily from the sub-modules that own it.
"""

from __future__ import annotations

from hybridface.lazy import lazy_exports

__version__ = "0.1.0"

_EXPORTS = {
    # the facade
    "open_gallery": "hybridface.api",
    "load_encoder": "hybridface.api",
    "verify": "hybridface.api",
    "Gallery": "hybridface.api",
    "SearchOptions": "hybridface.options",
    "DEFAULTS": "hybridface.options",
    # results
    "EnrollReport": "hybridface.results",
    "Identification": "hybridface.results",
    "Verification": "hybridface.results",
    "Calibration": "hybridface.gallery.calibration",
    # errors
    "HybridFaceError": "hybridface.errors",
    "ConfigError": "hybridface.errors",
    "OptionError": "hybridface.errors",
    "ImageDecodeError": "hybridface.errors",
    "NoFaceError": "hybridface.errors",
    "ModelFileError": "hybridface.errors",
    "ModelMismatchError": "hybridface.errors",
    "GalleryError": "hybridface.errors",
    "EmptyGalleryError": "hybridface.errors",
    "UnknownIdentityError": "hybridface.errors",
    "EngineError": "hybridface.errors",
    # interfaces
    "Encoder": "hybridface.models.base",
    "Searcher": "hybridface.search.base",
    "SearchResult": "hybridface.search.base",
    "TemplateMatrix": "hybridface.gallery.matrix",
}


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)


__all__ = ["__version__", *_EXPORTS]
