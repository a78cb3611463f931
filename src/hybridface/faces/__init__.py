"""Faces in: any image → the 60x60 RGB crop the encoder expects.

``io.load_image`` (decode, EXIF, bit depth, bombs), ``detect.detect_faces`` (Haar frontal/profile,
dlib HOG/CNN, ``cascade``), ``crop.extract_faces`` / ``crop.load_crops`` (policies, eye alignment,
batches, cache in ``cache``), ``augment.augment`` (the paper's 17 transformations). Nothing is
imported or loaded until a sub-module is used. See docs/faces.md.
"""
