"""Audio in: discovery, part planning, decoder backends, container checks and the decode pool.

Nothing here imports TensorFlow, torch or transformers: decode workers stay light.
"""
