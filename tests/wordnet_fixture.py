"""A tiny WordNet database in WordNet 3.0's own file format (data.POS / index.POS / POS.exc / lexnames: the
files `nltk.downloader wordnet` installs), holding a few real ImageNet noun synsets at their real offsets, so
the synonyms builder runs nltk's reader on it exactly as on the full database.  Lines between the synsets are
filled with the license-style lines WordNet's files start with ("  " + text), which readers skip.

The synset lines follow WordNet 3.0's data.noun (wndb(5WN)): offset, lex_filenum, ss_type, w_cnt (2 hex
digits), word lex_id pairs, p_cnt (3 digits), no pointers here, then "| gloss".
"""

from pathlib import Path

# (wnid, lemmas) as in WordNet 3.0's data.noun
SYNSETS = [("n01440764", ["tench", "Tinca_tinca"]),
           ("n01443537", ["goldfish", "Carassius_auratus"]),
           ("n01484850", ["great_white_shark", "white_shark", "man-eater", "man-eating_shark",
                          "Carcharodon_carcharias"])]

HEADER = "  1 This software and database is being provided to you, the LICENSEE, by  \n" \
         "  2 WordNet 3.0 Copyright 2006 by Princeton University.  All rights reserved.\n"


def write_wordnet(folder: Path, synsets=SYNSETS) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "lexnames").write_text("".join(f"{i:02d}\t{name}\t{pos}\n" for i, (name, pos) in enumerate(
        [("adj.all", 3), ("adj.pert", 3), ("adv.all", 4), ("noun.Tops", 1), ("noun.act", 1), ("noun.animal", 1)])))
    noun, index = HEADER, []
    for wnid, lemmas in sorted(synsets):
        offset = int(wnid[1:])
        while len(noun.encode()) < offset:   # pad with comment lines up to the synset's byte offset
            gap = offset - len(noun.encode())
            noun += "  " + "x" * max(0, min(gap - 3, 200)) + "\n" if gap >= 3 else " " * (gap - 1) + "\n"
        assert len(noun.encode()) == offset, (wnid, len(noun.encode()))
        words = " ".join(f"{lemma} 0" for lemma in lemmas)
        noun += f"{offset:08d} 05 n {len(lemmas):02x} {words} 000 | a fish or a shark  \n"
        index += [(lemma.lower(), offset) for lemma in lemmas]
    (folder / "data.noun").write_text(noun)
    (folder / "index.noun").write_text(HEADER + "".join(f"{lemma} n 1 0 1 0 {offset:08d}  \n"
                                                        for lemma, offset in sorted(index)))
    for pos in ("adj", "adv", "verb"):
        (folder / f"data.{pos}").write_text(HEADER)
        (folder / f"index.{pos}").write_text(HEADER)
    for pos in ("adj", "adv", "noun", "verb"):
        (folder / f"{pos}.exc").write_text("")
    return folder
