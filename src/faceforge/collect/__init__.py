"""Collecting identity datasets from video: faces measured (blur, pose), linked into
tracklets, and gathered per person (one person from a reference, N people, or everyone)."""
