"""Feature extractors: the compressed VGGFace network, its training/export, and every `Encoder`."""
