"""PII detection and masking: e-mail addresses, phone numbers, card numbers, IBANs, US social
security numbers and IP addresses.

Each entity is a *candidate* regular expression, kept simple and bounded (every quantifier has
an upper limit and repetitions cannot split the same characters two ways, so matching stays
linear in the text), then a Python *validator* that decides: Luhn for cards, ISO 13616 length
and mod-97 for IBANs, ``ipaddress`` for IPs, the SSA's ranges for SSNs, digit counts and shape
rules for phones (a card starting with 0 only after a word for a card). Detection does not depend on which entities are asked for: every entity is
found, overlaps are resolved (the longer span wins, then the more specific entity), and only
then are the spans filtered, so an SSN never turns into a ``[PHONE]`` because SSNs are off.

Choices worth knowing:

- SSN: ``AAA-GG-SSSS`` and ``AAA GG SSSS`` always; nine bare digits only when "ssn" or "social
  security" starts at most 32 characters *before* them, with no other digit in between (before
  only, so that masking a stream piece by piece gives the same answer as masking it whole).
- PHONE: 7 to 15 digits in groups (``+``/``00`` country code, ``(0)``, ``(area)``, separators
  space . - /, extensions ``x123``/``ext. 123``). A bare run of digits is a phone only as a
  valid NANP number (10 digits, or 11 starting with 1); two plain groups ("555 1234") only
  after a word like "phone", "call" or "mobile", the same way as bare SSNs, or labelled by a
  phone noun right after them ("781 1704 office", which also makes a bare run of 10-15 digits
  a phone: "3660170548-Fax"), or as a local number alone ("668 5702.": three digits starting
  2-9, one space, four that are no year, no word after it); dates, decimals,
  IP-, version- and SSN-shaped groups and runs of years are not phones, nor are ranges and
  ratios of numbers ("1457.60-2761.80", "330 000-701 200", "378/100 000"). Rows of numbers
  that no national format writes (eight digits or fewer in small groups, progressions, round
  numbers, amounts ending in 000, table rows: "sizes 100 200 300 400", "timings 10 30 45 60")
  need a phone word as two plain groups do; four pairs ("12 34 56 78", Danish and Norwegian)
  need none. Other runs of numbers totalling 7+ digits in 3+ groups are masked: we err
  towards masking.
- IP_ADDRESS: IPv6 needs a decimal digit and three hex digits, so ``std::map``, ``dead::beef``
  and slices like ``[1::2]`` stay; "version 1.2.3.4" is a valid dotted quad and is masked.
  Loopback and unspecified addresses (``127.0.0.1``, ``0.0.0.0``) name no one's machine and
  stay: "serve on http://127.0.0.1:8000" read "http://[IP_ADDRESS]:8000" in answers. Log
  lines also keep addresses of private networks (10/8, 172.16/12, 192.168/16, link-local,
  fc00::/7): the operator's own hosts there (``data.private_network_address``).
- EMAIL: addresses with a letters-only top-level domain. In text with non-ASCII characters,
  the local part and the domain may have letters of any script written with spaces between
  words (internationalised addresses and domains: "jörg.müller@bücher.de", "иван@пример.рф");
  letters of scripts written without them (Han, kana, Hangul, Thai, ...) never join an
  address, so "メールはjohn@example.comです" keeps its words.
- EMAIL written out: "john.doe at example dot com", "john(at)example(dot)com", "john [at]
  example [dot] com", "john@example dot com", "john @ example.com", "j.doe[@]example[.]com",
  "juan arroba ejemplo punto es" (at: at, ät, arobase, arroba, chiocciola; dot: dot, punkt,
  punto, and bracketed also point, punt, "."), the local part's dots written out too. A
  bracketed separator, or "@" with a dot written out, is an address whatever the words;
  "at" as a bare word (or "@" between spaces) only when neither the word before it nor the
  domain's first label is a common English word ("look at the dot com boom", "available at
  amazon dot com") and the top-level domain has two letters (after "period", two that are no
  common word) or is a common one; with the dots plain ("john at example.com") also only
  after an e-mail word ("email", "mail", "contact", "address", ...) at most 32 characters
  before: "look at example.com" is a bare domain.
- Digits typed one by one or in odd groups: 7-20 groups of 1-4 digits with one separator (a
  space or a hyphen). 12-19 digits passing Luhn in 8 groups or more are a card; 7-15 digits
  in 8 groups or more, or one by one, a phone number; counting ("1 2 3 4 5 6 7"), bits, one
  digit repeated, dates and years are neither, and a longer run (a table row) is no number.
  An IBAN typed one character at a time ("D E 8 9 3 7 ...") is checked like any other.

Text with any non-ASCII character is also searched in a *folded* copy, made for detection only:
invisible characters (zero-width spaces and joiners, soft hyphens, bidi controls, variation
selectors) and combining marks dropped, every Unicode space a space, every dash and the minus
sign "-", every decimal digit (Arabic-Indic, Devanagari, full-width, ...) its ASCII digit,
full-width and small forms their ASCII character (NFKC, character by character), the ideographic
full stop ".". Spans found in the copy are mapped back to the original characters they came
from, and join the spans found in the text as it stands (so nothing masked before is lost to
the folding: a zero-width space that separates a word from a card number still does); overlaps
are then resolved as usual. ASCII text takes none of this: the folding is never looked at.
"""

from __future__ import annotations

# One module per entity family (email, email_written, card, spaced, iban, ssn, ip, phone), the
# folding of non-ASCII text (fold), the shared scanner (scanner: find, mask), the stream's hold
# (stream: hold_from) and the masking of structured values and log events (data). The names
# below are this package's interface, as they were the single module's; the private ones are
# those the tests look at.
from .card import luhn_ok as luhn_ok
from .data import MAX_DATA_DEPTH as MAX_DATA_DEPTH
from .data import data_depth as data_depth
from .data import mask_data as mask_data
from .data import mask_pii_processor as mask_pii_processor
from .email import _IDN_LETTER as _IDN_LETTER
from .email import _NO_SPACE_LOCAL as _NO_SPACE_LOCAL
from .email import _email_start as _email_start
from .email import _emails as _emails
from .email import _idn_emails as _idn_emails
from .email_written import _WRITTEN as _WRITTEN
from .email_written import _anchored as _anchored
from .fold import _FOLDED_CHARS as _FOLDED_CHARS
from .fold import _fold_char as _fold_char
from .fold import _foldable as _foldable
from .iban import IBAN_LENGTHS as IBAN_LENGTHS
from .iban import iban_ok as iban_ok
from .phone import phone_ok as phone_ok
from .scanner import find as find
from .scanner import holds_no_span as holds_no_span
from .scanner import mask as mask
from .scanner import mask_spans as mask_spans
from .spans import CUE_WINDOW as CUE_WINDOW
from .spans import ENTITIES as ENTITIES
from .spans import MAX_HOLD as MAX_HOLD
from .spans import Span as Span
from .ssn import ssn_ok as ssn_ok
from .stream import _HOLD as _HOLD
from .stream import _HOLD_WRITTEN as _HOLD_WRITTEN
from .stream import _written_hold_start as _written_hold_start
from .stream import hold_from as hold_from
