"""Offline side of fusionserve: data sets, fusion models, ONNX export and the report.

Run ``python -m training --help`` for the commands.
"""
