#!/usr/bin/env python3
"""Generate the bundled example corpus (see examples/README.md).

    python examples/make_data.py [OUTDIR]      # default: examples/data

Deterministic: a fixed seed and no clock, so every run writes the same bytes (gzip with mtime=0).
Needs only the standard library plus `zstandard` and `pyarrow`. The output folder is removed and
rewritten. Besides the data, it writes OUTDIR/manifest.json: what was planted where (duplicates,
near duplicates, malformed records), so tests can check a pipeline against known answers.
"""

from __future__ import annotations

import base64
import csv
import gzip
import io
import json
import random
import re
import shutil
import sys
import textwrap
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import zstandard

SEED = 20240611
DEFAULT_OUT = Path(__file__).resolve().parent / "data"

# Base documents per web file; the special kinds are included in `n`, planted copies come on top.
WEB_FILES = {
    "crawl-00.jsonl": dict(n=760, spam=18, short=10, symbols=18, mojibake=6, replacement=2, long=1),
    "crawl-01.jsonl.gz": dict(n=880, spam=22, short=10, symbols=20, mojibake=6, replacement=2, long=0),
    "crawl-02.jsonl.zst": dict(n=880, spam=22, short=10, symbols=20, mojibake=5, replacement=2, long=1),
    "crawl-03.jsonl": dict(n=300, spam=8, short=5, symbols=8, mojibake=3, replacement=1, long=0),
}
# Language mix of web articles (the special kinds are English).
WEB_LANGS = {"en": 76, "de": 6, "fr": 5, "es": 5, "zh": 3, "ja": 3, "ru": 2}
WIKI_ROWS = {"en": 430, "de": 35, "fr": 35}
FORUM_POSTS = 700

# Malformed lines of crawl-00.jsonl: fixed 1-based line numbers so the README can cite them.
MALFORMED_WEB = {
    7: "invalid_json",
    88: "not_an_object",
    150: "missing_text",
    233: "null_text",
    404: "non_string_text",
    512: "empty_text",
    640: "nul_bytes",
    701: "invalid_utf8",
}
MALFORMED_CSV_RECORD = 321  # 1-based data record (header not counted) of forum/posts.csv

# ---------------------------------------------------------------------------------------------
# English phrase bank: a small grammar with topic vocabularies, so sentences rarely repeat.

TOPICS = {
    "science": dict(
        agents=["researcher", "technician", "student", "geologist", "astronomer", "chemist", "volunteer",
                "biologist", "engineer", "field assistant"],
        agent_adjs=["young", "patient", "skeptical", "tired", "careful", "senior", "visiting", "curious"],
        nouns=["sample", "telescope", "enzyme", "glacier", "fossil", "sensor", "coral reef", "soil core",
               "protein", "comet", "magnetic field", "microscope", "data set", "bacterial colony",
               "weather balloon", "ice core", "seismograph", "cell culture", "tide gauge", "meteorite"],
        adjs=["fragile", "stable", "unusual", "dense", "sensitive", "ancient", "frozen", "faint", "complex",
              "tiny", "noisy", "promising"],
        verbs=["measured", "observed", "mapped", "tracked", "sampled", "analysed", "photographed", "compared",
               "calibrated", "catalogued", "tested", "recorded"],
        people=["Dr. Amara Okafor", "Professor Lena Fischer", "Dr. Kenji Watanabe", "Dr. Sofia Marques",
                "Professor Ian Whitlock"],
        locs=["in the Atacama Desert", "on Svalbard", "in a lab in Geneva", "off the Great Barrier Reef",
              "at a field station in Kenya", "on the Antarctic coast", "in the basement lab"],
        years=(1950, 2023),
        facts=["The experiment was repeated {num} times to rule out contamination.",
               "The instruments recorded a change of {float} percent over {num} days.",
               "The results were published in {year} and have been cited widely.",
               "Peer reviewers asked for another {num} measurements before accepting the paper."],
    ),
    "cooking": dict(
        agents=["cook", "baker", "chef", "food writer", "grandmother", "apprentice", "home cook",
                "pastry chef", "butcher", "market vendor"],
        agent_adjs=["busy", "experienced", "impatient", "cheerful", "tired", "proud", "nervous", "local"],
        nouns=["sourdough starter", "soup", "tomato sauce", "pastry dough", "spice blend", "lemon tart",
               "stock", "risotto", "dumpling", "marinade", "onion", "bread roll", "cast-iron pan",
               "chickpea stew", "garlic butter", "pie crust", "salad dressing", "flatbread", "custard",
               "mushroom"],
        adjs=["crisp", "tender", "fragrant", "rich", "tangy", "silky", "smoky", "delicate", "hearty",
              "bitter", "sweet", "salty"],
        verbs=["tasted", "simmered", "kneaded", "seasoned", "roasted", "whisked", "folded", "baked",
               "reduced", "chilled", "stirred", "sliced"],
        people=["Chef Marco Bellini", "Aunt Rosa", "Yuki Tanaka", "the baker Henri Dupont", "Grandma Edith"],
        locs=["in Naples", "in Oaxaca", "in a small bistro in Lyon", "at a market in Istanbul", "in Penang",
              "in the Basque Country", "in our test kitchen"],
        years=(1950, 2023),
        facts=["Add a pinch of salt and {num} grams of butter.",
               "Preheat the oven to {temp} degrees and bake for {small} minutes more than you think.",
               "Let the dough rest for at least {small} hours before shaping it.",
               "Serve it warm with a squeeze of lemon and some crusty bread."],
    ),
    "travel": dict(
        agents=["traveller", "guide", "backpacker", "ferry captain", "photographer", "hotel owner", "cyclist",
                "tour operator", "hiker", "local driver"],
        agent_adjs=["weary", "friendly", "talkative", "lost", "adventurous", "retired", "young", "cautious"],
        nouns=["harbour", "night train", "mountain hut", "coastal path", "market", "guesthouse", "ferry",
               "cathedral", "hiking trail", "bus station", "street food stall", "river cruise", "border town",
               "museum", "beach", "lighthouse", "viewpoint", "old bridge", "campsite", "hot spring"],
        adjs=["crowded", "peaceful", "charming", "overpriced", "remote", "lively", "affordable", "windswept",
              "sleepy", "colourful", "muddy", "sunny"],
        verbs=["visited", "explored", "photographed", "crossed", "booked", "recommended", "discovered",
               "missed", "reached", "followed", "avoided", "admired"],
        people=["our guide Mateo", "a ranger named Aiko", "the innkeeper Mrs. Doyle",
                "a cyclist from Utrecht", "the photographer Nadia Haddad"],
        locs=["in Lisbon", "in Kyoto", "in Patagonia", "in the Scottish Highlands", "in Hanoi",
              "in Marrakesh", "in Tallinn", "on the Amalfi Coast", "on Vancouver Island", "in Cappadocia"],
        years=(1970, 2023),
        facts=["The trip from the airport takes about {num} minutes by taxi.",
               "A single ticket costs around {price} euros.",
               "Bring comfortable shoes and a light rain jacket.",
               "Book accommodation at least {small} weeks in advance during the summer."],
    ),
    "history": dict(
        agents=["historian", "archivist", "merchant", "monk", "soldier", "town clerk", "farmer", "diplomat",
                "scribe", "printer"],
        agent_adjs=["diligent", "ambitious", "wealthy", "elderly", "loyal", "exiled", "forgotten",
                    "stubborn"],
        nouns=["treaty", "guild", "railway line", "printing press", "charter", "archive", "fortress",
               "census record", "abbey", "trade route", "city wall", "merchant fleet", "land deed",
               "manuscript", "tax ledger", "harbour chain", "cathedral", "coin hoard", "map", "petition"],
        adjs=["controversial", "decisive", "forgotten", "ambitious", "costly", "remarkable", "turbulent",
              "enduring", "obscure", "medieval", "damaged", "disputed"],
        verbs=["documented", "reshaped", "financed", "challenged", "recorded", "destroyed", "restored",
               "negotiated", "copied", "signed", "defended", "rebuilt"],
        people=["the chronicler Aldric of Wessex", "Governor Hendrik Vos", "the abbess Hildegard Brun",
                "the merchant Piero Castellan", "Bishop Anselm Gray"],
        locs=["in Flanders", "in the Hanseatic ports", "in Bohemia", "in Castile", "in the Rhine valley",
              "in Novgorod", "in Genoa"],
        years=(1150, 1910),
        facts=["The surviving documents date from {year}.",
               "Only {small} copies of the original charter remain.",
               "The conflict lasted {small} years and ruined many families.",
               "Much of what we know comes from a single diary kept between {year} and {year2}."],
    ),
    "programming": dict(
        agents=["developer", "maintainer", "reviewer", "tester", "contributor", "intern", "architect",
                "on-call engineer", "data engineer", "student"],
        agent_adjs=["sleepy", "experienced", "new", "careful", "frustrated", "pragmatic", "senior", "remote"],
        nouns=["parser", "database index", "build script", "memory leak", "API client", "cache", "test suite",
               "deployment pipeline", "query planner", "configuration file", "logging module",
               "race condition", "type checker", "garbage collector", "retry loop", "web server", "compiler",
               "regular expression", "hash table", "message queue"],
        adjs=["slow", "brittle", "elegant", "readable", "thread-safe", "fast", "flaky", "portable", "legacy",
              "minimal", "broken", "undocumented"],
        verbs=["reworked", "profiled", "refactored", "debugged", "benchmarked", "deployed", "documented",
               "replaced", "tested", "simplified", "patched", "optimised"],
        people=["Priya Raman", "the maintainer Jonas Berg", "a reviewer called Mei", "Tomasz Nowak",
                "Grace Adebayo"],
        locs=["in production", "on the staging cluster", "on a Raspberry Pi", "on the CI server",
              "on an old laptop", "in a Docker container"],
        years=(1985, 2023),
        facts=["The function now runs in {num} milliseconds instead of {num2}.",
               "We added {small} new unit tests to cover the edge cases.",
               "Always pin your dependencies before a release.",
               "The fix was a single line, but finding it took {small} days."],
    ),
    "gardening": dict(
        agents=["gardener", "beekeeper", "allotment holder", "botanist", "neighbour", "landscaper", "grower",
                "nursery owner"],
        agent_adjs=["patient", "keen", "elderly", "hopeful", "busy", "experienced", "amateur", "muddy"],
        nouns=["tomato plant", "compost heap", "rose bush", "raised bed", "greenhouse", "apple tree",
               "seed tray", "herb garden", "lawn", "beehive", "potato patch", "hedge", "pond", "cucumber",
               "strawberry bed", "watering can", "fig tree", "vegetable plot"],
        adjs=["healthy", "overgrown", "sunny", "shady", "dry", "fertile", "wild", "tidy", "frost-damaged",
              "productive"],
        verbs=["planted", "pruned", "watered", "harvested", "mulched", "weeded", "repotted", "fertilised",
               "covered", "protected"],
        people=["Margaret Pryce", "the beekeeper Olu Adeyemi", "old Mr. Hobbs", "Ingrid Lund"],
        locs=["in the back garden", "on the allotment", "in a walled garden in Kent", "behind the cottage",
              "on a balcony in Berlin"],
        years=(1960, 2023),
        facts=["Water the seedlings every {small} days in dry weather.",
               "Sow the seeds about {small} centimetres deep.",
               "Most varieties need at least {small} hours of sunlight a day."],
    ),
}

INTROS = ["However", "In practice", "For example", "At first", "Later", "Meanwhile", "In the end",
          "Of course", "Even so", "Fortunately", "Unfortunately", "Surprisingly", "Since then", "By then",
          "Afterwards", "Still", "In hindsight", "To be fair"]
PREPS = ["near", "behind", "beside", "under", "after", "before", "with", "without", "inside", "next to",
         "opposite", "far from"]
ADVS = ["quietly", "carefully", "quickly", "slowly", "again", "twice", "eventually", "reluctantly", "proudly",
        "almost immediately", "without complaint", "for the first time"]
DETS = ["the", "a", "the", "this", "one", "their", "another", "every"]
PERIODS = ["days", "weeks", "months", "years", "hours"]

EN_PATTERNS = ["{agent} {verb} {obj} {pp}.", "{intro}, {agent} {verb} {obj}.",
               "{agent} {verb} {obj} and then {verb2} {obj2}.",
               "{agent} {verb} {obj} because {agent2} had {verb2} {obj2}.",
               "{obj} was {adj} {pp}, so {agent} {verb2} it {adv}.", "Nobody expected {obj} to be so {adj}.",
               "{loc}, {agent} {verb} {obj} {adv}.", "Why was {obj} so {adj}?",
               "{agent} {verb} {num} {plural} {loc}.", "According to {person}, {obj} was {adj} and {adj2}.",
               "It took {small} {period} before {agent} {verb} {obj}.",
               "{agent}, who had {verb} {obj} {loc}, {verb2} {obj2} {adv}.",
               "{person} {verb} {obj} in {year}.", "{obj} {pp} was {verb} by {agent} {loc}.",
               "{intro}, {obj} turned out to be {adj2}."]

TITLE_PATTERNS = ["{Adj} {plural} and the {noun}", "Notes on the {adj} {noun}", "What the {noun} taught us",
                  "The {adj} {noun}: a field report", "{small} things nobody tells you about {plural}",
                  "{a_adj} week with the {noun}", "How we {verb} the {noun} {loc}"]


def cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def plural(noun: str) -> str:
    if noun.endswith(("s", "sh", "ch", "x")):
        return noun + "es"
    if noun.endswith("y") and noun[-2:-1] not in "aeiou":
        return noun[:-1] + "ies"
    return noun + "s"


def article(det: str, phrase: str) -> str:
    if det == "a" and phrase[:1].lower() in "aeiou":
        det = "an"
    return f"{det} {phrase}"


def np(rng: random.Random, lex: dict, adj_p: float = 0.5) -> str:
    """A noun phrase: determiner, optional adjective, noun."""
    noun = rng.choice(lex["nouns"])
    if rng.random() < adj_p:
        noun = f"{rng.choice(lex['adjs'])} {noun}"
    return article(rng.choice(DETS), noun)


def agent_np(rng: random.Random, lex: dict) -> str:
    r = rng.random()
    if r < 0.15:
        return rng.choice(lex["people"])
    if r < 0.3:
        many = rng.choice(["several", "a few", "two", "three", "some"])
        return f"{many} {plural(rng.choice(lex['agents']))}"
    noun = rng.choice(lex["agents"])
    if rng.random() < 0.5:
        noun = f"{rng.choice(lex['agent_adjs'])} {noun}"
    return article(rng.choice(["the", "a", "one", "our", "the"]), noun)


def numbers(rng: random.Random, years: tuple[int, int]) -> dict:
    year = rng.randint(*years)
    return dict(num=rng.randint(2, 500), num2=rng.randint(501, 2000), small=rng.randint(2, 12),
                float=f"{rng.uniform(0.1, 99):.1f}",
                price=f"{rng.randint(2, 90)}.{rng.choice(['00', '50', '99'])}",
                temp=rng.choice([160, 180, 200, 220]), year=year, year2=year + rng.randint(3, 40))


def en_sentence(rng: random.Random, topic: str, seen: set[str] | None = None) -> str:
    """One sentence; `seen` (per document) keeps a fixed 'fact' template from appearing twice."""
    lex = TOPICS[topic]
    if rng.random() < 0.05:
        fact = rng.choice(lex["facts"])
        if seen is None or fact not in seen:
            (seen if seen is not None else set()).add(fact)
            return fact.format(**numbers(rng, lex["years"]))
    adjs = rng.sample(lex["adjs"], 2)
    slots = dict(
        agent=agent_np(rng, lex), agent2=agent_np(rng, lex), verb=rng.choice(lex["verbs"]),
        verb2=rng.choice(lex["verbs"]), obj=np(rng, lex), obj2=np(rng, lex),
        pp=f"{rng.choice(PREPS)} {np(rng, lex, 0.3)}", adj=adjs[0], adj2=adjs[1],
        adv=rng.choice(ADVS), intro=rng.choice(INTROS), loc=rng.choice(lex["locs"]),
        plural=plural(rng.choice(lex["nouns"])), person=rng.choice(lex["people"]), period=rng.choice(PERIODS),
        **numbers(rng, lex["years"]),
    )
    return cap(rng.choice(EN_PATTERNS).format(**slots))


def en_paragraph(rng: random.Random, topic: str, lo: int = 3, hi: int = 6,
                 seen: set[str] | None = None) -> str:
    seen = set() if seen is None else seen
    return " ".join(en_sentence(rng, topic, seen) for _ in range(rng.randint(lo, hi)))


def en_title(rng: random.Random, topic: str) -> str:
    lex = TOPICS[topic]
    noun, adj = rng.choice(lex["nouns"]), rng.choice(lex["adjs"])
    slots = dict(adj=adj, Adj=cap(adj), a_adj=cap(article("a", adj)), noun=noun,
                 plural=plural(rng.choice(lex["nouns"])),
                 small=rng.randint(3, 12), verb=rng.choice(lex["verbs"]), loc=rng.choice(lex["locs"]))
    return cap(rng.choice(TITLE_PATTERNS).format(**slots))


def en_article(rng: random.Random, topic: str, paras: tuple[int, int] = (2, 5), min_words: int = 0) -> str:
    seen: set[str] = set()
    out = [en_title(rng, topic)]
    out += [en_paragraph(rng, topic, seen=seen) for _ in range(rng.randint(*paras))]
    while len(" ".join(out).split()) < min_words:
        out.append(en_paragraph(rng, topic, seen=seen))
    return "\n\n".join(out)


def en_long(rng: random.Random, topic: str, min_chars: int) -> str:
    """A 'complete guide' with numbered parts: tens of KB in one document."""
    seen: set[str] = set()
    out = [f"The complete guide: {en_title(rng, topic).lower()}"]
    part = 0
    while sum(len(p) for p in out) < min_chars:
        part += 1
        out.append(f"Part {part}. {cap(plural(rng.choice(TOPICS[topic]['nouns'])))}")
        out += [en_paragraph(rng, topic, 4, 7, seen) for _ in range(rng.randint(2, 4))]
    return "\n\n".join(out)


# ---------------------------------------------------------------------------------------------
# Other languages: subject + time + verb + object + place, each slot a short inflected phrase
# (plural subjects, so verbs agree), in each language's word order. Short slots keep repeated
# 5-grams rare, as in real text.

FOREIGN = {
    "de": dict(
        nouns=["Forscher", "Köche", "Studierenden", "Gärtner", "Historiker", "Kinder", "Musiker", "Touristen",
               "Nachbarn", "Fischer", "Bäcker", "Lehrer", "Rentner", "Entwickler", "Fotografen"],
        adjs=["", "", "jungen ", "älteren ", "meisten ", "neuen ", "beiden "],
        subj="die {adj}{noun}",
        time=["morgens", "abends", "oft", "selten", "im Sommer", "im Winter", "heute", "manchmal", "sonntags",
              "jedes Jahr", "gern", "meistens"],
        place=["in der Altstadt", "am See", "in Hamburg", "auf dem Land", "in der Bibliothek", "im Wald",
               "im Dorf", "an der Küste", "in Wien", "in der Küche", "am Bahnhof", "in Leipzig", "im Garten",
               "am Hafen"],
        vp=[("besuchen", ["den Hafen", "das Stadtmuseum", "den Wochenmarkt", "die Burgruine", "eine Galerie",
                          "den Dom", "alte Freunde"]),
            ("kaufen", ["frisches Gemüse", "regionalen Käse", "alte Bücher", "Fahrkarten", "Blumen",
                        "warmes Brot", "Äpfel"]),
            ("untersuchen", ["die Wasserqualität", "alte Urkunden", "den Boden", "Bienenvölker",
                             "die Ursachen", "seltene Pflanzen"]),
            ("beschreiben", ["den Weg", "ein altes Rezept", "die Dorfgeschichte", "den Alltag",
                             "ihre Reise"]),
            ("fotografieren", ["den Sonnenuntergang", "alte Fassaden", "seltene Vögel", "die Brücke",
                               "den Nebel"]),
            ("kochen", ["Linsensuppe", "Spätzle", "Pflaumenmarmelade", "einen Eintopf", "Kartoffelsalat"]),
            ("reparieren", ["das Fahrrad", "den Zaun", "die Software", "eine Uhr", "das Dach"]),
            ("diskutieren", ["über Pläne", "über das Wetter", "über Preise", "über die Zukunft",
                             "über Politik"])],
        orders=["{Subj} {verb} {time} {obj} {place}.", "{Time} {verb} {subj} {obj} {place}."],
        fixed=["Das ist allerdings nicht die ganze Geschichte.",
               "Im Jahr {year} kamen mehr als {num} Besucher.", "Die Eintrittskarte kostet {price} Euro.",
               "Niemand hatte mit so einem Ergebnis gerechnet.",
               "Die Lage hat sich seitdem deutlich verbessert.", "Warum ist das so wichtig?"],
        titles=["Neuigkeiten {place}", "Ein Wochenende {place}", "Notizen aus dem Alltag", "Bericht {place}"],
        heading="Geschichte", chapter="Kapitel {n}", sep=" ",
    ),
    "fr": dict(
        nouns=["chercheurs", "cuisiniers", "étudiants", "jardiniers", "historiens", "enfants", "musiciens",
               "touristes", "voisins", "pêcheurs", "boulangers", "professeurs", "retraités", "développeurs",
               "photographes"],
        adjs=["", "", "jeunes ", "vieux ", "nouveaux ", "autres ", "deux "],
        subj="les {adj}{noun}",
        time=["le matin", "le soir", "souvent", "rarement", "en été", "en hiver", "aujourd'hui", "parfois",
              "le dimanche", "chaque année", "le lundi", "en automne"],
        place=["dans la vieille ville", "au bord du lac", "à Lyon", "à la campagne", "à la bibliothèque",
               "en forêt", "au village", "sur la côte", "à Bruxelles", "dans la cuisine", "à la gare",
               "à Nantes", "au jardin", "au port"],
        vp=[("visitent", ["le port", "le musée", "le marché", "les ruines", "une galerie", "la cathédrale",
                          "de vieux amis"]),
            ("achètent", ["des légumes", "du fromage", "de vieux livres", "des billets", "des fleurs",
                          "du pain chaud", "des pommes"]),
            ("étudient", ["la qualité de l'eau", "des archives", "le sol", "les abeilles", "les causes",
                          "des plantes rares"]),
            ("décrivent", ["le chemin", "une vieille recette", "l'histoire du village", "la vie quotidienne",
                           "leur voyage"]),
            ("photographient", ["le coucher du soleil", "les façades", "des oiseaux rares", "le pont",
                                "la brume"]),
            ("préparent", ["une soupe", "une tarte", "de la confiture", "un ragoût", "une salade"]),
            ("réparent", ["le vélo", "la clôture", "le logiciel", "une horloge", "le toit"]),
            ("discutent", ["des projets", "de la météo", "des prix", "de l'avenir", "de politique"])],
        orders=["{Subj} {verb} {time} {obj} {place}.", "{Time}, {subj} {verb} {obj} {place}."],
        fixed=["Mais ce n'est pas toute l'histoire.", "En {year}, plus de {num} visiteurs sont venus.",
               "Le billet d'entrée coûte {price} euros.", "Personne ne s'attendait à un tel résultat.",
               "La situation s'est nettement améliorée depuis.", "Pourquoi est-ce si important ?"],
        titles=["Nouvelles {place}", "Un week-end {place}", "Carnet de route", "Reportage {place}"],
        heading="Histoire", chapter="Chapitre {n}", sep=" ",
    ),
    "es": dict(
        nouns=["investigadores", "cocineros", "estudiantes", "jardineros", "historiadores", "niños",
               "músicos", "turistas", "vecinos", "pescadores", "panaderos", "profesores", "jubilados",
               "programadores", "fotógrafos"],
        adjs=["", "", " jóvenes", " locales", " nuevos", " extranjeros", " veteranos"],
        subj="los {noun}{adj}",
        time=["por la mañana", "por la noche", "a menudo", "pocas veces", "en verano", "en invierno", "hoy",
              "a veces", "los domingos", "cada año", "los lunes", "en otoño"],
        place=["en el casco antiguo", "junto al lago", "en Sevilla", "en el campo", "en la biblioteca",
               "en el bosque", "en el pueblo", "en la costa", "en Valencia", "en la cocina", "en la estación",
               "en Bilbao", "en el huerto", "en el puerto"],
        vp=[("visitan", ["el puerto", "el museo", "el mercado", "las ruinas", "una galería", "la catedral",
                         "a viejos amigos"]),
            ("compran", ["verduras", "queso", "libros antiguos", "billetes", "flores", "pan caliente",
                         "manzanas"]),
            ("estudian", ["la calidad del agua", "documentos antiguos", "el suelo", "las abejas",
                          "las causas", "plantas raras"]),
            ("describen", ["el camino", "una receta antigua", "la historia del pueblo", "la vida diaria",
                           "su viaje"]),
            ("fotografían", ["la puesta de sol", "las fachadas", "aves raras", "el puente", "la niebla"]),
            ("preparan", ["una sopa", "una tortilla", "mermelada", "un guiso", "una ensalada"]),
            ("reparan", ["la bicicleta", "la valla", "el programa", "un reloj", "el tejado"]),
            ("hablan", ["de planes", "del tiempo", "de los precios", "del futuro", "de política"])],
        orders=["{Subj} {verb} {time} {obj} {place}.", "{Time}, {subj} {verb} {obj} {place}."],
        fixed=["Pero esa no es toda la historia.", "En {year} llegaron más de {num} visitantes.",
               "La entrada cuesta {price} euros.", "Nadie esperaba un resultado así.",
               "La situación ha mejorado mucho desde entonces.", "¿Por qué es tan importante?"],
        titles=["Noticias {place}", "Un fin de semana {place}", "Cuaderno de viaje", "Crónica {place}"],
        heading="Historia", chapter="Capítulo {n}", sep=" ",
    ),
    "ru": dict(
        nouns=["учёные", "повара", "студенты", "садовники", "историки", "дети", "музыканты", "туристы",
               "соседи", "рыбаки", "пекари", "учителя", "пенсионеры", "программисты", "фотографы"],
        adjs=["", "", "молодые ", "местные ", "новые ", "опытные ", "многие "],
        subj="{adj}{noun}",
        time=["утром", "вечером", "часто", "редко", "летом", "зимой", "сегодня", "иногда", "по воскресеньям",
              "каждый год", "охотно", "всегда"],
        place=["в старом городе", "у озера", "в Казани", "в деревне", "в библиотеке", "в лесу", "в посёлке",
               "на побережье", "в Самаре", "на кухне", "на вокзале", "в Твери", "в саду", "в порту"],
        vp=[("посещают", ["порт", "музей", "рынок", "развалины", "галерею", "собор", "старых друзей"]),
            ("покупают", ["овощи", "сыр", "старые книги", "билеты", "цветы", "тёплый хлеб", "яблоки"]),
            ("изучают", ["качество воды", "архивы", "почву", "пчёл", "причины", "редкие растения"]),
            ("описывают", ["дорогу", "старый рецепт", "историю деревни", "повседневную жизнь",
                           "своё путешествие"]),
            ("фотографируют", ["закат", "фасады", "редких птиц", "мост", "туман"]),
            ("готовят", ["суп", "пирог", "варенье", "рагу", "салат"]),
            ("ремонтируют", ["велосипед", "забор", "программу", "часы", "крышу"]),
            ("обсуждают", ["планы", "погоду", "цены", "будущее", "политику"])],
        orders=["{Subj} {time} {verb} {obj} {place}.", "{Time} {subj} {verb} {obj} {place}."],
        fixed=["Но это ещё не вся история.", "В {year} году сюда приехали более {num} посетителей.",
               "Входной билет стоит {price} рублей.", "Никто не ожидал такого результата.",
               "С тех пор ситуация заметно улучшилась.", "Почему это так важно?"],
        titles=["Новости: {place}", "Выходные {place}", "Заметки", "Репортаж {place}"],
        heading="История", chapter="Глава {n}", sep=" ",
    ),
    "zh": dict(
        nouns=["研究人员", "厨师", "学生", "园丁", "历史学家", "孩子们", "音乐家", "游客", "邻居们", "渔民",
               "面包师", "老师们", "退休老人", "程序员", "摄影师"],
        adjs=["", "", "年轻的", "当地的", "新来的", "有经验的", "附近的"],
        subj="{adj}{noun}",
        time=["每天早上", "晚上", "经常", "周末", "夏天", "冬天", "今天", "有时候", "每个星期天", "每年"],
        place=["在老城区", "在湖边", "在杭州", "在乡下", "在图书馆", "在森林里", "在村子里", "在海边",
               "在成都", "在厨房里", "在火车站", "在西安", "在花园里", "在港口"],
        vp=[("参观", ["港口", "博物馆", "集市", "古城遗址", "画廊", "大教堂"]),
            ("购买", ["蔬菜", "奶酪", "旧书", "车票", "鲜花", "面包", "苹果"]),
            ("研究", ["水质", "档案", "土壤", "蜜蜂", "原因", "稀有植物"]),
            ("描述", ["路线", "一道老菜谱", "村子的历史", "日常生活", "他们的旅行"]),
            ("拍摄", ["日落", "老房子", "罕见的鸟", "石桥", "晨雾"]),
            ("做", ["汤", "苹果派", "果酱", "炖菜", "沙拉"]),
            ("修理", ["自行车", "篱笆", "软件", "手表", "屋顶"]),
            ("讨论", ["计划", "天气", "物价", "未来", "政治"])],
        orders=["{Subj}{time}{place}{verb}{obj}。", "{Time}，{subj}{place}{verb}{obj}。"],
        fixed=["但这并不是故事的全部。", "{year}年，有超过{num}名游客来到这里。", "门票价格为{price}元。",
               "没有人预料到会有这样的结果。", "从那以后，情况有了明显的改善。", "为什么这件事这么重要？"],
        titles=["{place}的一天", "新闻简报", "旅行笔记", "{place}的周末"],
        heading="历史", chapter="第{n}章", sep="",
    ),
    "ja": dict(
        nouns=["研究者たち", "料理人たち", "学生たち", "庭師たち", "歴史家たち", "子どもたち", "音楽家たち",
               "観光客", "近所の人たち", "漁師たち", "パン職人たち", "先生たち", "お年寄りたち",
               "プログラマーたち", "写真家たち"],
        adjs=["", "", "若い", "地元の", "新しく来た", "経験豊かな", "多くの"],
        subj="{adj}{noun}は",
        time=["毎朝", "夜に", "よく", "週末に", "夏には", "冬には", "今日", "ときどき", "日曜日に", "毎年"],
        place=["旧市街で", "湖のほとりで", "京都で", "田舎で", "図書館で", "森で", "村で", "海辺で", "大阪で",
               "台所で", "駅で", "金沢で", "庭で", "港で"],
        vp=[("を訪れます", ["港", "博物館", "市場", "城跡", "ギャラリー", "大聖堂"]),
            ("を買います", ["野菜", "チーズ", "古本", "切符", "花", "パン", "りんご"]),
            ("を調べます", ["水質", "古文書", "土", "ミツバチ", "原因", "珍しい植物"]),
            ("を説明します", ["道順", "昔のレシピ", "村の歴史", "日々の暮らし", "旅の様子"]),
            ("を撮影します", ["夕日", "古い建物", "珍しい鳥", "石橋", "朝霧"]),
            ("を作ります", ["スープ", "パイ", "ジャム", "シチュー", "サラダ"]),
            ("を修理します", ["自転車", "柵", "ソフトウェア", "時計", "屋根"]),
            ("について話し合います", ["計画", "天気", "物価", "将来", "政治"])],
        orders=["{Subj}{time}、{place}{obj}{verb}。", "{Time}、{subj}{place}{obj}{verb}。"],
        fixed=["しかし、それが話のすべてではありません。", "{year}年には{num}人以上の観光客が訪れました。",
               "入場料は{price}円です。", "誰もこのような結果を予想していませんでした。",
               "それ以来、状況は大きく改善しました。", "なぜそれほど重要なのでしょうか。"],
        titles=["{place}の一日", "ニュースまとめ", "旅の記録", "{place}の週末"],
        heading="歴史", chapter="第{n}章", sep="",
    ),
}


def fx_sentence(rng: random.Random, lang: str, seen: set[str]) -> str:
    bank = FOREIGN[lang]
    if rng.random() < 0.07:
        fixed = rng.choice(bank["fixed"])
        if fixed not in seen:
            seen.add(fixed)
            return fixed.format(**numbers(rng, (1950, 2023)))
    subj = bank["subj"].format(adj=rng.choice(bank["adjs"]), noun=rng.choice(bank["nouns"]))
    time = rng.choice(bank["time"])
    verb, objs = rng.choice(bank["vp"])
    return rng.choice(bank["orders"]).format(subj=subj, Subj=cap(subj), time=time, Time=cap(time), verb=verb,
                                             obj=rng.choice(objs), place=rng.choice(bank["place"]))


def fx_paragraph(rng: random.Random, lang: str, lo: int = 3, hi: int = 5,
                 seen: set[str] | None = None) -> str:
    seen = set() if seen is None else seen
    return FOREIGN[lang]["sep"].join(fx_sentence(rng, lang, seen) for _ in range(rng.randint(lo, hi)))


def fx_article(rng: random.Random, lang: str, paras: tuple[int, int] = (2, 4)) -> str:
    bank = FOREIGN[lang]
    title = cap(rng.choice(bank["titles"]).format(place=rng.choice(bank["place"])))
    seen: set[str] = set()
    return "\n\n".join([title] + [fx_paragraph(rng, lang, seen=seen) for _ in range(rng.randint(*paras))])


# ---------------------------------------------------------------------------------------------
# Fiction for the books: a wider grammar than the articles, because a 60 KB book drawn from a few
# fixed phrases would be rejected by any repetition filter (Gopher-style duplicate n-gram checks).

FICTION = dict(
    names=["Margaret", "Tomas", "Elena", "Isaac", "Ruth", "Henrik", "Clara", "Jonah", "Mrs. Albright",
           "Agnes", "Felix", "Nora", "Samuel", "Walter", "Ida", "Lotte", "Arthur", "Miriam", "young Peter",
           "old Bartholomew", "Rosalind", "Edmund", "Hester", "Matthias"],
    people=["fisherman", "widow", "clerk", "innkeeper", "postman", "priest", "boy", "girl", "sailor",
            "carpenter", "baker", "nurse", "stranger", "farmer", "lodger", "teacher", "ferryman", "captain",
            "doctor", "miller"],
    verbs=[("open", "opened"), ("carry", "carried"), ("watch", "watched"), ("notice", "noticed"),
           ("follow", "followed"), ("push", "pushed"), ("lift", "lifted"), ("mend", "mended"),
           ("polish", "polished"), ("lock", "locked"), ("search", "searched"), ("study", "studied"),
           ("wrap", "wrapped"), ("touch", "touched"), ("fetch", "fetched"), ("clean", "cleaned"),
           ("bury", "buried"), ("paint", "painted"), ("hide", "hid"), ("find", "found"), ("take", "took"),
           ("hold", "held"), ("drop", "dropped"), ("fold", "folded"), ("count", "counted"), ("sell", "sold"),
           ("examine", "examined"), ("steal", "stole"), ("return", "returned"), ("keep", "kept")],
    nouns=["lantern", "letter", "door", "boat", "gate", "window", "ledger", "compass", "kettle", "photograph",
           "scarf", "rope", "key", "map", "suitcase", "chair", "clock", "net", "candle", "basket", "telegram",
           "violin", "ring", "umbrella", "oar", "bottle", "coat", "hammer", "bell", "notebook", "spoon",
           "shawl", "bicycle", "pocket watch", "jar of honey", "bundle of papers", "tin box", "fiddle",
           "sack of flour", "wooden toy"],
    adjs=["old", "wet", "broken", "heavy", "small", "rusty", "narrow", "dark", "yellow", "cold", "familiar",
          "empty", "borrowed", "forgotten", "silver", "crooked", "battered", "tiny", "warm", "dusty", "faded",
          "brass", "painted", "cracked", "green", "muddy", "stolen", "precious", "strange", "heavy wooden"],
    places=["kitchen", "harbour", "lighthouse", "attic", "cliff path", "station", "churchyard", "chapel",
            "ferry", "orchard", "boathouse", "market", "schoolroom", "bakery", "mill", "bridge", "cellar",
            "parlour", "quay", "garden wall", "post office", "inn", "barn", "stairs", "beach", "hayloft",
            "workshop", "lane", "pier", "square"],
    preps=["in the", "near the", "behind the", "beside the", "outside the", "above the", "below the",
           "across the", "by the", "past the"],
    intros=["Later", "That night", "In the morning", "For a while", "Outside", "Before long", "Once",
            "Afterwards", "At dawn", "Without a word", "In the end", "By noon", "Just then", "At first",
            "All the same", "Even then", "On Tuesday", "After supper", "Some days later", "Meanwhile"],
    times=["midnight", "dawn", "supper", "the first frost", "Sunday", "payday", "the next tide",
           "the harvest", "Easter", "the funeral", "the last train", "nightfall", "the wedding",
           "market day"],
    advs=["slowly", "carefully", "without a word", "at last", "once more", "in silence", "gently", "twice",
          "at once", "with great care", "clumsily", "without hurrying", "reluctantly", "from habit"],
    moves=["walked", "ran", "hurried", "drove", "rowed", "climbed", "wandered", "cycled", "limped"],
    weather=["fog", "rain", "snow", "frost", "dark", "tide", "storm", "wind", "smoke"],
    smells=["tar", "rain", "woodsmoke", "bread", "salt", "lilac", "paraffin", "wet wool", "apples", "coal",
            "seaweed", "candle wax", "fresh paint", "tobacco"],
    seasons=["winter", "summer", "spring", "autumn", "flood", "fire", "strike", "drought", "fever"],
    surfaces=["table", "floor", "step", "bench", "windowsill", "quay", "dresser", "doorstep", "counter"],
    silences=["did not answer", "said nothing", "only shrugged", "looked away", "began to laugh",
              "kept silent", "stared at the floor", "smiled a little", "turned to the window"],
    reached=["had reached", "had crept into", "had settled over", "had covered", "had found",
             "lay thick over"],
    lay=["lay on", "sat on", "stood on", "waited on", "had been left on", "rested on"],
    went_back=["went back to", "returned to", "came back to", "hurried back to", "drifted back to"],
    moods=["cold", "quiet", "dark", "warm", "strange", "lonely", "peaceful", "crowded", "grey", "bright"],
)
FICTION_PATTERNS = ["{S} {past} the {adj} {noun} {loc}.",
                    "{intro}, {s} {past} the {noun} and {past2} the {adj} {noun2}.", '"{line}" said {s}.',
                    '"{question}" {s} asked {adv}.', "{S} had {kept} the {noun} since {time}.",
                    "The {noun} {loc} was {adj} and {adj2}.", "{S} thought of the {adj} {noun} {loc}.",
                    "By {time}, the {weather} {reached} the {place}.",
                    "{S} and {s2} {move} to the {place} before {time}.",
                    "{a_adj} {noun} {lay} the {surface}, and {s} {past} it {adv}.", "{S} {silence}.",
                    "Nobody {loc} remembered the {season} of {year}.",
                    "{S} {past} the {noun}, then {past2} it {adv}.",
                    "{intro}, {s} {went_back} the {place} {adv}.",
                    "The {place} smelled of {smell} and {smell2}.",
                    "{S} {past} the {noun} while {s2} {past2} the {noun2}.",
                    "{intro}, the {person} {past} {a_adj} {noun}.", "{S} waited {loc} until {time}.",
                    "It was {mood} {loc} that {season}.", "{S} {move} {loc}, carrying the {noun}."]
FICTION_LINES = ["I {past} the {noun} {loc}.", "We should {base} the {noun} before {time}.",
                 "{Name2} never mentioned the {adj} {noun}.", "Leave the {noun} {loc}.",
                 "It was {adj}, like the {noun} {loc}.", "{Name2} will {base} the {noun} after {time}.",
                 "The {weather} is coming {loc}.", "Bring the {noun} to the {place}.",
                 "I saw {name2} {loc} with {a_adj} {noun}."]
FICTION_QUESTIONS = ["Did you {base} the {noun}?", "Who {past} the {adj} {noun}?",
                     "Why is the {noun} so {adj}?", "Is the {noun} {loc}?",
                     "Will {name2} {base} the {noun} before {time}?", "Was it {mood} {loc}?",
                     "Have you seen the {adj} {noun}?"]


def fiction_sentence(rng: random.Random, cast: list[str]) -> str:
    f = FICTION
    (base, past), (_, past2) = rng.choice(f["verbs"]), rng.choice(f["verbs"])

    def subject() -> str:
        if rng.random() < 0.7:
            return rng.choice(cast)
        return "the " + (f"{rng.choice(f['adjs'])} " if rng.random() < 0.3 else "") + rng.choice(f["people"])

    def pick(name: str) -> str:
        return rng.choice(f[name])

    adjs, smells = rng.sample(f["adjs"], 2), rng.sample(f["smells"], 2)

    slots = dict(
        s=subject(), s2=subject(), name2=rng.choice(cast), base=base, past=past, past2=past2,
        noun=pick("nouns"), noun2=pick("nouns"), adj=adjs[0], adj2=adjs[1],
        a_adj=article("a", pick("adjs")), place=pick("places"), loc=f"{pick('preps')} {pick('places')}",
        intro=pick("intros"), time=pick("times"), adv=pick("advs"), move=pick("moves"),
        weather=pick("weather"),
        smell=smells[0], smell2=smells[1], season=pick("seasons"), surface=pick("surfaces"),
        silence=pick("silences"), mood=pick("moods"), person=pick("people"), reached=pick("reached"),
        lay=pick("lay"), went_back=pick("went_back"),
        kept=rng.choice(["kept", "hidden", "carried", "guarded", "owned",
                         "wanted"]), year=rng.randint(1880, 1950),
    )
    slots["S"], slots["Name2"] = cap(slots["s"]), cap(slots["name2"])
    slots["line"] = cap(rng.choice(FICTION_LINES).format(**slots))[:-1] + ","  # "I did it," said Ruth.
    slots["question"] = cap(rng.choice(FICTION_QUESTIONS).format(**slots))
    return cap(rng.choice(FICTION_PATTERNS).format(**slots))


# ---------------------------------------------------------------------------------------------
# Noise: spam, very short pages, digit/symbol dumps, encoding damage.

SPAM_KEYWORDS = ["cheap watches", "best price", "replica bags", "free shipping", "weight loss pills",
                 "crypto signals", "casino bonus", "payday loans", "cheap flights", "work from home",
                 "discount sneakers", "seo backlinks", "miracle diet", "forex robot", "free followers",
                 "cheap hosting", "luxury handbags", "essay writing", "instant loans", "slot machines",
                 "gold coins", "vpn deals", "hair regrowth", "lottery tips"]
SHORT_WEB = ["Page not found.", "Loading...", "Click here to continue", "Coming soon!", "Under construction",
             "Access denied.", "Please enable JavaScript to view this page.", "Thank you for your order.",
             "No results found.", "Redirecting...", "Hello world", "Error 404", "Session expired.",
             "Out of stock", "Comments are closed.", "Video unavailable", "Login | Register",
             "Sorry, this page has moved.", "Follow us", "Read more", "Maintenance in progress.",
             "This domain is for sale.", "Temporarily offline", "Subscribe", "Nothing here yet.", "Gallery",
             "Back to top", "Index of /uploads", "Forbidden", "Service unavailable", "Tags: news",
             "Sign in to continue", "Posted in Uncategorized", "Seite nicht gefunden.", "Page introuvable",
             "Página no encontrada", "页面未找到", "ページが見つかりません", "Страница не найдена", "OK"]
SHORT_LANG = {"Seite nicht gefunden.": "de", "Page introuvable": "fr", "Página no encontrada": "es",
              "页面未找到": "zh", "ページが見つかりません": "ja", "Страница не найдена": "ru", "OK": "und"}
SHORT_FORUM = ["+1", "Same here.", "Thanks!", "bump", "This.", "lol", "Any update?", "Solved, thanks.",
               "Following.", "Nice work!", "Me too", "Great post, thanks for sharing.", "What version?",
               "Works for me.", "Can confirm.", "Not sure.", "Did you try restarting?", "^ this", "Agreed.",
               "Wow.", "Bookmarked.", "Link is dead.", "Cheers mate", "haha", "Subscribed.", "Gracias!",
               "Danke!", "Merci beaucoup", "Ok thanks", "Good luck!"]


def spam_text(rng: random.Random) -> str:
    style = rng.randrange(4)
    kws = rng.sample(SPAM_KEYWORDS, 3)
    if style == 0:  # keyword stuffing
        return " ".join(rng.choice(kws) for _ in range(rng.randint(40, 90))) + f" {kws[0]} {kws[0]}!"
    if style == 1:
        shout = ["BUY NOW!!!", "LIMITED OFFER!!!", "CLICK HERE!!!", "ACT FAST!!!", "100% FREE!!!"]
        return " ".join(rng.choice(shout) for _ in range(rng.randint(25, 60))) + f" {kws[0].upper()}!!!"
    if style == 2:  # lists of links
        lines = [f"Best {rng.choice(kws)} deals: http://deal-{rng.randint(100, 999)}.spam.example/"
                 f"{rng.choice(kws).replace(' ', '-')}?ref={rng.randint(1000, 9999)}"
                 for _ in range(rng.randint(15, 35))]
        return "\n".join(lines)
    return (f"Make ${rng.randint(2, 9)},000 a week from home!!! {cap(kws[0])}, {kws[1]} and {kws[2]}. "
            f"Visit http://{kws[0].replace(' ', '')}.spam.example now. Call 1-800-{rng.randint(100, 999)}-"
            f"{rng.randint(1000, 9999)}. " * rng.randint(3, 8)).strip()


def symbols_text(rng: random.Random) -> str:
    style = rng.randrange(6)
    n = rng.randint(15, 40)
    if style == 0:
        rows = [f"Item {rng.randint(1000, 9999)} | ${rng.randint(1, 300)}.{rng.randint(0, 99):02d} | qty "
                f"{rng.randint(1, 50)} | SKU-{rng.randint(10000, 99999)}-{rng.choice('ABCDEF')}"
                for _ in range(n)]
        return "Price list\n" + "\n".join(rows)
    if style == 1:
        rows = [f"2023-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d} {rng.randint(0, 23):02d}:"
                f"{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d},{rng.randint(0, 999):03d} "
                f"{rng.choice(['INFO', 'WARN', 'ERROR', 'DEBUG'])} [worker-{rng.randint(0, 15)}] processed "
                f"{rng.randint(0, 99999)} rows in {rng.uniform(0, 9):.2f}s" for _ in range(n)]
        return "\n".join(rows)
    if style == 2:
        raw = en_sentence(rng, rng.choice(list(TOPICS))).encode() * 3
        rows = []
        for off in range(0, min(len(raw), 16 * n), 16):
            chunk = raw[off:off + 16]
            hexes = " ".join(f"{b:02x}" for b in chunk)
            shown = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
            rows.append(f"{off:08x}  {hexes:<47}  |{shown}|")
        return "\n".join(rows)
    if style == 3:
        rows = [f"| {1900 + i * rng.randint(1, 5)} | {rng.uniform(0, 99):.1f} | {rng.uniform(-5, 5):+.2f} | "
                f"{rng.randint(0, 10**6):,} |" for i in range(n)]
        return "| Year | Value | Change | Count |\n|---|---|---|---|\n" + "\n".join(rows)
    if style == 4:
        junk = ["★★★★☆", "!!!", "###", "@@@", "$$$", "%%%", "^^^", "&&&", "***", "(((", ")))", "<<<", ">>>",
                "~~~", "|||", "§§", "¶", "→→", "©®™", "±", "≈", "∞"]
        return " ".join(rng.choice(junk) for _ in range(n * 4))
    blob = base64.b64encode(rng.randbytes(n * 30)).decode()
    return "data:application/octet-stream;base64," + "\n".join(textwrap.wrap(blob, 76))


def mojibake(text: str) -> str:
    """UTF-8 bytes read as Windows-1252: 'café' -> 'cafÃ©' (bytes cp1252 lacks stay as latin-1)."""
    out = []
    for b in text.encode("utf-8"):
        try:
            out.append(bytes([b]).decode("cp1252"))
        except UnicodeDecodeError:
            out.append(chr(b))
    return "".join(out)


def smart_quotes(text: str) -> str:
    """Typographic quotes and dashes, so English text has something to garble."""
    return (text.replace(", so ", " — so ")
            + "\n\n“It’s the best thing we’ve seen all year,” one reader wrote. We couldn’t agree more.")


def replacement_chars(text: str) -> str:
    """Latin-1 text decoded as UTF-8 with errors='replace': every accented letter becomes U+FFFD."""
    return text.encode("cp1252", errors="replace").decode("utf-8", errors="replace")


# ---------------------------------------------------------------------------------------------
# Near-duplicate edits, and the 5-gram Jaccard similarity recorded for each planted pair.

EDIT_WORDS = ["remarkable", "careful", "gentle", "strange", "modest", "bright", "hidden", "nervous", "famous",
              "ordinary"]


def edit_words(rng: random.Random, text: str, n: int, words: list[str] = EDIT_WORDS) -> str:
    parts = re.split(r"(\s+)", text)
    slots = [i for i, p in enumerate(parts) if re.fullmatch(r"[a-z]{5,}", p)]
    for i in rng.sample(slots, n):
        parts[i] = rng.choice([w for w in words if w != parts[i]])
    return "".join(parts)


def insert_sentence(rng: random.Random, text: str, sentence: str) -> str:
    paras = text.split("\n\n")
    i = rng.randrange(1, len(paras))
    paras[i] = f"{paras[i]} {sentence}"
    return "\n\n".join(paras)


def swap_sentences(rng: random.Random, text: str) -> str:
    paras = text.split("\n\n")
    candidates = [i for i, p in enumerate(paras) if len(re.findall(r"[.?!] ", p)) >= 2]
    i = rng.choice(candidates)
    sents = re.split(r"(?<=[.?!]) ", paras[i])
    j = rng.randrange(len(sents) - 1)
    sents[j], sents[j + 1] = sents[j + 1], sents[j]
    paras[i] = " ".join(sents)
    return "\n\n".join(paras)


def jaccard5(a: str, b: str) -> float:
    def shingles(s: str) -> set[tuple[str, ...]]:
        w = re.findall(r"\w+", s.lower())
        return {tuple(w[i:i + 5]) for i in range(max(1, len(w) - 4))}

    sa, sb = shingles(a), shingles(b)
    return len(sa & sb) / len(sa | sb)


# ---------------------------------------------------------------------------------------------
# Records and the registry of planted duplicates.


@dataclass
class Rec:
    fields: dict  # the record as written (web/wiki/forum), or {"name", "text"} for a book
    key: str  # the text field
    lang: str
    kind: str
    loc: str = ""  # set by the writer: "web/crawl-00.jsonl:12", "forum/posts.csv:record 5", ...

    @property
    def text(self) -> str:
        return self.fields[self.key]


@dataclass
class Plants:
    exact: list[tuple[str, list[Rec]]] = field(default_factory=list)
    normalized: list[tuple[str, list[Rec]]] = field(default_factory=list)
    near: list[tuple[str, list[Rec]]] = field(default_factory=list)


def put(rng: random.Random, records: list[Rec], rec: Rec) -> Rec:
    records.insert(rng.randrange(len(records) + 1), rec)
    return rec


# ---------------------------------------------------------------------------------------------
# Web crawl: sites with their own boilerplate, JSONL in three compressions.

BOILER = {
    "en": dict(
        skip="Skip to main content",
        navs=["Home | News | Science | Travel | Food | About | Contact",
              "Home | Recipes | Baking | Quick Dinners | Shop | Contact",
              "Menu: Home · Destinations · Guides · Deals · About us",
              "Home / Blog / Archive / Projects / Contact", "Home | Topics | Newsletter | Podcast | Log in"],
        cookies=["Accept cookies",
                 "We use cookies to improve your experience. Accept cookies | Manage preferences",
                 "This site uses cookies. By continuing to browse you agree to our use of cookies. Accept"],
        footer=["Subscribe to our newsletter and never miss a story.",
                "Share this article: Facebook | Twitter | Email", "© {year} {site}. All rights reserved.",
                "Privacy Policy | Terms of Use | Cookie Settings", "Related articles", "Advertisement"]),
    "de": dict(skip="Zum Inhalt springen", navs=["Startseite | Politik | Wirtschaft | Kultur | Kontakt"],
               cookies=["Wir verwenden Cookies. Alle akzeptieren | Einstellungen"],
               footer=["Newsletter abonnieren", "© {year} {site}. Alle Rechte vorbehalten.",
                       "Impressum | Datenschutz"]),
    "fr": dict(skip="Aller au contenu", navs=["Accueil | Actualités | Culture | Contact"],
               cookies=["Ce site utilise des cookies. Tout accepter | Paramétrer"],
               footer=["Abonnez-vous à notre newsletter", "© {year} {site}. Tous droits réservés.",
                       "Mentions légales | Confidentialité"]),
    "es": dict(skip="Saltar al contenido", navs=["Inicio | Noticias | Cultura | Contacto"],
               cookies=["Usamos cookies para mejorar tu experiencia. Aceptar todas"],
               footer=["Suscríbete a nuestro boletín", "© {year} {site}. Todos los derechos reservados.",
                       "Aviso legal | Privacidad"]),
    "zh": dict(skip="跳到主要内容", navs=["首页 | 新闻 | 科技 | 旅游 | 联系我们"],
               cookies=["本网站使用Cookie。接受全部"],
               footer=["订阅我们的新闻通讯", "© {year} {site} 版权所有"]),
    "ja": dict(skip="メインコンテンツへスキップ", navs=["ホーム | ニュース | 旅行 | お問い合わせ"],
               cookies=["当サイトはクッキーを使用しています。すべて受け入れる"],
               footer=["ニュースレターを購読する", "© {year} {site} All rights reserved."]),
    "ru": dict(skip="Перейти к содержимому", navs=["Главная | Новости | Наука | Контакты"],
               cookies=["Мы используем файлы cookie. Принять все"],
               footer=["Подпишитесь на нашу рассылку", "© {year} {site}. Все права защищены."]),
}

SITES = [  # domain, name, language, lang_hint, topic (None: any)
    ("dailyscience.example.com", "Daily Science Digest", "en", "en", "science"),
    ("kitchenstories.example.net", "Kitchen Stories", "en", "en-US", "cooking"),
    ("wanderlog.example.org", "Wanderlog", "en", "en-GB", "travel"),
    ("pastandpresent.example.com", "Past & Present", "en", "en", "history"),
    ("devnotes.example.io", "Dev Notes", "en", "en", "programming"),
    ("greenthumb.example.co.uk", "Green Thumb Weekly", "en", "en-GB", "gardening"),
    ("morningledger.example.com", "The Morning Ledger", "en", "en-US", None),
    ("blog.example.net", "Just Another Blog", "en", "en", None),
    ("nachrichten.example.de", "Nachrichten am Morgen", "de", "de-DE", None),
    ("actualites.example.fr", "Actualités du Jour", "fr", "fr", None),
    ("noticias.example.es", "Noticias Hoy", "es", "es-ES", None),
    ("xinwen.example.cn", "每日新闻", "zh", "zh-CN", None),
    ("nikki.example.jp", "旅の日記", "ja", "ja", None),
    ("novosti.example.ru", "Новости дня", "ru", "ru", None),
]


class Web:
    """Makes web records: unique URLs, per-site boilerplate, noisy lang hints."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.count = 0
        self.short = SHORT_WEB[:]
        rng.shuffle(self.short)
        self.chrome = {}  # domain -> (header lines, footer lines), fixed per site
        for domain, name, lang, _, _ in SITES:
            b = BOILER[lang]
            year = rng.choice([2022, 2023, 2024])
            header = [b["skip"], rng.choice(b["navs"])] if rng.random() < 0.6 else [rng.choice(b["navs"])]
            footer = [line.format(year=year, site=name) for line in b["footer"] if rng.random() < 0.7]
            self.chrome[domain] = (header, rng.choice(b["cookies"]), footer or [b["footer"][0]])

    def site(self, lang: str, topic: str | None = None) -> tuple:
        sites = [s for s in SITES if s[2] == lang and (topic is None or s[4] in (topic, None))]
        return self.rng.choice(sites)

    def url(self, domain: str, title: str) -> str:
        self.count += 1
        slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:60] or "article"
        return f"https://{domain}/{self.rng.choice(['news', 'blog', 'articles', 'p'])}/{slug}-{self.count}"

    def hint(self, site_hint: str, lang: str) -> str:
        r = self.rng.random()
        if r < 0.04:
            return ""  # the page declared no language
        if r < 0.07:
            return "en" if lang != "en" else "und"  # template default, wrong for this page
        return site_hint

    def date(self) -> str:
        r = self.rng
        day = f"{r.choice([2023, 2024])}-{r.randint(1, 12):02d}-{r.randint(1, 28):02d}"
        return f"{day}T{r.randint(0, 23):02d}:{r.randint(0, 59):02d}:{r.randint(0, 59):02d}Z"

    def wrap(self, domain: str, body: str, chrome: bool = True, always: bool = False) -> str:
        """Surround a body with its site's header, cookie banner and footer (each often, not always)."""
        if not chrome:
            return body
        header, cookie, footer = self.chrome[domain]
        top = list(header) if always or self.rng.random() < 0.7 else []
        bottom = list(footer) if always or self.rng.random() < 0.75 else []
        if self.rng.random() < 0.5:
            (top if self.rng.random() < 0.5 else bottom).append(cookie)
        return "\n".join(top + [body] + bottom)

    def record(self, body: str, lang: str, kind: str, topic: str | None = None, chrome: bool = True,
               site: tuple | None = None, always: bool = False) -> Rec:
        domain, _, _, site_hint, _ = site or self.site(lang, topic)
        content = self.wrap(domain, body, chrome, always)
        fields = {"url": self.url(domain, body.split("\n", 1)[0]), "content": content,
                  "crawl_date": self.date(), "lang_hint": self.hint(site_hint, lang)}
        return Rec(fields, "content", lang, kind)

    def doc(self, kind: str) -> Rec:
        rng = self.rng
        if kind == "article":
            lang = rng.choices(list(WEB_LANGS), weights=list(WEB_LANGS.values()))[0]
            if lang == "en":
                topic = rng.choice(list(TOPICS))
                return self.record(en_article(rng, topic), "en", kind, topic)
            return self.record(fx_article(rng, lang), lang, kind)
        if kind == "long":
            topic = rng.choice(list(TOPICS))
            return self.record(en_long(rng, topic, rng.randint(15_000, 25_000)), "en", kind, topic)
        if kind == "spam":
            name = rng.choice(["best-deals", "top-offers", "win-big", "cheap-stuff"])
            domain = f"{name}-{rng.randint(1, 99)}"
            return self.record(spam_text(rng), "en", kind, chrome=False,
                               site=(f"{domain}.spam.example", "", "en", "en", None))
        if kind == "short":
            text = self.short.pop()
            lang = SHORT_LANG.get(text, "en")
            site = self.site("en" if lang == "und" else lang)
            return self.record(text, lang, kind, chrome=False, site=site)
        if kind == "symbols":
            return self.record(symbols_text(rng), "und", kind, chrome=False, site=self.site("en"))
        if kind == "mojibake":  # a page served as UTF-8 but decoded as Windows-1252 somewhere upstream
            lang = rng.choice(["en", "de", "fr", "es"])
            if lang == "en":
                body = smart_quotes(en_article(rng, rng.choice(list(TOPICS))))
            else:
                body = fx_article(rng, lang)
            return self.record(mojibake(body), lang, kind)
        if kind == "replacement":
            lang = rng.choice(["de", "fr", "es"])
            return self.record(replacement_chars(fx_article(rng, lang)), lang, kind)
        raise ValueError(kind)

    def file(self, spec: dict) -> list[Rec]:
        special = ("spam", "short", "symbols", "mojibake", "replacement", "long")
        kinds = [k for k in special for _ in range(spec[k])]
        kinds += ["article"] * (spec["n"] - len(kinds))
        self.rng.shuffle(kinds)
        return [self.doc(k) for k in kinds]


def build_web(rng: random.Random, web: Web) -> dict[str, list[Rec]]:
    return {name: web.file(spec) for name, spec in WEB_FILES.items()}


def malformed_web(rng: random.Random, web: Web) -> dict[int, bytes]:
    """The bad lines of crawl-00.jsonl, by line number. Each must be quarantined, not read."""
    def line(**fields) -> bytes:
        base = {"url": web.url("blog.example.net", "broken record"), **fields}
        return json.dumps(base, ensure_ascii=False).encode()

    text = en_paragraph(rng, "travel")
    bad = {
        "invalid_json": line(content=text)[:120],  # cut off mid-string, as by a crashed writer
        "not_an_object": json.dumps([web.url("blog.example.net", "array"), text, web.date()]).encode(),
        "missing_text": line(text=text, crawl_date=web.date(), lang_hint="en"),  # wrong field name
        "null_text": line(content=None, crawl_date=web.date(), lang_hint="en"),
        "non_string_text": line(content=42, crawl_date=web.date(), lang_hint="en"),
        "empty_text": line(content="", crawl_date=web.date(), lang_hint="en"),
        "nul_bytes": line(content=f"GIF89a\x00\x00\x01 binary data pasted into a page\x00 {text}",
                          crawl_date=web.date(), lang_hint="en"),
        # A Latin-1 encoded record in a UTF-8 file: b"\xe9" is not valid UTF-8.
        "invalid_utf8": line(content="Café crème et crêpes: " + text, crawl_date=web.date(), lang_hint="fr")
        .replace("é".encode(), b"\xe9").replace("è".encode(), b"\xe8").replace("ê".encode(), b"\xea"),
    }
    return {no: bad[kind] for no, kind in MALFORMED_WEB.items()}


# ---------------------------------------------------------------------------------------------
# Wiki: encyclopedia-style articles in one Parquet file.

WIKI_PLACES = ["Lisbon", "Tallinn", "Kyoto", "Genoa", "Bergen", "Porto", "Kraków", "Valparaíso", "Galway",
               "Trieste", "Ghent", "Lübeck", "Cádiz", "Hobart", "Tromsø", "Odessa", "Split", "Dubrovnik",
               "Salzburg", "Nantes"]
SECTIONS = ["History", "Description", "Legacy", "Research", "Reception", "Notable examples", "See also"]


def wiki_title(rng: random.Random, topic: str, place: str) -> str:
    noun = rng.choice(TOPICS[topic]["nouns"])
    adj = cap(rng.choice(TOPICS[topic]["adjs"]))
    return rng.choice([f"{cap(noun)} of {place}", f"{place} {noun}", f"{adj} {noun} ({place})"])


def wiki_en(rng: random.Random, kind: str) -> tuple[str, str, list[str]]:
    topic, place = rng.choice(list(TOPICS)), rng.choice(WIKI_PLACES)
    title = wiki_title(rng, topic, place)
    lex = TOPICS[topic]
    intro = (f"{title} is {article('a', rng.choice(lex['adjs']))} {rng.choice(lex['nouns'])} associated with "
             f"{place}, first recorded in {rng.randint(*lex['years'])}.")
    cats = [cap(topic), rng.choice([f"Culture of {place}", f"History of {place}",
                                    "Articles with short description",
                                    f"{rng.randint(*lex['years'])} establishments"])]
    if rng.random() < 0.05:
        cats = []  # uncategorised pages exist
    if kind == "stub":
        return title, intro, cats
    parts = [f"{intro} {en_paragraph(rng, topic, 2, 4)}"]
    for sec in rng.sample(SECTIONS[:-1], rng.randint(2, 4)):
        parts += [f"== {sec} ==", en_paragraph(rng, topic, 4, 7)]
    if kind == "table":
        rows = [f"| {1850 + 10 * i} || {rng.randint(1000, 900000):,} || {rng.uniform(-3, 3):+.1f}%"
                for i in range(16)]
        parts += ["== Demographics ==", '{| class="wikitable"\n! Year !! Population !! Change\n|-\n'
                  + "\n|-\n".join(rows) + "\n|}"]
    if rng.random() < 0.4:
        links = [f"* {wiki_title(rng, topic, rng.choice(WIKI_PLACES))}" for _ in range(3)]
        parts += ["== See also ==", "\n".join(links)]
    return title, "\n\n".join(parts), cats


def wiki_fx(rng: random.Random, lang: str) -> tuple[str, str, list[str]]:
    place = rng.choice(WIKI_PLACES)
    title = {"de": f"Hafen von {place}", "fr": f"Port de {place}"}[lang]
    body = [fx_paragraph(rng, lang), f"== {FOREIGN[lang]['heading']} ==", fx_paragraph(rng, lang, 4, 6),
            fx_paragraph(rng, lang)]
    cats = {"de": ["Hafen", f"Geographie ({place})"], "fr": ["Port", f"Géographie de {place}"]}[lang]
    return title, "\n\n".join(body), cats


def build_wiki(rng: random.Random) -> list[Rec]:
    recs, page_id = [], 1000
    kinds = ["stub"] * 12 + ["table"] * 10 + ["normal"] * (WIKI_ROWS["en"] - 22)
    langs = [("en", k) for k in kinds] + [("de", "normal")] * WIKI_ROWS["de"]
    langs += [("fr", "normal")] * WIKI_ROWS["fr"]
    rng.shuffle(langs)
    for lang, kind in langs:
        title, text, cats = wiki_en(rng, kind) if lang == "en" else wiki_fx(rng, lang)
        page_id += rng.randint(1, 40)
        fields = {"title": title, "text": text, "categories": cats, "page_id": page_id}
        recs.append(Rec(fields, "text", lang, kind))
    return recs


def next_page_id(recs: list[Rec]) -> int:
    return max(r.fields["page_id"] for r in recs) + 1


# ---------------------------------------------------------------------------------------------
# Forum: short posts in a CSV, some quoted multi-line bodies with commas and quotes.

USER_A = ["quiet", "happy", "grumpy", "lazy", "rusty", "brave", "sleepy", "salty", "clever", "lucky"]
USER_B = ["otter", "fox", "badger", "heron", "gecko", "walrus", "panda", "yak", "moth", "lynx"]
GREETINGS = ["Hi all,", "Hey everyone,", "Quick question:", "Long time lurker, first post.", "", "", "Hello,"]
QUESTIONS = ["Has anyone else seen this?", "Any ideas what I am doing wrong?", "Is this normal?",
             "What would you recommend?", "Does this make sense, or am I missing something?"]
SIGNOFFS = ["Thanks in advance!", "Cheers,", "Any help appreciated.", "", "", "Thanks, folks."]


def forum_body(rng: random.Random, kind: str, previous: str, lang: str) -> str:
    topic = rng.choice(list(TOPICS))
    if kind == "question":
        parts = [rng.choice(GREETINGS), en_paragraph(rng, topic, 1, 3), rng.choice(QUESTIONS),
                 rng.choice(SIGNOFFS)]
        return " ".join(p for p in parts if p)
    if kind == "answer":
        return (f"I had the same problem with {np(rng, TOPICS[topic])}. {en_paragraph(rng, topic, 1, 3)} "
                f"{rng.choice(['Hope that helps.', 'YMMV.', 'Good luck, and report back!', ''])}").strip()
    if kind == "quote":  # multi-line: a quoted line from an earlier post, then the reply
        first = re.split(r"(?<=[.?!]) ", previous.split("\n")[0])[0][:200]
        return f"> {first}\n\n{en_paragraph(rng, topic, 1, 3)}"
    if kind == "list":
        steps = "\n".join(f"{i}. {en_sentence(rng, topic)}" for i in range(1, rng.randint(3, 6)))
        return f"Steps I tried, in order:\n{steps}\nNone of them worked, so far."
    if kind == "code":
        error = rng.choice(["KeyError: name", "timeout after 30s", "invalid header, line 2"])
        return (f"Here is my config, copied as-is:\n\n"
                f"    retries = {rng.randint(1, 9)}, timeout = {rng.randint(5, 120)}\n"
                f'    name = "test, with a comma"\n    path = "C:\\\\data\\\\run_{rng.randint(1, 99)}"\n\n'
                f'It fails with "{error}". {rng.choice(QUESTIONS)}')
    if kind == "long":
        return "\n\n".join(en_paragraph(rng, topic, 5, 7) for _ in range(4))
    if kind == "spam":
        return spam_text(rng)
    if kind == "symbols":
        return symbols_text(rng)
    if kind == "mojibake":
        return mojibake(fx_paragraph(rng, lang))
    if kind == "foreign":
        return fx_paragraph(rng, lang, 2, 4)
    raise ValueError(kind)


def build_forum(rng: random.Random) -> list[Rec]:
    users = [f"{a}_{b}{rng.randint(1, 99)}" for a in USER_A for b in USER_B]
    rng.shuffle(users)
    weights = [1 / (i + 1) for i in range(len(users))]  # a few prolific posters
    counts = dict(short=25, spam=15, symbols=12, mojibake=5, es=20, de=12, fr=8, long=3, code=40, list=40,
                  quote=60)
    kinds = [k for k, n in counts.items() for _ in range(n)]  # es/de/fr: posts in that language
    kinds += [rng.choice(["question", "answer"]) for _ in range(FORUM_POSTS - len(kinds))]
    rng.shuffle(kinds)
    shorts = SHORT_FORUM[:]
    rng.shuffle(shorts)
    recs, post_id, previous = [], 100_000, "I think so."
    for kind in kinds:
        lang = kind if kind in FOREIGN else "und" if kind == "symbols" else "en"
        if kind in FOREIGN:
            kind = "foreign"
        if kind == "mojibake":
            lang = rng.choice(["fr", "es", "de"])
        body = shorts.pop() if kind == "short" else forum_body(rng, kind, previous, lang)
        if kind == "short" and body in ("Gracias!", "Danke!", "Merci beaucoup"):
            lang = {"Gracias!": "es", "Danke!": "de", "Merci beaucoup": "fr"}[body]
        previous = body
        post_id += rng.randint(1, 9)
        fields = {"post_id": post_id, "author": rng.choices(users, weights)[0], "body": body,
                  "score": rng.randint(-5, 40) if rng.random() < 0.9 else rng.randint(41, 900)}
        recs.append(Rec(fields, "body", lang, kind))
    return recs


# ---------------------------------------------------------------------------------------------
# Books: one document per .txt file, hard-wrapped like scanned e-texts, some tens of KB.

BOOK_TITLES = ["The Lighthouse Keeper", "A Winter at Elm Cove", "The Ferryman's Ledger", "Salt and Iron",
               "The Quiet Harbour", "Letters from the Orchard", "The Clockmaker's Daughter",
               "North of the Mill", "The Borrowed Violin", "A Map of Small Islands", "The Schoolroom Fire",
               "Nights at the Station", "The Silver Compass", "Fog over Ashby"]
BOOK_HEADER = ("The Open Shelf edition of {title}, by {author}\n\n"
               "This text is in the public domain. It may be copied, shared and changed without restriction."
               "\n\n*** START OF THE OPEN SHELF TEXT: {upper} ***")
BOOK_FOOTER = ("*** END OF THE OPEN SHELF TEXT: {upper} ***\n\n"
               "Produced by volunteers of the Open Shelf project. Corrections are welcome; see the project "
               "notes for how to report errors in this edition.")
AUTHORS = ["E. M. Hartley", "Josephine Crane", "Albert Lindqvist", "Mary Ashdown", "Harold Pike",
           "Winifred Shaw"]


def wrap(paragraph: str) -> str:
    return textwrap.fill(paragraph, width=72)


def en_book(rng: random.Random, title: str, target: int) -> str:
    cast = rng.sample(FICTION["names"], 6)
    author = rng.choice(AUTHORS)
    out = [BOOK_HEADER.format(title=title, author=author, upper=title.upper()), title.upper(), f"by {author}"]
    chapter = 0
    while sum(len(p) + 2 for p in out) < target:
        chapter += 1
        out.append(f"CHAPTER {chapter}")
        for _ in range(rng.randint(4, 9)):
            out.append(wrap(" ".join(fiction_sentence(rng, cast) for _ in range(rng.randint(3, 8)))))
    out.append(BOOK_FOOTER.format(upper=title.upper()))
    return "\n\n".join(out) + "\n"


def fx_book(rng: random.Random, lang: str, target: int) -> str:
    out = [cap(rng.choice(FOREIGN[lang]["titles"]).format(place=rng.choice(FOREIGN[lang]["place"])))]
    chapter, seen = 0, set()
    while sum(len(p.encode()) for p in out) < target:
        chapter += 1
        out.append(FOREIGN[lang]["chapter"].format(n=chapter))
        out += [wrap(fx_paragraph(rng, lang, 4, 7, seen)) for _ in range(rng.randint(3, 6))]
    return "\n\n".join(out) + "\n"


def book_name(i: int, title: str) -> str:
    return f"{i:02d}_{re.sub(r'[^a-z0-9]+', '-', title.lower()).strip('-')}.txt"


def build_books(rng: random.Random) -> list[Rec]:
    sizes = [rng.randint(28_000, 36_000) for _ in range(4)] + [rng.randint(10_000, 25_000) for _ in range(8)]
    sizes += [rng.randint(2_000, 6_000) for _ in range(2)]
    recs = []
    for i, (title, size) in enumerate(zip(BOOK_TITLES, sizes, strict=True), 1):
        fields = {"name": book_name(i, title), "text": en_book(rng, title, size)}
        recs.append(Rec(fields, "text", "en", "book"))
    for lang, slug in [("de", "winterreise"), ("fr", "carnet-de-voyage"), ("es", "cronicas-del-puerto"),
                       ("ru", "zapiski")]:
        name = f"{len(recs) + 1:02d}_{slug}.txt"
        fields = {"name": name, "text": fx_book(rng, lang, rng.randint(3_000, 6_000))}
        recs.append(Rec(fields, "text", lang, "book"))
    # Encoding quirks that are still valid UTF-8: a BOM, CRLF line ends, a garbled preface.
    recs[1].fields["bom"] = True
    recs[2].fields["crlf"] = True
    preface = mojibake("Preface — “a note on this edition”: café, naïve, façade.\n\n")
    recs[3].fields["text"] = preface + recs[3].text
    recs[3].kind = "book+mojibake"
    return recs


# ---------------------------------------------------------------------------------------------
# Planting: duplicates and near duplicates within and across sources.


def plant(rng: random.Random, web: Web, files: dict[str, list[Rec]], wiki: list[Rec], forum: list[Rec],
          books: list[Rec]) -> Plants:
    """Insert duplicate and near-duplicate copies at random positions; record the groups."""
    p = Plants()
    w0, w1, w2, w3 = (files[n] for n in WEB_FILES)
    mirror = ("wikimirror.example.org", "", "en", "en", None)
    used: list[Rec] = []

    def pick(recs: list[Rec], lang: str, min_words: int = 0) -> Rec:
        """An original article not planted yet, so that planted groups stay apart."""
        cands = [r for r in recs if r.kind in ("article", "normal") and r.lang == lang
                 and len(r.text.split()) >= min_words and not any(r is u for u in used)]
        used.append(rng.choice(cands))
        return used[-1]

    def web_copy(rec: Rec, content: str | None = None, site: tuple | None = None) -> Rec:
        """Same (or given) content under a new URL: mirrors, syndication."""
        domain = (site or web.site(rec.lang))[0]
        fields = {"url": web.url(domain, "copy"), "content": rec.text if content is None else content,
                  "crawl_date": web.date(), "lang_hint": rec.fields.get("lang_hint", rec.lang)}
        return Rec(fields, "content", rec.lang, "copy")

    def clone(rec: Rec, **changes) -> Rec:
        return Rec(dict(rec.fields, **changes), rec.key, rec.lang, "copy")

    def plain(topic: str, paras: tuple[int, int] = (2, 5), min_words: int = 0) -> Rec:
        """A new English web article without site boilerplate."""
        return web.record(en_article(rng, topic, paras, min_words), "en", "article", topic, chrome=False)

    # Exact duplicates.
    release = plain("science")
    release.kind = "press_release"
    copies = [put(rng, w0, release)] + [put(rng, f, web_copy(release)) for f in (w0, w1, w2, w3)]
    p.exact.append(("press release syndicated to five sites (across all four web files)", copies))
    a = pick(w0, "en")
    b = clone(a, url=a.fields["url"] + "?utm_source=newsletter&utm_medium=email")
    p.exact.append(("same page crawled twice, second URL with tracking parameters", [a, put(rng, w0, b)]))
    for src, dst, lang, why in [(w1, w2, "en", "article in the .gz file repeated in the .zst file"),
                                (w1, w3, "de", "German article in the .gz file and in crawl-03"),
                                (w2, w2, "zh", "Chinese article twice in the .zst file")]:
        a = pick(src, lang)
        p.exact.append((why, [a, put(rng, dst, web_copy(a))]))
    a = pick(wiki, "en")
    p.exact.append(("wiki article copied verbatim by a mirror site (wiki -> web)",
                    [a, put(rng, w1, web_copy(a, site=mirror))]))
    a = pick(wiki, "en")
    twin = clone(a, title=a.fields["title"] + " (disambiguation)", page_id=next_page_id(wiki))
    p.exact.append(("two wiki pages with identical text", [a, put(rng, wiki, twin)]))
    a = plain("programming")
    post = Rec({"post_id": 999_001, "author": "lazy_moth7", "body": a.text, "score": 3}, "body", "en", "copy")
    p.exact.append(("web article pasted whole into a forum post (web -> forum)",
                    [put(rng, w3, a), put(rng, forum, post)]))
    spam = spam_text(rng)
    posts = [Rec({"post_id": 999_010 + i, "author": f"deals_bot{i}", "body": spam, "score": -3}, "body", "en",
                 "spam") for i in range(3)]
    p.exact.append(("spam cross-posted three times in the forum", [put(rng, forum, r) for r in posts]))
    books.insert(5, clone(books[4], name=books[4].fields["name"].replace(".txt", "-mirror.txt")))
    p.exact.append(("book file duplicated under another name", [books[4], books[5]]))

    # Differ only in whitespace or Unicode normalization: duplicates once text is normalized.
    a = pick(w0, "en")
    spaced = web_copy(a, a.text.replace("\n", "  \r\n").replace(". ", ".  ") + "\n")
    p.normalized.append(("CRLF line ends, trailing and double spaces", [a, put(rng, w3, spaced)]))
    a = pick(w2, "fr")
    nfd = unicodedata.normalize("NFD", a.text)
    assert nfd != a.text
    p.normalized.append(("French article, NFC vs NFD accents", [a, put(rng, w1, web_copy(a, nfd))]))

    # Near duplicates: long originals (>= 300 words) so 5-gram Jaccard stays >= 0.8.
    orig = plain("travel", (4, 5), 300)
    footer = ("\n\nThis story first appeared in Wanderlog. Republished with permission. "
              "Subscribe to our newsletter for more travel stories.")
    variants = [(w0, edit_words(rng, orig.text, 3)),
                (w1, insert_sentence(rng, orig.text, en_sentence(rng, "travel"))),
                (w2, orig.text + footer)]
    p.near.append(("travel story and three edited copies: 3 words changed, a sentence inserted, "
                   "a footer added",
                   [put(rng, w0, orig)] + [put(rng, f, web_copy(orig, text)) for f, text in variants]))
    orig = plain("history", (4, 5), 300)
    swapped = web_copy(orig, swap_sentences(rng, orig.text))
    p.near.append(("two adjacent sentences swapped", [put(rng, w1, orig), put(rng, w3, swapped)]))
    body = en_article(rng, "cooking", (5, 6), min_words=450)
    a, b = (web.record(body, "en", "article", "cooking", site=site, always=True)
            for site in (SITES[1], SITES[7]))
    p.near.append(("same recipe on two sites, each with its own boilerplate",
                   [put(rng, w1, a), put(rng, w2, b)]))
    body = fx_article(rng, "fr")
    while len(body.split()) < 300:
        body += "\n\n" + fx_paragraph(rng, "fr")
    orig = web.record(body, "fr", "article", chrome=False)
    edited = web_copy(orig, edit_words(rng, body, 2, ["toujours", "vraiment", "encore", "jamais"]))
    p.near.append(("French article, two words changed", [put(rng, w2, orig), put(rng, w0, edited)]))
    a = pick(wiki, "en", 300)
    credit = (f'\n\nThis article uses material from the wiki article "{a.fields["title"]}", which is '
              "released under the Creative Commons Attribution-Share-Alike License 4.0.")
    p.near.append(("wiki article on a mirror site with an attribution footer (wiki -> web)",
                   [a, put(rng, w3, web_copy(a, a.text + credit, site=mirror))]))
    a = pick(wiki, "en", 300)
    rev = clone(a, title=a.fields["title"] + " (old revision)", page_id=next_page_id(wiki),
                text=insert_sentence(rng, a.text, en_sentence(rng, "history")))
    p.near.append(("two wiki revisions, one sentence apart", [a, put(rng, wiki, rev)]))
    a = next(r for r in forum if r.kind == "long")
    edit = "\n\nEDIT: reposting because the first thread got locked."
    repost = clone(a, post_id=999_020, body=a.text + edit)
    p.near.append(("long forum post reposted with an EDIT line", [a, put(rng, forum, repost)]))
    a = books[7]
    second = insert_sentence(rng, edit_words(rng, a.text, 3),
                             "This edition restores a passage cut from the first printing.")
    second = second.replace("The Open Shelf edition", "The Open Shelf second edition", 1)
    books.insert(8, clone(a, name=a.fields["name"].replace(".txt", "-2nd-edition.txt"), text=second))
    p.near.append(("book and its second edition (a sentence added, 3 words changed)", [a, books[8]]))
    return p


# ---------------------------------------------------------------------------------------------
# Writers. Each sets rec.loc (where the record landed) for the manifest.


def jsonl_bytes(recs: list[Rec], rel: str, ascii_only: bool, bad: dict[int, bytes] | None = None) -> bytes:
    lines = [json.dumps(r.fields, ensure_ascii=ascii_only).encode() for r in recs]
    for no in sorted(bad or {}):  # ascending, so each lands on its own line number
        assert no <= len(lines) + 1, f"{rel} is too short for a bad line at {no}"
        lines.insert(no - 1, bad[no])
    good = iter(recs)
    for no in range(1, len(lines) + 1):
        if no not in (bad or {}):
            next(good).loc = f"{rel}:{no}"
    return b"\n".join(lines) + b"\n"


def write_web(out: Path, files: dict[str, list[Rec]], bad: dict[int, bytes]) -> None:
    (out / "web").mkdir(parents=True)
    for name, recs in files.items():
        rel = f"web/{name}"
        if name.endswith(".gz"):
            data = gzip.compress(jsonl_bytes(recs, rel, False), compresslevel=9, mtime=0)
        elif name.endswith(".zst"):  # this one escapes non-ASCII as \uXXXX, as some crawlers do
            zstd = zstandard.ZstdCompressor(level=19, write_checksum=True)
            data = zstd.compress(jsonl_bytes(recs, rel, True))
        else:
            data = jsonl_bytes(recs, rel, False, bad if name == "crawl-00.jsonl" else None)
        (out / rel).write_bytes(data)


def write_wiki(out: Path, recs: list[Rec]) -> None:
    (out / "wiki").mkdir(parents=True)
    schema = pa.schema([("title", pa.string()), ("text", pa.string()), ("categories", pa.list_(pa.string())),
                        ("page_id", pa.int64())])
    table = pa.Table.from_pylist([r.fields for r in recs], schema=schema)
    pq.write_table(table, out / "wiki/articles.parquet", compression="zstd", row_group_size=128)
    for row, r in enumerate(recs, 1):
        r.loc = f"wiki/articles.parquet:row {row}"


def write_forum(out: Path, recs: list[Rec]) -> dict:
    """Returns the malformed row's location. Bodies with newlines, commas or quotes get quoted by csv."""
    (out / "forum").mkdir(parents=True)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["post_id", "author", "body", "score"])
    bad = {}
    for no, r in enumerate(recs, 1):
        if no == MALFORMED_CSV_RECORD:  # five fields: an unquoted comma inside the body
            bad = {"file": "forum/posts.csv", "record": no, "line": buf.getvalue().count("\n") + 1,
                   "kind": "malformed_row", "what": "5 fields instead of 4 (unquoted comma in body)"}
            buf.write("999999,careless_poster,I pasted this without quotes, so the comma splits it,2\n")
        r.loc = f"forum/posts.csv:record {no + (no >= MALFORMED_CSV_RECORD)}"
        w.writerow([r.fields[k] for k in ("post_id", "author", "body", "score")])
    (out / "forum/posts.csv").write_text(buf.getvalue(), encoding="utf-8", newline="")
    return bad


def write_books(out: Path, recs: list[Rec]) -> None:
    (out / "books").mkdir(parents=True)
    for r in recs:
        text = r.text.replace("\n", "\r\n") if r.fields.get("crlf") else r.text
        data = (b"\xef\xbb\xbf" if r.fields.get("bom") else b"") + text.encode("utf-8")
        (out / "books" / r.fields["name"]).write_bytes(data)
        r.loc = f"books/{r.fields['name']}"


# ---------------------------------------------------------------------------------------------


def tally(values) -> dict[str, int]:
    return dict(sorted(Counter(values).items()))


def manifest(p: Plants, sources: dict[str, list[Rec]], bad_web: dict[int, bytes], bad_csv: dict) -> dict:
    def near(why: str, recs: list[Rec]) -> dict:
        sims = [round(jaccard5(recs[0].text, r.text), 3) for r in recs[1:]]
        assert all(0.8 <= s < 1 for s in sims), (why, sims)  # planted near dups must be near, not equal
        return {"why": why, "original": recs[0].loc, "copies": [r.loc for r in recs[1:]],
                "jaccard_5gram": sims}

    for why, recs in p.exact:
        assert len({r.text for r in recs}) == 1, why
    malformed = [{"file": "web/crawl-00.jsonl", "line": no, "kind": kind}
                 for no, kind in MALFORMED_WEB.items()]
    return {
        "counts": {src: len(recs) + (len(bad_web) if src == "web" else 1 if src == "forum" else 0)
                   for src, recs in sources.items()},
        "languages": {src: tally(r.lang for r in recs) for src, recs in sources.items()},
        "kinds": {src: tally(r.kind for r in recs) for src, recs in sources.items()},
        "exact_duplicates": [{"why": why, "copies": [r.loc for r in recs]} for why, recs in p.exact],
        "normalized_duplicates": [{"why": why, "copies": [r.loc for r in recs]}
                                  for why, recs in p.normalized],
        "near_duplicates": [near(why, recs) for why, recs in p.near],
        "malformed": malformed + [bad_csv],
    }


def main(argv: list[str]) -> None:
    out = Path(argv[1]) if len(argv) > 1 else DEFAULT_OUT
    if out.exists():
        # Only ever delete a folder this script wrote (or an empty one), never a mistyped path.
        if any(out.iterdir()) and not (out / "manifest.json").exists():
            sys.exit(f"refusing to replace {out}: not empty and not written by make_data.py")
        shutil.rmtree(out)
    out.mkdir(parents=True)
    # One generator per source, so changing one source leaves the others' bytes alone.
    names = ("web", "wiki", "forum", "books", "plant", "bad")
    rngs = {name: random.Random(f"{SEED}:{name}") for name in names}
    web = Web(rngs["web"])
    files = build_web(rngs["web"], web)
    wiki, forum, books = build_wiki(rngs["wiki"]), build_forum(rngs["forum"]), build_books(rngs["books"])
    plants = plant(rngs["plant"], web, files, wiki, forum, books)
    bad_web = malformed_web(rngs["bad"], web)

    write_web(out, files, bad_web)
    write_wiki(out, wiki)
    bad_csv = write_forum(out, forum)
    write_books(out, books)

    web_recs = [r for recs in files.values() for r in recs]
    sources = {"web": web_recs, "wiki": wiki, "forum": forum, "books": books}
    info = manifest(plants, sources, bad_web, bad_csv)
    text = json.dumps(info, indent=1, ensure_ascii=False) + "\n"
    (out / "manifest.json").write_text(text, encoding="utf-8")

    print(f"{'file':<40} {'records':>8} {'bytes':>10}")
    per_file = Counter(r.loc.rsplit(":", 1)[0] for recs in sources.values() for r in recs)
    per_file["web/crawl-00.jsonl"] += len(bad_web)
    per_file["forum/posts.csv"] += 1
    total = 0
    for path in sorted(p for p in out.rglob("*") if p.is_file()):
        rel = path.relative_to(out).as_posix()
        size = path.stat().st_size
        total += size
        if not rel.startswith("books/"):
            print(f"{rel:<40} {per_file.get(rel, 0):>8} {size:>10,}")
    book_bytes = sum(p.stat().st_size for p in (out / "books").iterdir())
    print(f"{'books/*.txt':<40} {len(books):>8} {book_bytes:>10,}")
    print(f"{'total':<40} {sum(info['counts'].values()):>8} {total:>10,}")
    print(f"planted: {len(plants.exact)} exact-duplicate groups, {len(plants.normalized)} normalization-only "
          f"pairs, {len(plants.near)} near-duplicate groups, {len(info['malformed'])} malformed records")


if __name__ == "__main__":
    main(sys.argv)
