import pytest
import torch

from seqnlp.nn.embedding import CharFeatures, WordCharEmbedding, load_vectors
from seqnlp.nn.encoder import RNNEncoder, reverse_within_length
from seqnlp.vocab import Vocab


def test_reverse_within_length_keeps_padding_in_place():
    index = reverse_within_length(torch.tensor([3, 1]), 4)
    assert index.tolist() == [[2, 1, 0, 3], [0, 1, 2, 3]]


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("bidirectional", [True, False])
def test_padding_does_not_change_outputs(cell, bidirectional):
    torch.manual_seed(0)
    encoder = RNNEncoder(5, 4, num_layers=2, cell=cell, bidirectional=bidirectional).eval()
    x = torch.randn(2, 6, 5)
    lengths = torch.tensor([6, 3])
    outputs, final = encoder(x, lengths)
    alone, alone_final = encoder(x[1:, :3], torch.tensor([3]))
    assert torch.allclose(outputs[1, :3], alone[0], atol=1e-6)
    assert torch.allclose(final[1], alone_final[0], atol=1e-6)
    assert outputs[1, 3:].abs().sum() == 0


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_packed_and_unpacked_runs_agree(cell):
    torch.manual_seed(0)
    encoder = RNNEncoder(5, 4, num_layers=2, cell=cell).eval()
    x, lengths = torch.randn(3, 7, 5), torch.tensor([7, 2, 5])
    unpacked = encoder(x, lengths)
    encoder.pack = True
    packed = encoder(x, lengths)
    assert torch.allclose(unpacked[0], packed[0], atol=1e-6)
    assert torch.allclose(unpacked[1], packed[1], atol=1e-6)


def test_bidirectional_matches_torch_bidirectional_lstm():
    torch.manual_seed(0)
    encoder = RNNEncoder(5, 4, cell="lstm").eval()
    reference = torch.nn.LSTM(5, 4, batch_first=True, bidirectional=True)
    with torch.no_grad():
        for name, value in encoder.forward_layers[0].named_parameters():
            getattr(reference, name).copy_(value)
        for name, value in encoder.backward_layers[0].named_parameters():
            getattr(reference, name + "_reverse").copy_(value)
    x = torch.randn(1, 6, 5)
    assert torch.allclose(encoder(x, torch.tensor([6]))[0], reference(x)[0], atol=1e-6)


def test_char_cnn_ignores_padding_characters():
    torch.manual_seed(0)
    chars = CharFeatures(10, 4, 6, "cnn").eval()
    word = torch.tensor([[3, 4, 5]])
    padded = torch.tensor([[3, 4, 5, 0, 0]])
    assert torch.allclose(chars(word, torch.tensor([3])), chars(padded, torch.tensor([3])))


@pytest.mark.parametrize("kernel_size", [3, 5])
def test_char_cnn_is_a_conv1d_with_max_pooling(kernel_size):
    """Run as one matrix product over stacked windows, the CNN gives nn.Conv1d's result (its weights, so saved models
    load)."""
    torch.manual_seed(0)
    chars = CharFeatures(10, 4, 6, "cnn", kernel_size=kernel_size)
    words = torch.tensor([[3, 4, 5, 6], [7, 8, 9, 2]])
    expected = chars.conv(chars.embed(words).transpose(1, 2)).amax(dim=2)
    assert torch.allclose(chars(words, torch.tensor([4, 4])), expected, atol=1e-6)


def test_char_lstm_gives_one_vector_per_word():
    chars = CharFeatures(10, 4, 6, "lstm")
    assert chars(torch.tensor([[3, 4, 0], [5, 0, 0]]), torch.tensor([2, 1])).shape == (2, 6)


def test_pretrained_vectors_glove_and_word2vec_with_coverage(tmp_path):
    vocab = Vocab(["<pad>", "<unk>", "Paris", "city", "zzz"])
    glove = tmp_path / "glove.txt"
    glove.write_text("paris 1 2\ncity 3 4\n", encoding="utf-8")
    weight, report = load_vectors(glove, vocab, 2)
    assert weight[2].tolist() == [1, 2] and weight[3].tolist() == [3, 4]
    assert report["found"] == 2 and report["found_lowercase"] == 1 and report["coverage"] == pytest.approx(2 / 5)
    word2vec = tmp_path / "w2v.txt"
    word2vec.write_text("2 2\ncity 3 4\nzzz 5 6\n", encoding="utf-8")
    weight, report = load_vectors(word2vec, vocab, 2)
    assert weight[4].tolist() == [5, 6] and report["found"] == 2


def test_pretrained_vectors_prefer_the_exact_form_to_the_lowercase_one_in_any_order(tmp_path):
    vocab = Vocab(["<pad>", "<unk>", "Paris", "paris", "Rome"])
    path = tmp_path / "v.txt"
    path.write_text("paris 1 1\nrome 2 2\nParis 3 3\nunused 4 4\n", encoding="utf-8")
    weight, report = load_vectors(path, vocab, 2)
    assert weight[2].tolist() == [3, 3] and weight[3].tolist() == [1, 1] and weight[4].tolist() == [2, 2]
    assert report["found"] == 3 and report["found_lowercase"] == 1


def test_pretrained_vectors_of_words_holding_spaces_are_their_last_fields(tmp_path):
    path = tmp_path / "glove.840B-like.txt"
    path.write_text("city 1 2\n. . . 3 4\nat name@domain.com 5 6\n", encoding="utf-8")
    weight, report = load_vectors(path, Vocab(["<pad>", "<unk>", "city", ". . ."]), 2)
    assert weight[3].tolist() == [3, 4] and report["found"] == 2


def test_pretrained_vectors_of_wrong_size_are_reported(tmp_path):
    path = tmp_path / "v.txt"
    path.write_text("city 1 2 3\n", encoding="utf-8")
    with pytest.raises(Exception, match=":1: vector has 3 dimensions, more than word_dim 2"):
        load_vectors(path, Vocab(["<pad>", "<unk>"]), 2)
    path.write_text("city 1 2\nroad 1\n", encoding="utf-8")
    with pytest.raises(Exception, match=r":2: vector has 1 dimensions, expected 2 \(the first vector's\)"):
        load_vectors(path, Vocab(["<pad>", "<unk>"]), 3)


def test_pretrained_vectors_narrower_than_the_table_fill_its_first_columns(tmp_path):
    path = tmp_path / "v.txt"
    path.write_text("city 1 2\n", encoding="utf-8")
    weight, report = load_vectors(path, Vocab(["<pad>", "<unk>", "city"]), 5)
    assert weight[2, :2].tolist() == [1, 2] and abs(weight[2, 2:]).max() < 1 and report["dimensions"] == 2


def test_inference_batches_respect_a_token_budget():
    from seqnlp.data.batching import bucket_batches

    lengths = [100, 90, 10, 10, 10, 10, 5]
    batches = bucket_batches(lengths, batch_size=4, shuffle=False, max_tokens=200)
    assert batches == [[0, 1], [2, 3, 4, 5], [6]]
    assert sorted(i for b in batches for i in b) == list(range(7))


def test_training_batches_depend_only_on_seed_and_epoch():
    from seqnlp.data.batching import bucket_batches

    lengths = [(i * 7) % 23 + 1 for i in range(200)]
    assert bucket_batches(lengths, 8, True, seed=1, epoch=3) == bucket_batches(lengths, 8, True, seed=1, epoch=3)
    assert bucket_batches(lengths, 8, True, seed=1, epoch=3) != bucket_batches(lengths, 8, True, seed=1, epoch=4)
    assert sorted(i for b in bucket_batches(lengths, 8, True, seed=1, epoch=0) for i in b) == list(range(200))


def test_training_batches_respect_a_token_budget_and_keep_every_example():
    from seqnlp.data.batching import bucket_batches

    lengths = [5] * 60 + [150] * 3
    batches = bucket_batches(lengths, 8, True, seed=1, max_tokens=200)
    assert all(len(b) * max(lengths[i] for i in b) <= 200 for b in batches if len(b) > 1)
    assert sorted(len(b) for b in batches if lengths[b[-1]] == 150) == [1, 1, 1]
    assert sorted(i for b in batches for i in b) == list(range(63))
    assert max(len(b) for b in batches) == 8


def test_pairs_are_batched_by_their_longer_side_then_the_shorter():
    from seqnlp.data.batching import bucket_batches

    pairs = [(5, 2), (5, 9), (5, 3), (5, 8), (2, 5), (9, 5)]  # (source, target): the sources alone would not part them
    for seed in range(5):
        batches = bucket_batches(pairs, batch_size=2, shuffle=True, seed=seed)
        assert sorted(sorted(b) for b in batches) == [[0, 4], [1, 5], [2, 3]]
    assert bucket_batches(pairs, batch_size=2, shuffle=False) == [[1, 5], [3, 2], [0, 4]]


def test_a_token_budget_counts_the_longer_side_of_a_pair():
    from seqnlp.data.batching import bucket_batches

    pairs = [(5, 2), (5, 9), (5, 3), (5, 8), (2, 5), (9, 5)]
    assert bucket_batches(pairs, batch_size=4, shuffle=False, max_tokens=20) == [[1, 5], [3, 2], [0, 4]]


def test_rare_word_dropout_replaces_only_the_rarest_ids_and_only_in_training():
    embedding = WordCharEmbedding(8, 3, dropout=0.0, word_dropout=0.0, rare_word_dropout=1.0, rare_from=5)
    words = torch.tensor([[2, 3, 4, 5, 6, 7]])
    unk = embedding.words.weight[1]
    out = embedding.train()(words)[0]
    assert all(torch.equal(out[i], unk) for i in (3, 4, 5))
    assert not any(torch.equal(out[i], unk) for i in (0, 1, 2))
    assert torch.equal(embedding.eval()(words)[0], embedding.words.weight[words[0]])


def test_elementwise_dropout_zeroes_about_p_scales_the_rest_and_is_identity_in_eval():
    from seqnlp.nn.dropout import Dropout

    torch.manual_seed(0)
    layer, x = Dropout(0.3), torch.ones(200, 500)
    y = layer(x)
    assert abs((y == 0).float().mean().item() - 0.3) < 0.01
    assert torch.allclose(y[y != 0], torch.tensor(1 / 0.7))
    layer.eval()
    assert layer(x) is x
