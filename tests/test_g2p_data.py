"""The stand-in Chinese and English G2P data (engine/tools/g2p_data.py), read by Genie's own G2P code.

The expected phonemes are worked out by hand from the pinyin and the CMU dictionary, not copied from a run.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from engine.tools.g2p_data import opencpop_table, polyphonic_words, train_tagger
from engine.voices.demo_voices import DEMO_VOICES


def _genie_symbols() -> set[str]:
    """Genie's v2 symbol table, read from its file (importing genie_tts itself has side effects)."""
    spec = importlib.util.find_spec("genie_tts")
    assert spec is not None and spec.origin is not None
    path = Path(spec.origin).parent / "G2P" / "SymbolsV2.py"
    module_spec = importlib.util.spec_from_file_location("symbols_v2_file", path)
    assert module_spec is not None and module_spec.loader is not None
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return set(module.symbols_v2)


def test_the_pinyin_table_follows_the_opencpop_rules() -> None:
    table = opencpop_table()
    expected = {
        "ba": "b a",
        "zhi": "zh ir",  # the apical vowel after a retroflex
        "si": "s i0",  # ... and after a dental sibilant
        "gui": "g ui",  # uei written ui after an initial
        "jiu": "j iu",  # iou written iu
        "dun": "d un",  # uen written un
        "ju": "j v",  # ü written u after j
        "jv": "j v",  # ... and accepted as v
        "lv": "l v",
        "yan": "y En",
        "ye": "y E",
        "yuan": "y van",
        "you": "y ou",
        "wei": "w ei",
        "a": "AA a",  # zero initials
        "er": "EE er",
        "ou": "OO ou",
    }
    assert {syllable: table[syllable] for syllable in expected} == expected
    assert not {"m", "n", "ng", "hm", "hng"} & table.keys()  # no vowel: Genie cannot read them from this table
    assert len(table) > 400


def test_every_symbol_of_the_stand_in_data_is_one_genie_knows() -> None:
    symbols = _genie_symbols()
    phones = {phone for entry in opencpop_table().values() for phone in entry.split()}
    unknown = {phone for phone in phones if phone not in symbols and f"{phone}1" not in symbols}
    assert not unknown  # initials appear bare in the table, finals get their tone (1-5) from the pinyin


def test_polyphonic_words_carry_one_tone3_reading_per_character() -> None:
    words = polyphonic_words()
    assert words["银行"] == ["yin2", "hang2"]  # 行 is xing2 or hang2
    assert words["长大"] == ["zhang3", "da4"]  # 长 is chang2 or zhang3
    assert all(len(reading) == len(word) for word, reading in words.items())
    assert all(syllable[-1] in "12345" for reading in words.values() for syllable in reading)


def test_the_stand_in_tagger_tells_the_homographs_apart() -> None:
    from nltk.tag.perceptron import PerceptronTagger

    tagger = PerceptronTagger(load=False)
    tagger.decode_json_params(iter(train_tagger()))
    assert dict(tagger.tag("I read the book yesterday .".split()))["read"] == "VBD"
    assert dict(tagger.tag("She will lead the team .".split()))["lead"] == "VB"
    assert dict(tagger.tag("It is a complex problem .".split()))["complex"] == "JJ"
    assert train_tagger() == train_tagger()  # the same file on every build


@pytest.fixture(scope="module")
def genie_g2p(demo_root: Path) -> object:
    from engine import genie

    genie.import_genie(demo_root / "GenieData")
    symbols = genie.symbol_table()

    def phonemes(text: str, language: str) -> str:
        sequence, bert = genie.phones_and_bert(text, language)
        assert bert.shape == (sequence.shape[1], 1024)
        return " ".join(symbols[int(index)] for index in sequence[0])

    return phonemes


@pytest.mark.e2e
def test_genies_chinese_g2p_reads_the_stand_in(genie_g2p: object) -> None:
    # ni3 hao3 -> ni2 hao3 (third-tone sandhi); zhe4 shi4 ce4 shi4 wen2 ben3; punctuation mapped to ASCII.
    assert genie_g2p("你好，这是测试文本。", "chinese") == "n i2 h ao3 , zh e4 sh ir4 c e4 sh ir4 w en2 b en3 ."
    # the phrase dictionary picks hang2 for 行 in 银行 (g2pM alone may say xing2)
    assert genie_g2p("银行", "chinese") == "y in2 h ang2"


@pytest.mark.e2e
def test_genies_english_g2p_reads_the_stand_in(genie_g2p: object) -> None:
    assert genie_g2p("Hello world.", "english") == "HH AH0 L OW1 W ER1 L D ."  # CMUdict
    assert genie_g2p("I read the book yesterday.", "english").startswith("AY1 R EH1 D ")  # tagged VBD: past tense
    assert genie_g2p("Genie", "english") == "JH IY1 N IY0"  # the hot dictionary
    unknown = genie_g2p("Zorblaxity", "english").split()  # not in CMUdict: the neural model from g2p-en
    assert len(unknown) >= 6 and all(phone[0].isupper() for phone in unknown)


@pytest.mark.e2e
def test_each_demo_voice_has_its_reference_and_length_rule(demo_root: Path) -> None:
    shared = (demo_root / "demo" / "tts_models" / "vits_fp16.bin").read_bytes()
    rules = {}
    for name, (text, language) in DEMO_VOICES.items():
        folder = demo_root / name
        config = json.loads((folder / "reference" / "config.json").read_text(encoding="utf-8"))
        assert config == {"text": text, "language": language}
        assert (folder / "tts_models" / "vits_fp16.bin").read_bytes() == shared  # the same random weights
        rules[name] = json.loads((folder / "tts_models" / "length_rule.json").read_text())["ref_phonemes"]
    assert len(set(rules.values())) > 1, rules  # each rule counts its own transcript's phonemes
