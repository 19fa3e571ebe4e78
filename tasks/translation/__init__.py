"""English -> French (any source/target TSV or tfds corpus) seq2seq with Luong attention on lstm_core."""
