"""Lowering graphs to C: a kernel context ops emit into, elementwise fusion, the C writer."""
