"""Offline training: corpus reading, cleaning, SentencePiece, batching, config and the loop."""
