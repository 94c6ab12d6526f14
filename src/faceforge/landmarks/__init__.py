"""Learned facial landmarks: a stacked-hourglass network that finds the five alignment points
(eyes, nose tip, mouth corners) from heatmaps, its targets and decoding, its training data
and augmentations, and the NME evaluation a landmarker is judged by."""
