"""ReFace: clothes-changing person re-identification with face features.

Gallery enrichment with confident face matches, and fusion of ReID and face distances
(Arkushin et al., "ReFace"/"GEFF", arXiv 2211.13807). Submodules are imported on use
(``from reface_utils import datasets``) so that importing the package stays cheap.
"""
__version__ = "0.1.0"
