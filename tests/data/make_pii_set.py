"""Writes pii_labelled.jsonl: the labelled PII set the tests and `benchmarks/pii.py` score against.

Each record is one short text with at most one labelled value: {"text", "kind", "value"} (kind null for
a negative). Valid numbers are built from their definitions here (Luhn and mod-97 check digits, SSA
rules, public address ranges), not with the code under test; hard negatives are near misses written
on purpose: a wrong check digit, a private address, a date, a version, an ISBN, a hash, a UUID, a
product code shaped like a phone number. Run `python tests/data/make_pii_set.py` to rewrite the file
(seeded: the same file every time).
"""

from __future__ import annotations

import json
import random
import string
from pathlib import Path

OUT = Path(__file__).with_name("pii_labelled.jsonl")
rng = random.Random(15)
records: list[dict] = []


def pos(kind: str, value: str, templates: list[str]) -> None:
    records.append({"text": rng.choice(templates).format(v=value), "kind": kind, "value": value})


def neg(text: str) -> None:
    records.append({"text": text, "kind": None, "value": None})


def digits(n: int) -> str:
    return "".join(rng.choice(string.digits) for _ in range(n))


def chars(alphabet: str, n: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


# ---------------------------------------------------------------- email
FIRST = ["john", "maria", "li.wei", "o.connor", "anne-marie", "kenji", "fatima", "j.smith", "ops", "sales", "x"]
DOMAINS = ["example.com", "mail.example.org", "uni-hamburg.de", "company.co.uk", "startup.io", "post.example.net",
           "dept.agency.gov", "club.info", "example.museum", "shop.example.fr"]
EMAIL_T = ["Contact me at {v} for details.", "Email: {v}", "Questions? Write to <{v}>.", "Sent by {v} on Monday",
           "Reviewer ({v}) approved the change.", "mailto:{v}", "Forward it to {v}, thanks!", "{v} wrote:"]
for _ in range(42):
    local = rng.choice(FIRST) + rng.choice(["", "", str(rng.randint(1, 99)), "+news", "_dev", ".work"])
    pos("email", f"{local}@{rng.choice(DOMAINS)}".replace("..", "."), EMAIL_T)
for t in ["The retina icon is logo@2x.png and the banner banner@3x.jpg.", "Install lodash@4.17.21 first.",
          "Use the @property decorator.", "Follow @example_user for news.", "ssh root@server01 to log in",
          "Email me: name (at) example (dot) com is not written out.", "CSS rule @media screen and (max-width: 600px)",
          "npm i @types/node@18.11.9", "a @ b . com is not an address", "user@localhost only works locally",
          "Price: 3 items @ 4.99 each", "the handle is foo@bar with no domain"]:
    neg(t)

# ---------------------------------------------------------------- phone
PHONE_T = ["Call us at {v}.", "Phone: {v}", "Tel. {v} (office hours 9-5)", "Reach me on {v} after 5pm.",
           "For reservations dial {v} today", "Mobile {v}, landline not in use."]


def nanp() -> str:
    return f"{rng.randint(2, 9)}{digits(2)}", f"{rng.randint(2, 9)}{digits(2)}", digits(4)


for _ in range(14):
    a, b, c = nanp()
    pos("phone", rng.choice([f"({a}) {b}-{c}", f"{a}-{b}-{c}", f"{a}.{b}.{c}", f"1-{a}-{b}-{c}", f"+1 {a} {b} {c}",
                             f"+1-{a}-{b}-{c}", f"({a}){b}-{c}"]), PHONE_T)
INTL = [lambda: f"+44 20 {digits(4)} {digits(4)}", lambda: f"+44 (0)20 {digits(4)} {digits(4)}",
        lambda: f"+49 30 {digits(8)}", lambda: f"+33 1 {digits(2)} {digits(2)} {digits(2)} {digits(2)}",
        lambda: f"+81-3-{digits(4)}-{digits(4)}", lambda: f"+61 2 {digits(4)} {digits(4)}",
        lambda: f"+91 9{digits(4)} {digits(5)}", lambda: f"+34 9{digits(2)} {digits(3)} {digits(3)}",
        lambda: f"0044 20 {digits(4)} {digits(4)}", lambda: f"+1415{digits(7)}", lambda: f"+39 06 {digits(8)}",
        lambda: f"+55 11 9{digits(4)}-{digits(4)}"]
for i in range(14):
    pos("phone", INTL[i % len(INTL)](), PHONE_T)
TRUNK = [lambda: f"020 {digits(4)} {digits(4)}", lambda: f"01 {digits(2)} {digits(2)} {digits(2)} {digits(2)}",
         lambda: f"030 {digits(7)}", lambda: f"(030) {digits(3)} {digits(4)}", lambda: f"06-{digits(8)}",
         lambda: f"03-{digits(4)}-{digits(4)}", lambda: f"(02) {digits(4)} {digits(4)}",
         lambda: f"0412 {digits(3)} {digits(3)}", lambda: f"089 {digits(3)} {digits(3)} {digits(2)}"]
for i in range(14):
    pos("phone", TRUNK[i % len(TRUNK)](), PHONE_T)
for t in ["Released on 2021-05-06 after review.", "Meeting on 06.05.2021 at 10:30.", "Due 05/06/2021.",
          "ISBN 978-0-306-40615-7", "ISBN 0-306-40615-2 (paperback)", "Upgrade to v2.14.3 or 1.2.3.",
          "Revenue was $1,234,567.89 in 2020.", "Population 12 345 678 inhabitants.", "SKU 020-7946-0958",
          "Part no. 415-555-2671", "Order #415-555-2671 shipped.", "Model 0800-555-0199-X in stock",
          "ZIP 94105-1234", "Coordinates 37.7749, -122.4194", "Gateway 192.168.100.200 is private.",
          "Sort code 20-32-06", "Years 1999-2005 and pages 123-456.", "Serial: 0123 4567 8901",
          "Invoice 0049 2021 0001 is paid.", "The score was 3-2 after 90 minutes.", "Call 911 now.",
          "Room 101 on floor 3", "id 0203 4455 6677", "Build 20230105.1 passed",
          "UUID 123e4567-e89b-12d3-a456-426614174000",
          "Tracking 1Z999AA10123456784", "EAN 4006381333931", "Ref: 030 1234 5678", "Lot 0417-2291-03 expires"]:
    neg(t)

# ---------------------------------------------------------------- credit cards
CARD_T = ["Card number {v} exp 12/27.", "Paid with {v}.", "cc: {v}", "Please charge {v} for the order.",
          "The card {v} was declined."]


def luhn_digit(body: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:  # these digits are doubled once the check digit is appended
            d = d * 2 - 9 if d * 2 > 9 else d * 2
        total += d
    return str((10 - total % 10) % 10)


ISSUERS = [("4", 16), ("4", 13), ("51", 16), ("55", 16), ("2221", 16), ("2720", 16), ("34", 15), ("37", 15),
           ("6011", 16), ("65", 16), ("3530", 16), ("36", 14), ("62", 16), ("4", 19)]


def card(prefix: str, n: int) -> str:
    body = prefix + digits(n - len(prefix) - 1)
    return body + luhn_digit(body)


def fmt_card(num: str, sep: str) -> str:
    if len(num) == 15:
        groups = [num[:4], num[4:10], num[10:]]
    else:
        groups = [num[i:i + 4] for i in range(0, len(num), 4)]
    return sep.join(groups)


cards = []
for i in range(42):
    prefix, n = ISSUERS[i % len(ISSUERS)]
    num = card(prefix, n)
    cards.append(num)
    pos("credit_card", fmt_card(num, rng.choice([" ", "-", ""])), CARD_T)
for num in cards[:14]:
    bad = num[:-1] + str((int(num[-1]) + rng.randint(1, 9)) % 10)  # a wrong check digit
    neg(rng.choice(CARD_T).format(v=fmt_card(bad, rng.choice([" ", "-", ""]))))
for t in ["Order 1234 5678 9012 3456 confirmed.", "Timestamp 1700000000000 ms", "IMEI 490154203237518",
          "Account 0000 0000 0000 0000", "Phone serial 8944 5000 0000 1234 567", "Ticket 9780 3064 0615 7"]:
    neg(t)

# ---------------------------------------------------------------- IBAN
IBAN_FORMS = {"DE": "8n10n", "GB": "4a6n8n", "FR": "5n5n11c2n", "NL": "4a10n", "ES": "4n4n2n10n", "IT": "1a5n5n12c",
              "BE": "3n7n2n", "CH": "5n12c", "AT": "5n11n", "PL": "8n16n", "SE": "3n16n1n", "NO": "4n6n1n",
              "PT": "4n4n11n2n", "IE": "4a6n8n", "DK": "4n9n1n"}


def bban(form: str) -> str:
    out, num = [], ""
    for ch in form:
        if ch.isdigit():
            num += ch
            continue
        alphabet = {"n": string.digits, "a": string.ascii_uppercase, "c": string.ascii_uppercase + string.digits}[ch]
        out.append(chars(alphabet, int(num)))
        num = ""
    return "".join(out)


def iban_check(country: str, body: str) -> str:
    moved = body + country + "00"
    numeric = "".join(str(int(c, 36)) for c in moved)
    return f"{98 - int(numeric) % 97:02d}"


ibans = []
IBAN_T = ["Please transfer to IBAN {v} by Friday.", "IBAN: {v}", "Bank account {v} (Sparkasse)",
          "Refunds go to {v}.", "Beneficiary account {v}, reference invoice 42"]
for i in range(42):
    country = list(IBAN_FORMS)[i % len(IBAN_FORMS)]
    body = bban(IBAN_FORMS[country])
    iban = country + iban_check(country, body) + body
    ibans.append(iban)
    shown = iban if rng.random() < 0.4 else " ".join(iban[j:j + 4] for j in range(0, len(iban), 4))
    pos("iban", shown, IBAN_T)
for iban in ibans[:12]:
    wrong = iban[:2] + f"{(int(iban[2:4]) + rng.randint(1, 50)) % 97 + 2:02d}" + iban[4:]
    if wrong[2:4] != iban[2:4]:
        neg(rng.choice(IBAN_T).format(v=" ".join(wrong[j:j + 4] for j in range(0, len(wrong), 4))))
for t in ["BIC DEUTDEFF500 belongs to the bank.", "Product AB12 CDEF 3456 7890 in stock.",
          "Code XY99 ABCD EFGH IJKL MNOP", "Flight LH40 MUCF RA12 leaves at 9.", "DE12 is a short code"]:
    neg(t)

# ---------------------------------------------------------------- US SSN
SSN_T = ["SSN: {v}", "Her social security number is {v}.", "Employee SSN {v} on file", "ssn={v};"]
for i in range(42):
    area = rng.choice([a for a in range(1, 900) if a != 666])
    value = f"{area:03d}-{rng.randint(1, 99):02d}-{rng.randint(1, 9999):04d}"
    pos("us_ssn", value if i % 7 else value.replace("-", " "), SSN_T)
for t in ["SSN: 000-12-3456", "SSN: 666-12-3456", "SSN: 912-34-5678", "SSN: 536-00-1234", "SSN: 536-22-0000",
          "The sample number 123-45-6789 is never issued.", "Woolworth's 078-05-1120 card", "Part 123-45-6789-A",
          "REF-536-22-1234", "Date 2021-05-06", "Phone 555-123-4567", "Code 5362-21-234"]:
    neg(t)

# ---------------------------------------------------------------- IP
IP_T = ["Connection from {v} refused.", "Server at {v} responded.", "client={v} status=200",
        "Blocked {v} after 5 attempts.", "Resolved to [{v}] in 3 ms."]
NON_PUBLIC_FIRST = {0, 10, 100, 127, 169, 172, 192, 198, 203} | set(range(224, 256))
for _ in range(30):
    first = rng.choice([o for o in range(1, 224) if o not in NON_PUBLIC_FIRST])
    pos("ip", f"{first}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}", IP_T)
for _ in range(12):
    groups = [f"{rng.choice([0x2400, 0x2600, 0x2a00, 0x2a02, 0x2c0f]) + rng.randint(0, 255):x}"] + \
             [f"{rng.randint(0, 0xffff):x}" for _ in range(7)]
    if rng.random() < 0.5:
        groups = groups[:3] + [""] + groups[-1:]  # a compressed form
    pos("ip", ":".join(groups), IP_T)
for t in ["Router 192.168.1.1 and 10.0.0.1", "Loopback 127.0.0.1", "Link-local 169.254.10.20", "Docs use 192.0.2.15",
          "Example 198.51.100.7 and 203.0.113.99", "Carrier NAT 100.64.1.1", "Multicast 224.0.0.251",
          "Broadcast 255.255.255.255", "Private 172.16.5.4", "Version 1.2.3.4.5", "Windows 10.0.19041.1",
          "Python 2.7.18", "OID 1.3.6.1.4.1", "MAC 00:1A:2B:3C:4D:5E", "Time 12:30:45", "IPv6 loopback ::1",
          "Link-local fe80::1ff:fe23:4567:890a", "Unique local fd12:3456:789a:1::1", "Docs 2001:db8::8a2e:370:7334",
          "Slice a[1::2] in Python", "Leading zeros 010.001.002.003", "Benchmark 198.18.0.1", "Octet 256.1.2.3",
          "std::vector<int> v;", "Hash 0x7fff:dead:beef"]:
    neg(t)

# ---------------------------------------------------------------- secrets
SECRET_T = ["export TOKEN={v}", "token: {v}", "Leaked key {v} in the logs.", "config['key'] = '{v}'"]
B62 = string.ascii_letters + string.digits
for i in range(44):
    k = i % 11
    if k == 0:
        v = rng.choice(["AKIA", "ASIA"]) + chars(string.ascii_uppercase + string.digits, 16)
    elif k == 1:
        v = "AIza" + chars(B62 + "_-", 35)
    elif k == 2:
        v = rng.choice(["ghp", "gho", "ghs"]) + "_" + chars(B62, 36)
    elif k == 3:
        v = "github_pat_" + chars(B62 + "_", 82)
    elif k == 4:
        v = "xoxb-" + digits(12) + "-" + digits(12) + "-" + chars(B62, 24)
    elif k == 5:
        v = rng.choice(["sk_live_", "rk_live_", "sk_test_"]) + chars(B62, 24 + rng.randint(0, 70))
    elif k == 6:
        v = "eyJ" + chars(B62, 30) + ".eyJ" + chars(B62, 40) + "." + chars(B62 + "_-", 43)
    elif k == 7:
        v = "GOCSPX-" + chars(B62 + "_-", 28)
    elif k == 8:
        kind = rng.choice(["RSA PRIVATE KEY", "PRIVATE KEY", "EC PRIVATE KEY", "OPENSSH PRIVATE KEY"])
        body = "\n".join(chars(B62 + "+/", 64) for _ in range(rng.randint(2, 6)))
        v = f"-----BEGIN {kind}-----\n{body}\n-----END {kind}-----"
    elif k == 9:
        v = "T" + chars(string.ascii_uppercase + string.digits, 8) + "/B" + \
            chars(string.ascii_uppercase + string.digits, 10) + "/" + chars(B62, 24)
        records.append({"text": f"Webhook https://hooks.slack.com/services/{v} posts alerts.", "kind": "secret",
                        "value": v})
        continue
    else:
        v = chars(B62 + "/+", 40)
        records.append({"text": rng.choice(["aws_secret_access_key = {v}", "AWS_SECRET_ACCESS_KEY={v}\n",
                                            '"aws_secret_key": "{v}"']).format(v=v), "kind": "secret", "value": v})
        continue
    pos("secret", v, SECRET_T)
for t in ["sha1 da39a3ee5e6b4b0d3255bfef95601890afd80709", "commit 9fceb02d0ae598e95dc970b74767f19372d61af8",
          "sha256 e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
          "md5 d41d8cd98f00b204e9800998ecf8427e", "id 123e4567-e89b-12d3-a456-426614174000",
          "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n-----END PUBLIC KEY-----",
          "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU\n-----END CERTIFICATE-----",
          "publishable pk_live_" + chars(B62, 24), "akiaiosfodnn7example in lower case", "ghp_short",
          "base64 " + chars(B62 + "+/", 40) + "== in a data URI", "AIzaShort", "xoxb", "sk_live_",
          "token eyJhbGciOiJIUzI1NiJ9 without the rest"]:
    neg(t)

# ---------------------------------------------------------------- plain text
for t in ["The committee met on 12 March and approved 3 of 5 proposals.", "Chapter 4.2 covers tables 7-9.",
          "He ran 5 km in 21:34 and then 10 km.", "Temperature rose to 38.5 degrees on 2 July.",
          "Prices start at 19.99 EUR; 2 for 35 EUR.", "See section 1.2.3 and figure 4.", "Call me maybe.",
          "The year 2024 had 366 days.", "Flight BA 117 leaves gate 23 at 14:05.", "Matrix 3x3 with det 0."]:
    neg(t)

if __name__ == "__main__":
    with open(OUT, "w") as fh:
        for r in records:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")
    by_kind: dict[str, int] = {}
    for r in records:
        by_kind[r["kind"] or "negative"] = by_kind.get(r["kind"] or "negative", 0) + 1
    print(f"{OUT}: {len(records)} records, {by_kind}")
