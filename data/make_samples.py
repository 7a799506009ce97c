"""Write the small sample datasets in data/ (deterministic; written for this project, not copied).

python data/make_samples.py
"""

import random
from pathlib import Path

HERE = Path(__file__).resolve().parent

PEOPLE = [
    "Anna Berg",
    "Tomas Hale",
    "Maria Lopez",
    "John Carter",
    "Li Wei",
    "Sara Okafor",
    "Pieter de Vries",
    "Emma Stone",
    "Ravi Patel",
    "Olga Ivanova",
    "Kofi Mensah",
    "Hannah Weiss",
    "Marco Rossi",
    "Yuki Tanaka",
    "Ahmed Nasser",
    "Clara Diaz",
]
ORGS = [
    "Nordbank",
    "the United Nations",
    "Acme Corp",
    "Real Madrid",
    "the European Commission",
    "Bayer",
    "Reuters",
    "Greenfield University",
    "the Red Cross",
    "Volvo",
    "Siemens",
    "the World Bank",
    "Ajax",
    "Tata Steel",
]
PLACES = [
    "Berlin",
    "Lagos",
    "Tokyo",
    "New York",
    "Lisbon",
    "Cairo",
    "Oslo",
    "Lima",
    "Sydney",
    "Mumbai",
    "Toronto",
    "Vienna",
    "Nairobi",
    "Seoul",
    "Madrid",
]
MISC = ["German", "French", "Olympic", "Japanese", "European", "Brazilian", "Christmas", "Nobel", "English", "Dutch"]
NER_TEMPLATES = [
    "{PER} visited {LOC} on Monday .",
    "{ORG} said profits rose 4 percent in {LOC} .",
    "{PER} , a spokesman for {ORG} , declined to comment .",
    "The {MISC} team beat {ORG} 2-1 in {LOC} .",
    "{PER} joined {ORG} last year after leaving {LOC} .",
    "Shares in {ORG} fell after {PER} resigned .",
    "{MISC} officials met {PER} in {LOC} .",
    "Rain delayed the match between {ORG} and {ORG} .",
    "{PER} won the {MISC} prize .",
    "Police in {LOC} arrested two men on Tuesday .",
    "{ORG} will open an office in {LOC} next month , {PER} said .",
    "The {MISC} economy grew faster than expected .",
]


def ner_sentence(rng):
    template = rng.choice(NER_TEMPLATES)
    tokens, tags = [], []
    for word in template.split():
        if word.startswith("{"):
            kind = word[1:4]
            name = rng.choice({"PER": PEOPLE, "ORG": ORGS, "LOC": PLACES, "MIS": MISC}[kind])
            kind = "MISC" if kind == "MIS" else kind
            parts = name.split()
            if parts[0] == "the":
                tokens.append("the")
                tags.append("O")
                parts = parts[1:]
            for i, part in enumerate(parts):
                tokens.append(part)
                tags.append(("B-" if i == 0 else "I-") + kind)
        else:
            tokens.append(word)
            tags.append("O")
    return tokens, tags


def write_ner(path, sentences):
    with open(path, "w", encoding="utf-8") as out:
        out.write("-DOCSTART- O\n\n")
        for tokens, tags in sentences:
            for token, tag in zip(tokens, tags):
                out.write(f"{token} {tag}\n")
            out.write("\n")


POSITIVE = [
    "a joy",
    "wonderful",
    "moving",
    "sharp and funny",
    "beautifully acted",
    "a delight",
    "smart",
    "gripping",
    "warm",
    "clever",
    "heartfelt",
    "well made",
    "charming",
    "brilliant",
    "touching",
]
NEGATIVE = [
    "a mess",
    "dull",
    "tedious",
    "clumsy",
    "badly acted",
    "a bore",
    "lifeless",
    "predictable",
    "flat",
    "pointless",
    "shallow",
    "poorly made",
    "annoying",
    "awful",
    "forgettable",
]
SUBJECTS = [
    "the film",
    "this movie",
    "the story",
    "the cast",
    "the script",
    "the ending",
    "the director 's latest",
    "the soundtrack",
    "the second half",
    "this comedy",
    "the documentary",
    "the sequel",
]
SENTIMENT_TEMPLATES = [
    "{s} is {a} .",
    "{s} feels {a} from start to finish .",
    "overall , {s} is {a} .",
    "i found {s} {a} .",
    "{s} is {a} , and that is what stays with you .",
    "{a} .",
]


def sentiment_example(rng):
    label = rng.randrange(2)
    adjective = rng.choice(POSITIVE if label else NEGATIVE)
    if rng.random() < 0.2:  # a contrast clause: the sentiment of the second half decides
        other = rng.choice(NEGATIVE if label else POSITIVE)
        text = f"{rng.choice(SUBJECTS)} starts {other} , but in the end it is {adjective} ."
    else:
        text = rng.choice(SENTIMENT_TEMPLATES).format(s=rng.choice(SUBJECTS), a=adjective)
    return text, label


def write_sentiment(path, examples):
    with open(path, "w", encoding="utf-8") as out:
        out.write("sentence\tlabel\n")
        out.writelines(f"{text}\t{label}\n" for text, label in examples)


def paragraph(rng):
    """Plain prose for the character model: three to six news-like sentences."""
    lines = []
    for _ in range(rng.randint(3, 6)):
        tokens, _ = ner_sentence(rng)
        sentence = " ".join(tokens).replace(" .", ".").replace(" ,", ",")
        lines.append(sentence[0].upper() + sentence[1:])
    return " ".join(lines)


def write_text(path, paragraphs):
    with open(path, "w", encoding="utf-8") as out:
        out.writelines(text + "\n\n" for text in paragraphs)


# (German, English) phrase pairs for the translation sample; sentences are built as subject + verb phrase + place.
SUBJECTS_DE_EN = [
    ("Ein Mann", "A man"),
    ("Eine Frau", "A woman"),
    ("Ein Kind", "A child"),
    ("Ein Hund", "A dog"),
    ("Zwei Männer", "Two men"),
    ("Drei Kinder", "Three children"),
    ("Ein junges Mädchen", "A young girl"),
    ("Ein älterer Herr", "An older man"),
    ("Eine Gruppe von Leuten", "A group of people"),
]
SINGULAR_VERBS = [
    ("spielt Fußball", "is playing soccer"),
    ("fährt Fahrrad", "is riding a bike"),
    ("läuft", "is running"),
    ("liest ein Buch", "is reading a book"),
    ("sitzt auf einer Bank", "is sitting on a bench"),
    ("trinkt Kaffee", "is drinking coffee"),
    ("wartet", "is waiting"),
]
PLURAL_VERBS = [
    ("spielen Fußball", "are playing soccer"),
    ("fahren Fahrrad", "are riding bikes"),
    ("laufen", "are running"),
    ("lesen Bücher", "are reading books"),
    ("sitzen auf einer Bank", "are sitting on a bench"),
    ("trinken Kaffee", "are drinking coffee"),
    ("warten", "are waiting"),
]
PLACES_DE_EN = [
    ("im Park", "in the park"),
    ("auf der Straße", "on the street"),
    ("am Strand", "on the beach"),
    ("vor einem Haus", "in front of a house"),
    ("in der Stadt", "in the city"),
    ("im Schnee", "in the snow"),
]


def translation_pair(rng):
    subject = rng.choice(SUBJECTS_DE_EN)
    plural = subject[1].split()[0] in ("Two", "Three") or subject[1].startswith("A group")
    verb = rng.choice(PLURAL_VERBS if plural and not subject[1].startswith("A group") else SINGULAR_VERBS)
    place = rng.choice(PLACES_DE_EN)
    return f"{subject[0]} {verb[0]} {place[0]}.", f"{subject[1]} {verb[1]} {place[1]}."


def write_translation(prefix, pairs):
    with open(f"{prefix}.de", "w", encoding="utf-8") as de, open(f"{prefix}.en", "w", encoding="utf-8") as en:
        for source, target in pairs:
            de.write(source + "\n")
            en.write(target + "\n")


def draw(make, count, rng):
    return [make(rng) for _ in range(count)]


def held_out(make, count, rng, seen):
    """``count`` examples none of which is in ``seen`` or repeated: a test of what a model learned, not of what it
    memorised."""
    examples, seen = [], {repr(example) for example in seen}
    while len(examples) < count:
        example = make(rng)
        if repr(example) not in seen:
            seen.add(repr(example))
            examples.append(example)
    return examples


# task: (one example, its writer, train / dev / test counts, the files' names)
SAMPLES = {
    "ner": (ner_sentence, write_ner, (400, 100, 100), ("train.txt", "dev.txt", "test.txt")),
    "sentiment": (sentiment_example, write_sentiment, (400, 100, 100), ("train.tsv", "dev.tsv", "test.tsv")),
    "textgen": (paragraph, write_text, (120, 15, 15), ("train.txt", "val.txt", "test.txt")),
    "translate": (translation_pair, write_translation, (400, 60, 60), ("train", "val", "test")),
}


def main():
    rng = random.Random(2026)
    drawn = {task: [draw(make, n, rng) for n in counts[:2]] for task, (make, _, counts, _) in SAMPLES.items()}
    # The held-out test files: another generator, so that train and dev stay as they were; no example of train or dev.
    test_rng = random.Random(2027)
    for task, (make, write, counts, names) in SAMPLES.items():
        train, dev = drawn[task]
        test = held_out(make, counts[2], test_rng, train + dev)
        (HERE / task).mkdir(exist_ok=True)
        for examples, name in zip((train, dev, test), names):
            write(HERE / task / name, examples)


if __name__ == "__main__":
    main()
