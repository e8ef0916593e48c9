"""Look-alike identifiers: text that displays as another text although its characters differ.

An email address or a username is refused (``lookalike_problem`` names the rule) when it:

1. ``invisible``: holds a character that shows nothing or changes how the rest is shown: controls, format
   characters (zero-width space and joiners, the soft hyphen, bidirectional embeddings, overrides and isolates,
   the byte-order mark, tag characters), separators, variation selectors and the other default-ignorable code
   points, private-use, surrogate and unassigned code points. ``ali\\u200bce`` and ``\\u202ealice`` are refused.
2. ``combining_mark``: keeps a generic combining mark after NFKC composition (``c`` + COMBINING DOT BELOW), which
   stacks on a letter to look like another letter. Precomposed letters (``é``) and the marks of the scripts that
   need them (Devanagari vowel signs, ...) are fine.
3. ``mixed_script``: mixes scripts within one part (the local part, or one label of the domain), as UTS #39's
   "highly restrictive" level defines it: one script, or Latin with Han and Japanese kana, Han and Bopomofo, or
   Han and Hangul. Digits and punctuation (the Common script) go with anything. ``\\u0430lice``, with a
   Cyrillic first letter, is refused.
4. ``confusable``: is written in one non-Latin script whose every letter looks like an ASCII letter (UTS #39
   whole-script confusable with Latin): all-Cyrillic ``\\u0430\\u0440\\u0440\\u04cf\\u0435`` passes for
   ``apple``. Browsers treat such domain labels the same way.

Why not uniqueness on the UTS #39 skeleton instead: the skeleton folds ``l``, ``1`` and ``I``, ``0`` and ``O``,
``rn`` and ``m``, so ``sam1@`` and ``saml@``, two real and distinct mailboxes, could not both register. Rules 1-4
refuse only text that is built to deceive; plain ASCII addresses, whatever their letters, stay distinct.
Full-width and other compatibility forms need no rule: NFKC folds them into the key (full-width
``\\uff41lice`` is ``alice``).

The script of a character and its look-alikes come from the Unicode data bundled with ``confusable_homoglyphs``.
"""

from __future__ import annotations

import functools
import unicodedata
from collections.abc import Iterator

_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zs", "Zl", "Zp"})
# Default_Ignorable_Code_Point characters that are not format characters (Cf), and the blank braille pattern.
_IGNORABLE = frozenset(
    [0x034F, 0x115F, 0x1160, 0x17B4, 0x17B5, 0x2800, 0x3164, 0xFFA0, *range(0x180B, 0x1810),
     *range(0xFE00, 0xFE10), *range(0xE0100, 0xE01F0),
     0x1D159, 0xFFFC]  # symbols that render as nothing: the musical null notehead, the object replacement mark
)
_NEUTRAL = frozenset({"COMMON", "INHERITED"})
_ALLOWED_MIXES = (
    frozenset({"LATIN", "HAN", "HIRAGANA", "KATAKANA"}),
    frozenset({"LATIN", "HAN", "BOPOMOFO"}),
    frozenset({"LATIN", "HAN", "HANGUL"}),
)


def lookalike_problem(text: str) -> tuple[str, str] | None:
    """``(rule, reason)`` if ``text`` (an email address or a username) could pass for another; None if not.

    The reason names characters by code point and scripts by name, never the text itself.
    """
    for char in text:
        if is_invisible(char):
            return "invisible", f"contains an invisible or formatting character (U+{ord(char):04X})"
    normalized = unicodedata.normalize("NFKC", text)
    for part in _parts(normalized):
        problem = _part_problem(part)
        if problem is not None:
            return problem
    return _domain_problem(normalized)


def is_invisible(char: str) -> bool:
    return unicodedata.category(char) in _INVISIBLE_CATEGORIES or ord(char) in _IGNORABLE


def _parts(text: str) -> Iterator[str]:
    local, at, domain = text.rpartition("@")
    if not at:
        yield text
        return
    yield local
    yield from domain.split(".")


def _domain_problem(text: str) -> tuple[str, str] | None:
    """A domain holds letters, digits, hyphens and dots only: an ideographic or full-width full stop is a label
    separator to IDNA (the same mailbox, another key here), and other dots only look like one."""
    _, at, domain = text.rpartition("@")
    for char in domain if at else "":
        if char not in "-." and not unicodedata.category(char).startswith(("L", "N", "M")):
            return "domain_character", f"the domain holds a character that is not a letter, digit, hyphen or dot " \
                                       f"(U+{ord(char):04X})"
    return None


def _part_problem(part: str) -> tuple[str, str] | None:
    scripts = {_script(char) for char in part}
    if "INHERITED" in scripts and any(unicodedata.category(c) == "Mn" and _script(c) == "INHERITED" for c in part):
        return "combining_mark", "holds a combining mark that does not form a letter of its own"
    named = scripts - _NEUTRAL
    if len(named) > 1 and not any(named <= mix for mix in _ALLOWED_MIXES):
        return "mixed_script", f"mixes scripts within one part ({', '.join(sorted(named)).title()})"
    if len(named) == 1 and named != {"LATIN"} and _looks_latin(part):
        script = next(iter(named)).title()
        return "confusable", f"is written in {script} letters that all look like Latin ones"
    for char in part:
        if not char.isascii() and _script(char) == "LATIN" and _is_ascii_lookalike(char):
            return "confusable", f"holds a Latin letter made to look like a plain one (U+{ord(char):04X})"
    return None


@functools.lru_cache(maxsize=4096)
def _is_ascii_lookalike(char: str) -> bool:
    """A Latin letter with no accent of its own that reads as one ASCII letter: the Latin alpha, the dotless i, the
    script g, small capitals. Accented letters (é) and ligatures (æ) are letters in their own right and pass."""
    if unicodedata.decomposition(char):
        return False
    from confusable_homoglyphs import confusables  # noqa: PLC0415 - its data loads on first use, not at import

    found = confusables.is_confusable(char, greedy=True, preferred_aliases=[]) or []
    return any(len(double["c"]) == 1 and double["c"].isascii() and double["c"].isalnum()
               for entry in found for double in entry["homoglyphs"])


def _looks_latin(part: str) -> bool:
    letters = [char for char in part if unicodedata.category(char).startswith("L")]
    return bool(letters) and all(_has_latin_double(char) for char in letters)


@functools.lru_cache(maxsize=4096)
def _script(char: str) -> str:
    from confusable_homoglyphs import categories  # noqa: PLC0415 - its data loads on first use, not at import

    return str(categories.alias(char))


@functools.lru_cache(maxsize=4096)
def _has_latin_double(char: str) -> bool:
    """Whether the character looks like a plain ASCII letter or digit (as Cyrillic ``\\u0430`` looks like ``a``).

    Look-alikes among rare Latin letters (Cyrillic ``\\u0444`` and Latin phi) do not count: nobody reads those as
    an address in the Latin alphabet.
    """
    from confusable_homoglyphs import confusables  # noqa: PLC0415 - as above

    found = confusables.is_confusable(char, preferred_aliases=["latin"]) or []
    return any(double["c"].isascii() and double["c"].isalnum() for entry in found for double in entry["homoglyphs"])


__all__ = ["is_invisible", "lookalike_problem"]
