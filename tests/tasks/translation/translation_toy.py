"""Toy parallel data for the translation tests (imported by the test modules)."""

WORDS = {
    "one": "un", "two": "deux", "three": "trois", "four": "quatre", "five": "cinq",
    "red": "rouge", "green": "vert", "blue": "bleu", "cat": "chat", "dog": "chien",
}


def tiny_pairs(n=80, seed=0):
    """A toy word-for-word 'English -> French' corpus the model can learn in a few epochs."""
    import random

    rng = random.Random(seed)
    en = list(WORDS)
    pairs = []
    for _ in range(n):
        words = [rng.choice(en) for _ in range(rng.randint(1, 4))]
        pairs.append((" ".join(words).capitalize() + ".", " ".join(WORDS[w] for w in words).capitalize() + "."))
    return pairs


def write_tsv(path, pairs):
    path.write_text("".join(f"{s}\t{t}\n" for s, t in pairs), encoding="utf-8")
    return path


def tiny_tsv(tmp_path):
    train = write_tsv(tmp_path / "train.tsv", tiny_pairs(80, 0))
    dev = write_tsv(tmp_path / "dev.tsv", tiny_pairs(12, 1))
    return train, dev
