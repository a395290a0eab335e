"""The models that turn images into features: face backends (``face``) and ReID backends
(``reid``). They fill the containers of ``method.features``; import from ``core`` and ``method``.
"""
