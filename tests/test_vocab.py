import json

import pytest

from seqnlp.vocab import PAD, UNK, SubwordTokenizer, Vocab, label_vocab


def test_specials_come_first_and_frequent_tokens_next():
    vocab = Vocab.build([["b", "a", "b"], ["c", "b", "a"]])
    assert vocab.itos == [PAD, UNK, "b", "a", "c"]
    assert vocab.pad_id == 0 and vocab.unk_id == 1


def test_min_freq_and_max_size_limit_the_vocabulary():
    sequences = [["a"] * 5 + ["b"] * 3 + ["c"] * 2 + ["d"]]
    assert Vocab.build(sequences, min_freq=2).itos == [PAD, UNK, "a", "b", "c"]
    assert Vocab.build(sequences, max_size=4).itos == [PAD, UNK, "a", "b"]


def test_unknown_tokens_map_to_unk():
    vocab = Vocab.build([["x"]])
    assert vocab.encode(["x", "never-seen"]) == [2, 1]


def test_label_vocabulary_is_closed():
    labels = label_vocab(["O", "B-PER", "O"])
    assert labels.itos == ["B-PER", "O"]
    with pytest.raises(KeyError):
        labels["B-ORG"]


def test_json_round_trip_keeps_ids():
    vocab = Vocab.build([["é", "ß", "x", "x"]])
    loaded = Vocab.from_dict(json.loads(json.dumps(vocab.to_dict(), ensure_ascii=False)))
    assert loaded.itos == vocab.itos and loaded.unk_id == vocab.unk_id


def test_sentencepiece_trains_encodes_and_decodes(tmp_path):
    text = ["the cat sat on the mat", "a dog sat on a log", "the cat and the dog"] * 30
    tok = SubwordTokenizer.train(text, vocab_size=40)
    ids = tok.encode("the cat sat on a log")
    assert tok.decode(ids) == "the cat sat on a log"
    assert tok.pad_id == 0 and tok.unk_id == 1
    tok.save(tmp_path / "spm.model")
    reloaded = SubwordTokenizer.load(tmp_path / "spm.model")
    assert reloaded.encode("the dog") == tok.encode("the dog")


def test_sentencepiece_shrinks_the_vocabulary_on_a_tiny_corpus():
    tok = SubwordTokenizer.train(["ab ba ab"] * 3, vocab_size=5000)
    assert 4 < len(tok) < 5000
