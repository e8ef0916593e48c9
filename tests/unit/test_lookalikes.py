"""Look-alike email addresses and usernames are refused, naming the rule and never the text."""

from __future__ import annotations

import pytest

from db import ValidationError
from db.lookalikes import lookalike_problem
from db.models.user import check_display_name, check_email, check_username, email_key

ALICE = "alice@example.com"

REFUSED_EMAILS = {
    "zero-width space inside": ("ali\u200bce@example.com", "invisible"),
    "soft hyphen inside": ("ali\u00adce@example.com", "invisible"),
    "trailing zero-width space": ("alice@example.com\u200b", "invisible"),
    "leading right-to-left override": ("\u202ealice@example.com", "invisible"),
    "zero-width joiner": ("al\u200dice@example.com", "invisible"),
    "byte-order mark": ("\ufeffalice@example.com", "invisible"),
    "word joiner in the domain": ("alice@exam\u2060ple.com", "invisible"),
    "variation selector": ("alice\ufe0f@example.com", "invisible"),
    "combining grapheme joiner": ("ali\u034fce@example.com", "invisible"),
    "hangul filler": ("alice\u3164@example.com", "invisible"),
    "tag character": ("alice\U000e0041@example.com", "invisible"),
    "left-to-right isolate": ("\u2066alice@example.com", "invisible"),
    "no-break space": ("alice\u00a0@example.com", "format"),
    "Cyrillic a in the local part": ("\u0430lice@example.com", "mixed_script"),
    "Greek omicron in the domain": ("alice@examp\u03bfle.com", "mixed_script"),
    "Cyrillic a in the top-level domain": ("alice@example.c\u043em", "mixed_script"),
    "all-Cyrillic look-alike local part": ("\u0430\u0440\u0440\u04cf\u0435@example.com", "confusable"),
    "all-Cyrillic look-alike domain label": ("alice@\u0430\u0440\u0440\u04cf\u0435.com", "confusable"),
    "all-Greek look-alike": ("\u03bf\u03bd\u03bf@example.com", "confusable"),
    "stacked combining mark": ("alic\u0323e@example.com", "combining_mark"),
}

ACCEPTED_EMAILS = [
    "sam1@example.com", "saml@example.com", "o0O@example.com", "rn@example.com",
    "jos\u00e9@example.com", "je\u0301ro\u0302me@example.com",  # composed by NFKC
    "\u0438\u0432\u0430\u043d@\u043f\u0440\u0438\u043c\u0435\u0440.\u0440\u0444",  # all-Cyrillic, not look-alike
    "\u7530\u4e2d\u305f\u308d\u3046@example.jp", "yamada\u592a\u90ce@example.jp",  # Japanese, with Latin
    "\ud55c\uad6d\uc5b4@example.kr", "\u0928\u092e\u0938\u094d\u0924\u0947@example.in",  # Hangul; Devanagari
    "first.last+tag@sub.example.co.uk",
]


@pytest.mark.parametrize("case", list(REFUSED_EMAILS))
def test_a_look_alike_email_is_refused_naming_the_rule_not_the_address(case: str) -> None:
    address, rule = REFUSED_EMAILS[case]
    with pytest.raises(ValidationError) as refused:
        check_email(address)
    assert (refused.value.field, refused.value.rule) == ("email", rule)
    assert address.strip() not in str(refused.value) and "alice" not in str(refused.value)


@pytest.mark.parametrize("address", ACCEPTED_EMAILS)
def test_real_addresses_in_any_script_are_accepted(address: str) -> None:
    assert check_email(address) == address
    assert lookalike_problem(address) is None


def test_a_full_width_address_needs_no_rule_it_has_the_plain_key() -> None:
    assert email_key("\uff41lice@example.com") == email_key(ALICE)


@pytest.mark.parametrize("username", ["\u0430lice", "ali\u200bce", "\u0430\u0440\u0440\u04cf\u0435"])
def test_look_alike_usernames_are_refused(username: str) -> None:
    with pytest.raises(ValidationError) as refused:
        check_username(username)
    assert refused.value.field == "username"
    assert refused.value.rule in {"invisible", "mixed_script", "confusable", "format"}


@pytest.mark.parametrize("control", ["\u202e", "\u202d", "\u2066", "\u2067", "\u2068", "\u2069", "\u202a",
                                     "\u200f", "\u200e", "\u061c"])
def test_a_display_name_cannot_reorder_what_follows_it(control: str) -> None:
    with pytest.raises(ValidationError):
        check_display_name(f"Ada {control}nivolg")
    assert check_display_name("Ada \u2764\ufe0f \U0001f468\u200d\U0001f469\u200d\U0001f467") is not None


@pytest.mark.parametrize("address", [
    "b\u1d0fb@example.com",   # small capital O
    "\u0251lice@example.com",  # Latin alpha
    "\u0131nfo@example.com",   # dotless i
    "\u0261reg@example.com",   # script g
])
def test_a_latin_letter_made_to_look_like_a_plain_one_is_refused(address: str) -> None:
    assert lookalike_problem(address) is not None
    assert lookalike_problem(address)[0] == "confusable"  # type: ignore[index]


@pytest.mark.parametrize("address", ["bob@example\u3002com", "alice@example\uff61com", "carol@example\u2e3ccom"])
def test_a_dot_look_alike_in_the_domain_is_refused(address: str) -> None:
    problem = lookalike_problem(address)  # (a full-width full stop is NFKC's plain dot: the same address, a Conflict)
    assert problem is not None and problem[0] == "domain_character"


@pytest.mark.parametrize("address", ["bob\U0001d159@example.com", "bob\ufffc@example.com"])
def test_symbols_that_render_as_nothing_count_as_invisible(address: str) -> None:
    assert lookalike_problem(address) == ("invisible", f"contains an invisible or formatting character "
                                                       f"(U+{ord(address[3]):04X})")


@pytest.mark.parametrize("address", ["josé@example.com", "æsir@example.com", "łukasz@example.pl",
                                     "müller@bücher.de", "иван@пример.рф", "a-b.c@ex-ample.co.uk"])
def test_real_letters_and_real_domains_still_pass(address: str) -> None:
    assert lookalike_problem(address) is None
