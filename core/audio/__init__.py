"""Audio in: decoding, the log-mel front-end and its on-disk cache."""

