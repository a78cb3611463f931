"""Training on a gallery: ``fit`` (the paper's network trained on a gallery's own kept faces)."""
