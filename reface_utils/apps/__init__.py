"""Applications built on the layers below: the notebooks' pipeline, custom-video identification,
person tracking, figures and the Ray engine.
"""
