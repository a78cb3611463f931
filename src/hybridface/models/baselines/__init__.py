"""The baseline encoders of the paper's comparison: VGG-Face, Inception V3, dlib, the authors' weights.

Each module imports its heavy dependency (torch, dlib) when used; ``hybridface.models.zoo.load_encoder``
is the one way in.
"""
