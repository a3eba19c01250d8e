"""Explanations: which pixels a classifier's score rests on (Grad-CAM, integrated gradients).

``base`` holds the interface and the bounds every method obeys, one module per
method computes attributions, ``render`` turns them into an overlay PNG and a
low-resolution grid, and ``trust`` holds the checks that show an explanation
depends on the model and on the evidence (model randomisation, localisation,
deletion). Pure torch: no I/O, no serving.
"""
