"""The other forms of an English word that text search's stemmer does not join to it.

PostgreSQL's ``english`` configuration (Snowball's Porter2) reads "upgrading" and "upgrade" as
one lexeme ("upgrad"), "releases" and "release" too ("releas"); it leaves a short word's
comparative and superlative as they are ("newer", "newest" are not "new": the "-er" of a short
word is outside the region Porter2 strips it from). A rule that stripped "-er" / "-est" from
every word would join nouns to verbs ("router" to "route", "printer" to "print") and names to
words ("Everest" to "ever"); these forms are therefore read from a list of common English
adjectives that compare with "-er" / "-est" (written from general knowledge, not from any
question set) and the irregular ones. Adjectives whose comparative is also a thing's name
or another word ("cleaner", "cooler", "lighter", "dryer", "dimmer", "thinner", "warmer",
"stranger", "tamer", "flatter") are left out: a question about a vacuum cleaner is not
about what is clean.
"""

from __future__ import annotations

# Compared with -er / -est, the spelling rules applied by _compared (larger, easier, bigger).
_ADJECTIVES = """
    big bold brief bright broad busy calm cheap clear close cold costly crisp cruel dark dear
    deep dense dull early easy empty faint fair fast fat few fine firm fresh friendly full
    funny gentle glad grand great green happy hard harsh healthy heavy high hot huge humble kind
    large late lazy lean little long loose loud low lucky mild narrow near neat new nice noisy
    odd old plain polite poor pretty proud pure quick quiet rare raw red rich rough rude sad safe
    sane scarce sharp shallow short shy sick simple slim slow small smart smooth soft sore sour
    stable steep stiff strict strong stupid subtle sure sweet tall thick tidy tight
    tiny tough true ugly vague weak wealthy weird wet white wide wild wise young
"""
_IRREGULAR = {
    "better": "good",
    "best": "good",
    "worse": "bad",
    "worst": "bad",
    "further": "far",
    "furthest": "far",
    "farther": "far",
    "farthest": "far",
    "elder": "old",
    "eldest": "old",
}
_VOWELS = "aeiou"


def _compared(adjective: str) -> tuple[str, str]:
    """Its comparative and superlative by English spelling: late → later, easy → easier,
    big → bigger (one vowel before a final consonant other than w, x, y is doubled), new → newer."""
    if adjective.endswith("e"):
        return adjective + "r", adjective + "st"
    if adjective.endswith("y") and len(adjective) > 2 and adjective[-2] not in _VOWELS:
        return adjective[:-1] + "ier", adjective[:-1] + "iest"
    last, before, earlier = adjective[-1], adjective[-2], adjective[-3:-2]
    if (
        last not in _VOWELS + "wxy"
        and before in _VOWELS
        and earlier not in ("", *_VOWELS)
        and sum(c in _VOWELS for c in adjective) == 1
    ):
        return adjective + last + "er", adjective + last + "est"
    return adjective + "er", adjective + "est"


BASE_FORMS: dict[str, str] = {
    form: adjective for adjective in _ADJECTIVES.split() for form in _compared(adjective)
} | _IRREGULAR


def base_form(word: str) -> str | None:
    """The adjective ``word`` compares ("newer" → "new", "best" → "good"), if it is one of the
    listed forms; lower case in, lower case out."""
    return BASE_FORMS.get(word)
