"""workbench: adapt pretrained language models to your own data, in Jupyter."""
__version__ = "0.1.0"
