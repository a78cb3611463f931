"""The one identity-name rule, shared by the store, the CLI and the REST service.

A name is accepted exactly as given or refused with `InvalidNameError`; it is never altered
(no stripping, no normalisation), so two inputs can never be merged silently. A valid name:

* is a non-empty ``str`` of at most `MAX_NAME_LENGTH` (128) code points, already in Unicode NFC;
* has no leading or trailing whitespace;
* holds no control (Cc), format (Cf: zero-width characters, bidi embeddings/overrides/isolates,
  the BOM), surrogate, private-use or unassigned code point, no line/paragraph separator, and no
  path separator (``/``, ``\\``); is not ``.`` or ``..``;
* does not mix scripts beyond what one person's name does (UTS #39 "highly restrictive": one
  script, or Latin with Han + Hiragana/Katakana, Han + Bopomofo, or Han + Hangul; digits,
  punctuation and combining marks count as no script). So ``аlice`` with a Cyrillic ``а`` is
  refused, while ``Zoë``, ``Алиса`` and ``山田 太郎`` are fine.

Decision on confusables: whole-script look-alikes (a name written entirely in one script that
looks like a name in another, e.g. Cyrillic ``сосо`` vs Latin ``coco``) are **allowed**: they
are legitimate names in their own script and refusing them needs the full UTS #39 confusable
tables. Names that differ only by case or width are also allowed (they are different strings).
"""

from __future__ import annotations

import unicodedata

from hybridface.errors import InvalidNameError

__all__ = ["MAX_NAME_LENGTH", "InvalidNameError", "check_identity_name", "name_problem"]

MAX_NAME_LENGTH = 128
_BAD_CATEGORIES = {"Cc": "a control character", "Cf": "an invisible format or bidi character",
                   "Cs": "a surrogate", "Co": "a private-use character", "Cn": "an unassigned code point",
                   "Zl": "a line separator", "Zp": "a paragraph separator"}
_SCRIPTS = frozenset((
    "LATIN", "GREEK", "CYRILLIC", "ARMENIAN", "HEBREW", "ARABIC", "SYRIAC", "THAANA", "NKO", "DEVANAGARI",
    "BENGALI", "GURMUKHI", "GUJARATI", "ORIYA", "TAMIL", "TELUGU", "KANNADA", "MALAYALAM", "SINHALA", "THAI",
    "LAO", "TIBETAN", "MYANMAR", "GEORGIAN", "HANGUL", "ETHIOPIC", "CHEROKEE", "CANADIAN", "OGHAM", "RUNIC",
    "KHMER", "MONGOLIAN", "HIRAGANA", "KATAKANA", "BOPOMOFO", "CJK", "YI", "COPTIC", "TIFINAGH", "JAVANESE",
    "BALINESE", "SUNDANESE", "VAI", "BAMUM", "ADLAM", "GLAGOLITIC", "OSAGE", "CHAM", "TAI",
))
#: Script sets a single name may use besides one script alone (UTS #39 highly restrictive).
_ALLOWED_MIXES = (frozenset({"LATIN", "CJK", "HIRAGANA", "KATAKANA"}), frozenset({"LATIN", "CJK", "BOPOMOFO"}),
                  frozenset({"LATIN", "CJK", "HANGUL"}))


def _script(ch: str) -> str | None:
    """The script of a letter from its Unicode name (``None`` for digits, marks, punctuation)."""
    if not unicodedata.category(ch).startswith("L"):
        return None
    words = unicodedata.name(ch, "").split()
    for w in words:
        if w in _SCRIPTS:
            return w
    if words and words[0] in ("MODIFIER", "IDEOGRAPHIC"):
        return None if words[0] == "MODIFIER" else "CJK"
    return words[0] if words else "UNKNOWN"


def name_problem(name: object) -> str | None:
    """What is wrong with ``name`` as an identity name (one phrase), or ``None`` when it is valid."""
    if not isinstance(name, str):
        return f"must be text, got {type(name).__name__}"
    if not name:
        return "must not be empty"
    if len(name) > MAX_NAME_LENGTH:
        return f"is {len(name)} characters long; the limit is {MAX_NAME_LENGTH}"
    for i, ch in enumerate(name):
        cat = unicodedata.category(ch)
        if cat in _BAD_CATEGORIES:
            return f"contains {_BAD_CATEGORIES[cat]} (U+{ord(ch):04X}) at position {i}; remove it"
        if ch in "/\\":
            return "contains a path separator (/ or \\); remove it"
    if name != name.strip():
        return "has leading or trailing whitespace; remove it"
    if name in (".", ".."):
        return "is reserved"
    if unicodedata.normalize("NFC", name) != name:
        return "is not in Unicode NFC form (composed accents); write it composed"
    scripts = {s for s in map(_script, name) if s}
    if len(scripts) > 1 and not any(scripts <= mix for mix in _ALLOWED_MIXES):
        return f"mixes the scripts {', '.join(sorted(scripts))} (a look-alike of another name?); use one script"
    return None


def check_identity_name(name: object) -> str:
    """Return ``name`` unchanged if it is a valid identity name, else raise `InvalidNameError`."""
    problem = name_problem(name)
    if problem is not None:
        shown = ascii(name) if isinstance(name, str) else type(name).__name__
        raise InvalidNameError(f"identity name {shown[:160]} {problem}")
    return name  # type: ignore[return-value]
