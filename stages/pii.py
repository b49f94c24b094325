"""PII redaction: emails, phone numbers, public IP addresses, credit cards, IBANs, US SSNs and secrets
are replaced by typed placeholders (``<EMAIL>``, ``<PHONE>``, ``<IP>``, ``<CREDIT_CARD>``, ``<IBAN>``,
``<US_SSN>``, ``<SECRET>``), counted per type.

How, for a batch: each rule (``RULES``, applied in order, so that an IBAN is gone before the phone
rule looks at its digits) finds candidates with one polars regex, marks them in the text with a
sentinel character and splits there, so every candidate becomes a row of its own next to the text
before and after it. The candidates are then checked as columns (Luhn and mod-97 checksums, number
ranges, the characters around them) and the valid ones replaced; texts are joined back only where
something was replaced. A rule's pattern has a group named ``hit`` (what is replaced) and may have
``pre``/``post`` groups of context that stay.

What counts (``docs/operators.md`` has the exact rules): an IP address is public (private, loopback,
link-local, shared, benchmarking, documentation, multicast and reserved ranges are not PII); a card
number passes Luhn and has a known issuer prefix and length; an IBAN has its country's length and
mod-97 remainder 1; an SSN has a valid area, group and serial; a phone number is written as an
international (+, 00), North American or national (leading 0) number with separators; secrets are
private key blocks and tokens with a known prefix (AWS, Google, GitHub, Slack, Stripe, JWT), or a
40-character AWS secret after its key name.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field

import polars as pl

from corpus.operators import MapOperator, StageView

KINDS = ("email", "phone", "ip", "credit_card", "iban", "us_ssn", "secret")
# Noncharacters (never in interchange text) that mark candidates; the first one absent from a batch is used.
SENTINELS = tuple(chr(c) for c in range(0xFDD0, 0xFDF0))

Check = Callable[[pl.DataFrame], pl.Expr]


@dataclass(frozen=True)
class Rule:
    kind: str
    # polars (Rust) regex with a group named `hit`; all else it matches must be in groups `pre` or `post`
    # (kept as they are): the rest of a match is not written back
    pattern: str
    check: Check | None = None  # hits frame (hit, before, after, context) -> keep expression


# ---------------------------------------------------------------- checks (polars expressions over the hits)

HIT, BEFORE, AFTER, CONTEXT = pl.col("hit"), pl.col("before"), pl.col("after"), pl.col("context")


# Letters and digits that glue a hit into a longer token. ASCII only: in Chinese or Japanese text an
# address or a number often touches the words around it without a space.
WORD = "0-9A-Za-z_"


def _isolated(before_bad: str, after_bad: str) -> pl.Expr:
    """The hit is not part of a longer token: the characters around it are not in these classes, and it
    is not followed by a dot and a digit (a longer version number, a decimal)."""
    return (~BEFORE.str.contains(f"^[{before_bad}]") & ~AFTER.str.contains(f"^[{after_bad}]")
            & ~AFTER.str.contains(r"^[.,]\d"))


def _digits() -> pl.Expr:
    return HIT.str.replace_all(r"\D", "")


def luhn_ok(digits: pl.Expr) -> pl.Expr:
    """Luhn checksum of a digit string: double every second digit from the right."""
    d = digits.str.reverse().str.split("").list.eval(pl.element().cast(pl.Int32))
    doubled = pl.element() * 2 - 9 * (pl.element() >= 5).cast(pl.Int32)
    total = d.list.eval(pl.when(pl.int_range(pl.len()) % 2 == 1).then(doubled).otherwise(pl.element())).list.sum()
    return total % 10 == 0


# Issuer prefixes (IIN) and lengths: Visa, Mastercard, American Express, Discover, JCB, Diners, UnionPay.
CARD_ISSUERS = (
    (r"4", (13, 16, 19)),
    (r"5[1-5]|2(?:2[2-9][1-9]|2[3-9]\d|[3-6]\d\d|7[01]\d|720)", (16,)),
    (r"3[47]", (15,)),
    (r"6011|65|64[4-9]", (16, 17, 18, 19)),
    (r"35(?:2[89]|[3-8]\d)", (16, 17, 18, 19)),
    (r"3(?:0[0-5]|[689])", (14, 15, 16, 17, 18, 19)),
    (r"62", (16, 17, 18, 19)),
)


def _card(_: pl.DataFrame) -> pl.Expr:
    d = _digits()
    issuer = pl.lit(False)
    for prefix, lengths in CARD_ISSUERS:
        issuer = issuer | (d.str.contains(f"^(?:{prefix})") & d.str.len_chars().is_in(lengths))
    return _isolated(f"{WORD}-", f"{WORD}-") & issuer & luhn_ok(d) & _same_separator()


def _same_separator() -> pl.Expr:
    """Separators, if any, are all one character (4111-1111 1111-1111 is not how anyone writes a number)."""
    seps = HIT.str.extract_all(r"\D")
    return seps.list.n_unique() <= 1


# IBAN length per country (SWIFT IBAN registry).
IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BR": 29,
    "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28, "EE": 20, "EG": 29,
    "ES": 24, "FI": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28,
    "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20,
    "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27, "MD": 24, "ME": 22, "MK": 19,
    "MR": 27, "MT": 31, "MU": 30, "NL": 18, "NO": 15, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29,
    "RO": 24, "RS": 22, "SA": 24, "SC": 31, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "ST": 25, "SV": 28,
    "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
}
_LETTERS = [chr(c) for c in range(ord("A"), ord("Z") + 1)]


def mod97(numeric: pl.Series) -> pl.Series:
    """Digit strings modulo 97, seven digits at a time (the remainder times 10**7 stays within int64)."""
    r = pl.Series([0] * numeric.len(), dtype=pl.Int64)
    longest = int(numeric.str.len_chars().max() or 0)
    for start in range(0, longest, 7):
        chunk = numeric.str.slice(start, 7)
        scale = chunk.str.len_chars().replace_strict({i: 10**i for i in range(8)}, return_dtype=pl.Int64)
        r = (r * scale + chunk.cast(pl.Int64, strict=False).fill_null(0)) % 97
    return r


def _iban(hits: pl.DataFrame) -> pl.Expr:
    compact = hits["hit"].str.replace_all(" ", "")
    want = compact.str.slice(0, 2).replace_strict(IBAN_LENGTHS, default=0, return_dtype=pl.Int64)
    moved = compact.str.slice(4) + compact.str.slice(0, 4)
    numeric = moved.str.replace_many(_LETTERS, [str(10 + i) for i in range(26)])
    return _isolated(f"{WORD}", f"{WORD}") & pl.lit((compact.str.len_chars() == want) & (mod97(numeric) == 1))


# Numbers the SSA never issued but that circulate (advertising, examples).
SSN_NEVER_ISSUED = ("078051120", "219099999", "123456789")


def _ssn(_: pl.DataFrame) -> pl.Expr:
    d = _digits()
    area, group, serial = d.str.slice(0, 3), d.str.slice(3, 2), d.str.slice(5, 4)
    return (_isolated(f"{WORD}-", f"{WORD}-") & (area != "000") & (area != "666") & ~area.str.starts_with("9")
            & (group != "00") & (serial != "0000") & ~d.is_in(SSN_NEVER_ISSUED) & _same_separator())


# IPv4 ranges that are not one host's public address (IANA special-purpose registry: this network,
# private, shared, loopback, link-local, IETF protocol, documentation, 6to4 relay, benchmarking,
# multicast, reserved, broadcast).
NON_PUBLIC_V4 = ("0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
                 "192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16", "198.18.0.0/15",
                 "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4")
_V4_RANGES = [(int(n.network_address), int(n.broadcast_address)) for n in map(ipaddress.IPv4Network, NON_PUBLIC_V4)]


def public_ipv4(value: int) -> bool:
    return not any(lo <= value <= hi for lo, hi in _V4_RANGES)


def _ipv4(_: pl.DataFrame) -> pl.Expr:
    octets = HIT.str.split(".")
    well_formed = ~HIT.str.contains(r"(?:^|\.)0\d")  # a leading zero: a version or a code, not an address
    n = octets.list.eval(pl.element().cast(pl.Int64))
    in_range = n.list.max() <= 255
    value = sum((n.list.get(i) * (1 << (8 * (3 - i))) for i in range(4)), pl.lit(0, pl.Int64))
    public = pl.lit(True)
    for lo, hi in _V4_RANGES:
        public = public & ~value.is_between(lo, hi)
    return _isolated(f"{WORD}.", f"{WORD}") & well_formed & in_range & public


# IPv6: global unicast (2000::/3), less documentation (2001:db8::/32, 3fff::/20) and IETF protocol
# assignments (2001::/23). Anything else (link-local, unique local, multicast, mapped) is not a host's
# public address.
NON_PUBLIC_V6 = tuple(map(ipaddress.IPv6Network, ("2001:db8::/32", "3fff::/20", "2001::/23")))
GLOBAL_V6 = ipaddress.IPv6Network("2000::/3")


def public_ipv6(text: str) -> bool:
    try:
        ip = ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return ip in GLOBAL_V6 and not any(ip in n for n in NON_PUBLIC_V6)


def _ipv6(hits: pl.DataFrame) -> pl.Expr:
    # Parsing IPv6 (with "::" and its forms) is the ipaddress module's job; candidates are few.
    public = pl.Series([public_ipv6(h) for h in hits["hit"]], dtype=pl.Boolean)
    return _isolated(f"{WORD}:.", f"{WORD}:") & pl.lit(public) & (HIT.str.count_matches(":") >= 2)


# Words before a number that make it a code, not a phone number; digits just before it (it is the tail
# of a longer number); or the start of an IBAN whose checksum failed (its digit groups look like an
# international number).
PHONE_CONTEXT = (r"(?:\b(?i:isbn|sku|part|model|item|order|invoice|serial|ref|code|id|lot|batch|no)\b|#)\W*$"
                 r"|\d[ .-]?$|\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4})* ?$")
_INTL = r"(?:\+|\b00)[1-9]\d{0,2}(?:[ .-]?\(\d{1,4}\))?(?:[ .-]?\d{1,5}){2,5}"
_NANP = r"(?:\b1[ .-]?)?(?:\(\d{3}\)[ .-]?|\b\d{3}[ .-])\d{3}[ .-]\d{4}\b"
_TRUNK = r"(?:\(0\d{1,4}\)[ .-]?\d{2,8}|\b0\d{1,4}[ .-]\d{2,8})(?:[ .-]\d{2,8}){0,3}\b"


def _phone(_: pl.DataFrame) -> pl.Expr:
    d = _digits()
    n = d.str.len_chars()
    intl = HIT.str.contains(r"^(?:\+|00[1-9])")
    trunk = HIT.str.contains(r"^\(?0[1-9]")
    # North American numbers: area code and exchange start with 2-9
    local = d.str.slice(pl.when(n == 11).then(1).otherwise(0), 10)
    size = (pl.when(intl).then(n.is_between(8, 15 + 2 * HIT.str.starts_with("00").cast(pl.Int64)))
            .when(trunk).then(n.is_between(9, 12))
            .otherwise(~HIT.str.starts_with("0") & local.str.contains(r"^[2-9]\d\d[2-9]")))
    other_shape = HIT.str.contains(r"^\d{3}-\d{2}-\d{4}$|^\d{1,3}(?:\.\d{1,3}){3}$")  # an SSN, an IPv4 address
    return _isolated(f"{WORD}/#.+-", f"{WORD}/-") & size & ~other_shape & ~CONTEXT.str.contains(PHONE_CONTEXT)


def _email(_: pl.DataFrame) -> pl.Expr:
    local, domain = HIT.str.extract(r"^([^@]+)@"), HIT.str.extract(r"@(.+)$")
    tld = domain.str.extract(r"\.([^.]+)$").str.to_lowercase()
    # Lengths here, not as bounded repeats in the pattern: those, of Unicode classes, made the regex
    # 100x slower. RFC 5321: a local part of at most 64 octets, domain labels of at most 63.
    too_long = (local.str.len_bytes() > 64) | domain.str.contains(r"[^.]{64}")
    return (_isolated(f"{WORD}.%+-", f"{WORD}@-") & ~too_long & ~local.str.contains(r"\.\.|\.$")
            & ~tld.is_in(FILE_EXTENSIONS))


# Endings that make `name@2x.png` look like an address; no such top-level domains exist.
FILE_EXTENSIONS = ("png", "jpg", "jpeg", "gif", "svg", "webp", "bmp", "ico", "css", "js", "json", "xml", "txt",
                   "pdf", "html", "htm", "php", "py", "md", "yaml", "yml", "tif", "tiff", "mp3", "mp4", "wav")


def _token(_: pl.DataFrame) -> pl.Expr:
    """The token ends where its alphabet ends (a longer run is something else)."""
    return ~AFTER.str.contains(r"^[0-9A-Za-z_-]")


# ---------------------------------------------------------------- rules, in order

_TOKENS = "|".join((
    r"(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}",  # AWS access key id
    r"AIza[0-9A-Za-z_-]{35}",  # Google API key
    r"GOCSPX-[0-9A-Za-z_-]{28}",  # Google OAuth client secret
    r"(?:ghp|gho|ghu|ghs|ghr)_[0-9A-Za-z]{36}",  # GitHub tokens
    r"github_pat_[0-9A-Za-z_]{82}",  # GitHub fine-grained token
    r"xox[baprs]-[0-9A-Za-z-]{10,72}",  # Slack tokens
    r"(?:sk|rk)_(?:live|test)_[0-9A-Za-z]{24,99}",  # Stripe secret and restricted keys
    r"eyJ[0-9A-Za-z_-]{10,}\.eyJ[0-9A-Za-z_-]{10,}\.[0-9A-Za-z_-]{10,}",  # JSON web token
))

# Email addresses (RFC 5322 dot-atom local part, with the letters and digits of any script as RFC 6531
# allows; Unicode domain labels as IDNA allows). Scripts written without spaces between words (Thai,
# Lao, Tibetan, Myanmar, Khmer, CJK and Yi, full-width forms) are left out: there a word touching an
# address is the sentence around it ("请联系ann@example.com"), not part of the address.
_NO_SPACE_SCRIPTS = ("\u0e00-\u0fff\u1000-\u109f\u1780-\u17ff\u2e80-\ua4cf\uf900-\ufaff\uff00-\uffef"
                     "\U00020000-\U0003ffff")
_ALNUM = f"[^\\W_{_NO_SPACE_SCRIPTS}]"
# atext's punctuation but ! # $ & ' * / = ? ^ ` { | } ~: they delimit addresses in markup, quotes, paths
# and query strings (**a@b.com**, 'a@b.com', ?to=a@b.com) far more often than they occur in one
_LOCAL_CHAR = f"(?:[^\\W{_NO_SPACE_SCRIPTS}]|[%+-])"
_LABEL = rf"{_ALNUM}(?:(?:{_ALNUM}|-)*{_ALNUM})?"
# An ASCII top-level domain ends at a word boundary; an internationalised one (.рф) is letters only
_TLD = rf"(?:[A-Za-z]{{2,24}}\b|[^\W\d_A-Za-z{_NO_SPACE_SCRIPTS}]{{2,24}})"

ASCII_BOUNDARY = r"(?-u:\b)"


def _ascii_boundaries(rules: tuple[Rule, ...]) -> tuple[Rule, ...]:
    """Word boundaries as ASCII's, as ``WORD``: Unicode ones would also send Rust's regex engine to a slow
    path on non-ASCII text (15x on Cyrillic)."""
    return tuple(Rule(r.kind, r.pattern.replace(r"\b", ASCII_BOUNDARY), r.check) for r in rules)


RULES: tuple[Rule, ...] = _ascii_boundaries((
    Rule("secret", r"(?P<hit>-----BEGIN[A-Z ]*PRIVATE KEY(?: BLOCK)?-----(?s:.*?)-----END[A-Z ]*PRIVATE KEY"
                   r"(?: BLOCK)?-----)"),
    Rule("secret", rf"\b(?P<hit>{_TOKENS})", _token),
    Rule("secret", r"(?P<pre>https://hooks\.slack\.com/services/)(?P<hit>T[0-9A-Z]{8,12}/B[0-9A-Z]{8,12}/[0-9A-Za-z]{24})"),
    Rule("secret", r"(?P<pre>(?i:aws_?secret_?(?:access_?)?key)[\"']?\s*[:=]>?\s*[\"']?)(?P<hit>[0-9A-Za-z/+]{40})"
                   r"(?P<post>[^0-9A-Za-z/+=]|$)"),
    Rule("email", rf"(?P<hit>{_LOCAL_CHAR}(?:{_LOCAL_CHAR}|\.)*@(?:{_LABEL}\.)+{_TLD})", _email),
    Rule("iban", r"\b(?P<hit>[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?)\b", _iban),
    Rule("credit_card", r"\b(?P<hit>\d(?:[ -]?\d){11,18})\b", _card),
    Rule("us_ssn", r"\b(?P<hit>\d{3}-\d{2}-\d{4}|\d{3} \d{2} \d{4})\b", _ssn),
    Rule("ip", r"(?P<hit>\b[0-9A-Fa-f]{1,4}(?:::?[0-9A-Fa-f]{1,4}){2,7}(?:::)?)", _ipv6),
    Rule("ip", r"\b(?P<hit>(?:\d{1,3}\.){3}\d{1,3})\b", _ipv4),
    Rule("phone", rf"(?P<hit>{_INTL}|{_NANP}|{_TRUNK})", _phone),
))

CONTEXT_CHARS = 16  # text before a hit that a check may look at (product-code words before a phone number)


# ---------------------------------------------------------------- engine


def _sentinel(text: pl.Series) -> str:
    for s in SENTINELS:
        if not text.str.contains(s, literal=True).any():
            return s
    raise ValueError("every sentinel noncharacter U+FDD0..U+FDEF occurs in this batch; cannot mark PII candidates")


def _apply(text: pl.Series, rule: Rule, placeholder: str, sentinel: str) -> tuple[pl.Series, pl.DataFrame]:
    """One rule over a batch: (new text, per-row counts as (row, n) for rows with replacements)."""
    rows = text.str.contains(rule.pattern).fill_null(False).arg_true()
    none = pl.DataFrame(schema={"row": pl.UInt32, "n": pl.UInt32})
    if rows.len() == 0:
        return text, none
    parts = (text.gather(rows).str.replace_all(rule.pattern, f"${{pre}}{sentinel}${{hit}}{sentinel}${{post}}")
             .str.split(sentinel))
    seg = (pl.DataFrame({"row": rows, "seg": parts})
           .with_columns(k=pl.int_ranges(0, pl.col("seg").list.len(), dtype=pl.Int32))
           .explode("seg", "k"))
    prev, nxt = pl.col("seg").shift(1), pl.col("seg").shift(-1)
    # The character just before a hit and the two after it, as in the text: from the segments around it
    # and, where they are short, the hits beyond them; nothing at the ends of the text.
    row = pl.col("row")
    prev2 = pl.when(row.shift(2) == row).then(pl.col("seg").shift(2))
    next2 = pl.when(row.shift(-2) == row).then(pl.col("seg").shift(-2))
    seg = seg.with_columns(
        before=pl.when(prev.str.len_chars() > 0).then(prev).otherwise(prev2).str.slice(-1),
        after=pl.concat_str(nxt, next2.fill_null("")).str.slice(0, 2),
        context=prev.str.slice(-CONTEXT_CHARS),
    )
    is_hit = pl.col("k") % 2 == 1
    hits = seg.filter(is_hit).rename({"seg": "hit"}).with_columns(pl.col("before", "after", "context").fill_null(""))
    keep = hits.select(rule.check(hits) if rule.check else pl.lit(True)).to_series().fill_null(False)
    if not keep.any():
        return text, none
    valid = pl.Series("valid", [False] * seg.height).scatter(seg.select(pl.arg_where(is_hit)).to_series(), keep)
    seg = seg.with_columns(valid).with_columns(
        pl.when("valid").then(pl.lit(placeholder)).otherwise("seg").alias("seg"))
    changed = seg.group_by("row", maintain_order=True).agg(
        pl.col("seg").str.join(""), pl.col("valid").sum().cast(pl.UInt32).alias("n")).filter(pl.col("n") > 0)
    return text.clone().scatter(changed["row"], changed["seg"]), changed.select("row", "n")  # scatter: in place


def redact(text: pl.Series, kinds: tuple[str, ...] = KINDS, placeholders: dict[str, str] | None = None
           ) -> tuple[pl.Series, dict[str, pl.Series]]:
    """Redact a batch of texts: (redacted texts, {kind: Int64 count per row})."""
    text = text.fill_null("")
    n = text.len()
    placeholders = placeholders or {k: f"<{k.upper()}>" for k in KINDS}
    counts = {k: pl.Series(f"pii_{k}", [0] * n, pl.Int64) for k in kinds}
    if n == 0:
        return text, counts
    sentinel = _sentinel(text)
    for rule in RULES:
        if rule.kind not in kinds:
            continue
        text, found = _apply(text, rule, placeholders[rule.kind], sentinel)
        if found.height:
            c = counts[rule.kind]
            counts[rule.kind] = c.scatter(found["row"], c.gather(found["row"]) + found["n"].cast(pl.Int64))
    return text, counts


# ---------------------------------------------------------------- the operator


@dataclass
class PiiRedact(MapOperator):
    """Replace personal data and secrets with typed placeholders; counts per type (``pii_<kind>``)."""

    name = "pii_redact"
    version = "2"  # 2: whole addresses with "_" or Unicode letters, internationalised domains
    needs = {"text": pl.String}
    modifies = ("text",)
    adds = {f"pii_{k}": pl.Int64 for k in KINDS}
    counters = tuple(f"pii_{k}" for k in KINDS)

    kinds: list[str] = field(default_factory=lambda: list(KINDS))  # which types to redact
    placeholder: str = "<{KIND}>"  # {KIND}: the type's name in capitals, {kind}: in lower case

    def __post_init__(self) -> None:
        unknown = [k for k in self.kinds if k not in KINDS]
        if unknown:
            raise ValueError(f"unknown PII kind(s) {unknown}; known: {', '.join(KINDS)}")
        if "{KIND}" not in self.placeholder and "{kind}" not in self.placeholder:
            raise ValueError("placeholder must contain {KIND} or {kind}, so types stay apart")

    def map(self, df: pl.DataFrame) -> pl.DataFrame:
        places = {k: self.placeholder.replace("{KIND}", k.upper()).replace("{kind}", k) for k in KINDS}
        text, counts = redact(df["text"], tuple(self.kinds), places)
        zeros = {k: pl.Series(f"pii_{k}", [0] * df.height, pl.Int64) for k in KINDS if k not in counts}
        return df.with_columns(text.alias("text"), *counts.values(), *zeros.values())

    report_title = "PII redaction"
    report_order = 65

    @classmethod
    def report(cls, stages: list[StageView]) -> object:
        from corpus.stages.clean_report import counters_section

        return counters_section(stages, {f"pii_{k}": f"<{k.upper()}>" for k in KINDS}, "replaced")
