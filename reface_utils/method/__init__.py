"""The method on features: feature containers, gallery enrichment, distance fusion, block-wise
retrieval, metrics, tracklet scores (docs/METHOD.md). Pure numpy (torch only in
``retrieval``/``torch_backend``); imports only from ``core``.
"""
