"""Training the paper's network: one loop and its recipes, the data it eats, ONNX export.

``trainer`` (``TrainConfig``, ``train``: the one loop), ``train`` (``hybridface train``: the paper's
recipe on a dataset), ``distill`` (general model: distillation and/or a margin head), ``fit``
(``hybridface fit``: the network trained on one gallery's kept faces), ``teacher`` (dlib descriptors,
cached), ``variants`` (paper / wide networks, train-time BatchNorm), ``export`` (ONNX fp32/int8).
Import the modules themselves; importing this package loads nothing.
"""
