"""The languages the server reads: one table of their codes, Genie's names for them and the spellings accepted.

Inside the project a language is always its code (`ja`, `zh`, `en`, `ko`): in requests, usage, script runs,
voices and their references. Genie's name ("Japanese") is only what its G2P is called with and what a voice's
status line shows. The same spellings are accepted in a reference's `config.json` and in a request's
`language`, in any ASCII case.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Language:
    code: str
    name: str  # Genie's
    spellings: tuple[str, ...]  # accepted besides the code, lower case


LANGUAGES = (
    Language("ja", "Japanese", ("japanese", "jp")),
    Language("zh", "Chinese", ("chinese",)),
    Language("en", "English", ("english",)),
    Language("ko", "Korean", ("korean",)),
)
CODES = tuple(language.code for language in LANGUAGES)
NAMES = {language.code: language.name for language in LANGUAGES}
#: Every accepted spelling (lower case) -> its code.
SPELLINGS = {spelling: language.code for language in LANGUAGES for spelling in (language.code, *language.spellings)}


def language_code(value: str) -> str | None:
    """The code of an accepted spelling in any ASCII case ('Japanese', 'JP', 'zh'); None for anything else."""
    if not value.isascii():  # str.lower() folds a few non-ASCII letters onto ASCII ones (the Kelvin sign on 'k')
        return None
    return SPELLINGS.get(value.lower())


def language_spellings() -> str:
    """The accepted spellings, for an error message: 'ja, zh, en, ko (or japanese, jp, chinese, ...; any case)'."""
    others = [spelling for language in LANGUAGES for spelling in language.spellings]
    return f"{', '.join(CODES)} (or {', '.join(others)}; any case)"
