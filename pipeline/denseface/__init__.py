"""Denseface, the face network the `denseface` extractor embeds crops with (pipeline/extract/face_embed.py), and
what it is trained on.

    train.py       the `train-denseface` stage: FER-format set -> checkpoint + PublicTest/PrivateTest accuracies
    checkpoint.py  the checkpoint file (weights, network shape, classes, input normalisation)
    fer.py         the FER2013 / FER+ format: reader (training) and writers (fixtures, the demo's crops)
"""
